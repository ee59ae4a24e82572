"""Run the cytowhim command line from a checkout: ``python cli.py inspect FILE``.

The installed ``cytowhim`` command runs the same code (``cytowhim.cli:main``).
"""

import sys

from cytowhim.cli import main

if __name__ == "__main__":
    sys.exit(main())

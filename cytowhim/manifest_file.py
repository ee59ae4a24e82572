"""Reading a manifest file into rows of cells: a CSV (comma, semicolon or tab separated; UTF-8
or Windows-1252) or a spreadsheet (XLSX first sheet, XLS), comment and blank lines skipped
(:mod:`cytowhim.manifest` makes sense of the cells)."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import CytowhimError
from .manifest_values import cell_text

CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # C0 controls but tab, and DEL


class ManifestError(CytowhimError, ValueError):
    """The manifest itself cannot be used (missing file, missing columns, unreadable)."""


def _grid(path: Path) -> Iterator[tuple[int, list[Any]]]:
    """(row number, cells) of every row of the manifest's table: CSV line or spreadsheet row."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            yield from enumerate(
                (list(r) for r in book.worksheets[0].iter_rows(min_row=1, values_only=True)), 1
            )
        finally:
            book.close()
        return
    if suffix == ".xls":
        frame = pd.read_excel(path, header=None, dtype=object)
        yield from ((i + 1, list(r)) for i, r in enumerate(frame.itertuples(index=False)))
        return
    data = path.read_bytes()
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ManifestError(
            f"{path}: this is a spreadsheet workbook, not a CSV text file; give it its .xlsx "
            "(or .xls) name, or save it as CSV"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")  # Excel's "CSV" on Windows
        except UnicodeDecodeError as exc:
            raise ManifestError(
                f"{path}: not a CSV text file (UTF-8 or Windows-1252) or an XLSX workbook: "
                f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not text"
            ) from None
    first = next(
        (ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), ""
    )
    delimiter = max((",", ";", "\t"), key=first.count)  # a tie (no ';' or tab) keeps ','
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    line = 1
    for cells in reader:
        if not (cells and cells[0].lstrip().startswith("#")):
            yield line, cells
        line = reader.line_num + 1


def read_rows(path: str | os.PathLike) -> tuple[list[Any], list[tuple[int, list[Any]]]]:
    """(header cells, [(row number, cells)]) without blank rows and comments; ManifestError if
    the manifest is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        if path.exists():  # a folder, a FIFO (reading it would block), a device
            raise ManifestError(f"{path}: the manifest is not a regular file")
        raise ManifestError(f"{path}: manifest not found")
    try:
        rows = [(n, cells) for n, cells in _grid(path) if any(cell_text(c) for c in cells)]
    except ImportError as exc:
        raise ManifestError(f"{path}: reading spreadsheets needs openpyxl ({exc})") from None
    except ManifestError:
        raise
    except Exception as exc:  # csv, zip, openpyxl and decoding errors of a broken file
        raise ManifestError(
            f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})"
        ) from None
    if not rows:
        raise ManifestError(f"{path}: the manifest is empty (no header row)")
    if any(CONTROL.search(cell_text(c)) for c in rows[0][1]):
        raise ManifestError(
            f"{path}: not a CSV or XLSX manifest: its first row holds binary data (control "
            "characters), not column names"
        )
    return rows[0][1], rows[1:]

"""The run manifest: one row per tube file with specimen, patient, timepoint, tube and the CBC.

The manifest is a CSV (comma, semicolon or tab separated; UTF-8 or Windows-1252) or an XLSX
workbook (first sheet), with a header row. Lines whose first cell starts with ``#`` are comments
and blank lines are skipped; a ``#`` elsewhere is data (``tube#1.fcs``).

Columns (header case does not matter; a unit may follow the name, ``ALC (x10^3/uL)``):

- ``file``, ``specimen``, ``patient``, ``timepoint``, ``tube``: required on every row. ``file`` is
  relative to the manifest's folder unless absolute.
- ``WBC``, ``ANC``, ``ALC``, ``AMC``: the CBC, given once per specimen (repeated or blank on its
  other rows). Two different values for one specimen are a problem.
- ``units`` (optional): the unit of this row's CBC values whose header states none.
- ``decimal`` (optional): this row's decimal separator, ``,`` or ``.`` (also ``comma``, ``dot``).
- ``beads_per_tube``, ``volume_uL`` (optional): counting beads per tube (single platform).
- ``age`` (optional): years at the draw, a number >= 0 and < 130; a header ``age (years)`` is fine,
  any other unit is refused.
- ``birth_date``, ``draw_date`` (optional, ISO 8601 ``YYYY-MM-DD``): without ``age`` the age is
  computed from them in years with calendar arithmetic (completed years plus the elapsed fraction
  of the current year; a 29 February birthday falls on 28 February in common years). With both an
  ``age`` and the dates, ``age`` is used and must agree with the dates within a year.
  ``draw_date`` alone is kept; ``birth_date`` without ``draw_date`` is a problem unless ``age`` is
  given. The birth date itself is not passed on.
- ``sex`` (optional): ``F``, ``M``, ``female``, ``male`` or empty (any case); ``U``, ``unknown``,
  ``X`` or ``other`` count as not given (general reference intervals apply).

- ``draw_time``, ``dose_time`` (optional, ISO 8601 ``YYYY-MM-DDTHH:MM``, seconds and a UTC
  offset allowed, both with an offset or both without): when the blood was drawn and the dose
  given; ``hours_post_dose`` (optional, may be negative before the dose) is computed from them
  when not given, and must agree with them (within 3 minutes) when it is. ``draw_time`` gives
  ``draw_date`` when that is not given, and must fall on it when it is. Times are kept as the
  lab's wall clock: a time with an offset (a LIS export in UTC) is converted to this machine's
  time zone.
- ``visit`` (optional): a free label such as ``month 6``; ``control_lot`` (optional): the lot of
  control material this specimen is (a control, not a patient; see :mod:`cytowhim.controls`).

``age``, ``sex``, ``birth_date``, ``draw_date`` and the time, visit and control columns are per
specimen, like the CBC.

Units of the CBC, and their factors to cells/µL:

- cells/uL (also ``/uL``, ``cells/µL``, ``/mm3``): 1
- x10^3/uL (also ``10^3/uL``, ``10³/µL``, ``K/uL``, ``thousand/uL``): 1000
- x10^9/L (also ``10^9/L``, ``G/L``): 1000
- cells/mL (also ``/mL``): 0.001
- x10^6/L (also ``10^6/L``): 0.001

A CBC column's unit comes from its header (``WBC (x10^3/uL)``, ``WBC [10^9/L]``), else from the
row's ``units`` cell, else from ``read_manifest(path, units=...)``; **with no unit stated anywhere
the values are cells/µL**. A unit is never guessed from the size of a number. Any other stated
unit is refused (``x10^3/mL``, ``10e3/uL`` or ``g/L`` included: they are easily a 1000-fold
error). Because unstated means cells/µL, a CBC value above 0 and below one cell/µL (``AMC`` typed
as ``0.082`` meaning x10^3/µL) is refused rather than read; zero is a valid count. A differential
count (ANC, ALC, AMC) more than ten times the WBC is refused too: the columns are in different
units.

Numbers: ``.`` is the decimal point and a comma is refused as ambiguous (``0,66`` might be 0.66 or
a mangled 66) unless the decimal separator is declared, per row in a ``decimal`` column or for the
whole manifest with ``read_manifest(path, decimal=',')`` (or ``'.'``). With ``decimal='.'`` a
comma may only group thousands (``1,176``, ``12,500.5``; ``0,66`` is refused); with ``decimal=','``
the comma is the decimal point and ``.`` may only group thousands (``1.176,5``). Spaces (also
no-break and thin spaces) may group thousands in any mode (``1 176``). Numeric cells of a workbook
are numbers already and need no declaration.

Bad rows never stop the run: :func:`read_manifest` returns the good tubes and a list of
problems, each naming the manifest, the row (the line of the file, header = 1, or the spreadsheet
row), the column, the specimen, what was found and what was expected. A specimen with a problem is
left out whole; the others are kept. Among the problems: a row repeating an earlier one cell for
cell (named, not read again; its specimen is kept), one tube of a specimen on two rows with other
cells, one specimen id on two patients or timepoints, and a control character (a NUL, a newline,
an escape) in a cell the manifest reads.

A manifest that cannot be used at all raises :class:`ManifestError` in one line naming the file:
missing, not a regular file, empty, binary (control characters in its header row, a workbook
named ``.csv``, bytes that are neither UTF-8 nor Windows-1252 text), a required column missing,
or a column given twice (``ALC`` and ``ALC (x10^3/uL)``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from .manifest_file import CONTROL as _CONTROL
from .manifest_file import ManifestError, read_rows
from .manifest_values import (  # parse_number, parse_unit, age_in_years: also used from here
    ACCEPTED_UNITS,
    CELLS_PER_UL,
    MAX_AGE,
    Unit,
    age_in_years,
    cell_number,
    cell_text,
    parse_date,
    parse_number,
    parse_time,
    parse_unit,
)

__all__ = [
    "ACCEPTED_UNITS",
    "COLUMNS",
    "ManifestError",
    "Problem",
    "age_in_years",
    "parse_number",
    "parse_unit",
    "read_manifest",
    "read_table",
]

REQUIRED = ("file", "specimen", "patient", "timepoint", "tube")
CBC = ("WBC", "ANC", "ALC", "AMC")
BEADS = ("beads_per_tube", "volume_uL")
TIMES = ("draw_time", "dose_time", "hours_post_dose", "visit", "control_lot")
PER_SPECIMEN = ("age", "sex", "birth_date", "draw_date", *TIMES)
COLUMNS = (*REQUIRED, *CBC, *BEADS, "row", "age", "sex", "draw_date", "cbc_units", *TIMES)


@dataclass(frozen=True)
class Problem:
    """A manifest row that cannot be processed: where and why."""

    manifest: str
    row: int  # line in the file (header = 1) or spreadsheet row
    column: str
    specimen: str
    message: str

    def __str__(self) -> str:
        col = f", column {self.column}" if self.column else ""
        spec = f" (specimen {self.specimen})" if self.specimen else ""
        return f"{self.manifest}: row {self.row}{spec}{col}: {self.message}"


_SEXES = {"": "", "f": "F", "female": "F", "m": "M", "male": "M"}
# sex not recorded or neither F nor M: general (not sex-specific) reference intervals apply
_UNSPECIFIED_SEX = {"u", "unknown", "x", "other", "not known", "n/a", "na"}
_DECIMALS = {",": ",", "comma": ",", ".": ".", "dot": ".", "point": ".", "period": "."}
_AGE_UNITS = ("years", "year", "yrs", "yr", "y", "a")
_NAMES = {
    **{c: c for c in (*REQUIRED, *PER_SPECIMEN, "units", "decimal", "beads_per_tube")},
    "unit": "units",
    "volume_ul": "volume_uL",
    "date_of_birth": "birth_date",
    "birthdate": "birth_date",
    "dob": "birth_date",
    "collection_date": "draw_date",
}
_OLD_NAMES = (*REQUIRED, "units", "beads_per_tube", "volume_ul")  # 'Specimen ID' is the specimen
_CBC_HEADER = re.compile(
    r"(WBC|ANC|ALC|AMC)(?![A-Za-z0-9])[\s,:_-]*(.*)", re.IGNORECASE | re.DOTALL
)


@dataclass(frozen=True)
class _Column:
    key: str  # what the manifest means by it, or the header itself for columns it does not use
    header: str
    unit: Unit | None = None
    unit_error: str = ""


def _column(header: Any) -> _Column:
    text = cell_text(header)
    cbc = _CBC_HEADER.fullmatch(text)
    if cbc:
        name = cbc.group(1).upper()
        try:
            return _Column(name, text, parse_unit(cbc.group(2)))
        except ValueError as exc:
            return _Column(name, text, unit_error=f"the header {text!r}: {exc}")
    bracket = re.fullmatch(r"(.*?)\s*[(\[]([^()\[\]]*)[)\]]", text)
    name, unit = bracket.groups() if bracket else (text, "")
    key = re.sub(r"[\s-]+", "_", name.strip()).lower()
    if key not in _NAMES:
        first = re.split(r"[\s(\[]", text, maxsplit=1)[0].lower()
        return _Column(_NAMES[first] if first in _OLD_NAMES else text, text)
    if _NAMES[key] == "age" and unit.strip().lower() not in ("", *_AGE_UNITS):
        return _Column(
            "age",
            text,
            unit_error=f"the header {text!r} gives age in {unit.strip()!r}; "
            "give it in years, e.g. 'age (years)'",
        )
    return _Column(_NAMES[key], text)


def _columns(header: list[Any], where: str) -> list[_Column]:
    columns = [_column(h) for h in header]
    known = [c.key for c in columns if c.key in (*_NAMES.values(), *CBC)]
    dupes = sorted({k for k in known if known.count(k) > 1})
    if dupes:
        raise ManifestError(
            f"{where}: columns {dupes} appear twice (headers "
            f"{[c.header for c in columns if c.key in dupes]})"
        )
    missing = [c for c in REQUIRED if c not in known]
    if missing:
        raise ManifestError(
            f"{where}: missing columns {missing}; a manifest needs {list(REQUIRED)} "
            f"and the CBC {list(CBC)} (cells/µL unless a unit is stated)"
        )
    return columns


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """The manifest as a DataFrame of strings (CSV or XLSX); ManifestError if unreadable."""
    header, rows = read_rows(path)
    width = len(header)
    return pd.DataFrame(
        [[cell_text(c) for c in (cells + [""] * width)[:width]] for _, cells in rows],
        columns=[cell_text(h) for h in header],
    )


def read_manifest(
    path: str | os.PathLike, units: str | None = None, decimal: str | None = None
) -> tuple[pd.DataFrame, list[Problem]]:
    """(tubes, problems): one row per usable tube, every unusable row named in ``problems``.

    ``tubes`` has the columns ``file`` (resolved against the manifest's folder), ``specimen``,
    ``patient``, ``timepoint``, ``tube``, the specimen's ``WBC``, ``ANC``, ``ALC``, ``AMC`` in
    cells/µL (NaN when not given), ``beads_per_tube``, ``volume_uL``, ``row`` (of the manifest),
    ``age`` (years, NaN when unknown), ``sex`` ('F', 'M' or ''), ``draw_date`` (ISO text or '') and
    ``cbc_units`` (the unit each CBC value was read in, e.g. 'WBC cells/uL; ALC x10^3/uL';
    '(assumed)' marks a value with no unit stated).

    ``units``: the CBC unit where neither the header nor a ``units`` cell states one (default
    cells/µL). ``decimal``: the decimal separator, ',' or '.', where no ``decimal`` cell gives one
    (default: '.' and commas refused). A specimen with a problem is left out whole; one missing
    only part of its CBC is kept with those counts left empty. ManifestError when the manifest
    cannot be used at all (missing, unreadable, no required columns) or an argument is wrong."""
    path = Path(path)
    try:
        default_unit = parse_unit(units or "")
    except ValueError as exc:
        raise ManifestError(f"{path}: read_manifest(units={units!r}): {exc}") from None
    if decimal not in (None, ".", ","):
        raise ManifestError(f"{path}: read_manifest(decimal={decimal!r}): use ',' or '.'")
    header, table = read_rows(path)
    reader = _Reader(path, _columns(header, str(path)), default_unit, decimal)
    for row, cells in table:
        reader.read_row(row, cells)
    return reader.result()


class _Reader:
    """The state of one read_manifest call: problems, left-out specimens, per-specimen values."""

    def __init__(
        self, path: Path, columns: list[_Column], unit: Unit | None, decimal: str | None
    ) -> None:
        self.path, self.where = path, str(path)
        self.columns = columns
        self.column = {c.key: c for c in columns}
        self.unit, self.decimal = unit, decimal
        self.problems: list[Problem] = []
        self.bad: set[str] = set()
        self.seen: dict[str, dict[str, tuple[Any, int, str]]] = {}  # key -> (value, row, note)
        self.reported: set[tuple[str, str]] = set()  # (specimen, what) reported once
        self.said: set[tuple[str, str, str]] = set()  # (specimen, column, message) said
        self.rows: list[dict[str, Any]] = []
        self.tubes: dict[tuple[str, str], tuple[int, list[str]]] = {}  # -> (row, its cells)
        self.owner: dict[str, tuple[str, str, int]] = {}  # specimen -> (patient, timepoint, row)

    def report(self, row: int, column: str, spec: str, message: str, keep: bool = False) -> None:
        # a specimen's CBC repeated on each tube row is named once, at its first row
        if (spec, column, message) not in self.said:
            self.said.add((spec, column, message))
            self.problems.append(Problem(self.where, row, column, spec, message))
        if spec and not keep:
            self.bad.add(spec)

    def report_once(self, row: int, column: str, spec: str, message: str, what: str) -> None:
        if (spec, what) not in self.reported:
            self.reported.add((spec, what))
            self.report(row, column, spec, message)
        self.bad.add(spec)

    def agree(self, spec: str, key: str, value: Any, row: int, note: str = "") -> None:
        """Keep a per-specimen value; a different one on another row is a problem."""
        known = self.seen.setdefault(spec, {})
        if key not in known:
            known[key] = (value, row, note)
            return
        before = known[key][0]
        if isinstance(value, float):
            same = abs(before - value) <= 1e-6 * max(1.0, abs(value))
        else:
            same = before == value
        if not same:
            self.report(
                row,
                key,
                spec,
                f"{key} of specimen {spec} is {_shown(before)} on an earlier row and "
                f"{_shown(value)} here (earlier: row {known[key][1]}); give it once per specimen",
            )

    def read_row(self, row: int, cells: list[Any]) -> None:
        rec = {c.key: cells[i] if i < len(cells) else None for i, c in enumerate(self.columns)}
        spec = cell_text(rec["specimen"])
        for cell, column in zip(cells, self.columns):
            bad = _CONTROL.search(cell_text(cell)) if column.key in _USED else None
            if bad:  # a NUL truncates an id in C libraries (HDF5); escapes reach terminals
                self.problems.append(
                    Problem(
                        self.where,
                        row,
                        column.header,
                        _printable(spec),
                        f"'{_printable(cell_text(cell))}' holds the control character "
                        f"U+{ord(bad.group()):04X}{' (NUL)' if bad.group() == chr(0) else ''}; "
                        "cells are printable text",
                    )
                )
                self.bad.add(spec)
                return
        empty = [c for c in REQUIRED if not cell_text(rec[c])]
        if empty:
            self.report(row, empty[0], spec, f"{empty[0]} is empty")
            return
        extra = [cell_text(c) for c in cells[len(self.columns) :] if cell_text(c)]
        if extra:
            self.report(
                row,
                "",
                spec,
                f"the row has more cells than the header's {len(self.columns)} columns "
                f"(first extra cell {extra[0]!r})",
            )
            return
        if not self._once(row, spec, rec, cells):
            return
        decimal = self.decimal
        if cell_text(rec.get("decimal")):
            decimal = _DECIMALS.get(cell_text(rec["decimal"]).lower())
            if decimal is None:
                self.report(
                    row, "decimal", spec, f"decimal={cell_text(rec['decimal'])!r} is not ',' or '.'"
                )
                return
        unit, unit_error = self.unit, ""
        if cell_text(rec.get("units")):
            try:
                unit = parse_unit(cell_text(rec["units"]))
            except ValueError as exc:
                unit_error = str(exc)
        for name in CBC:
            if cell_text(rec.get(name)):
                self._cbc(row, spec, name, rec[name], decimal, unit, unit_error)
        out: dict[str, Any] = {c: cell_text(rec[c]) for c in REQUIRED}
        file_path = Path(out["file"])
        out["file"] = str(file_path if file_path.is_absolute() else self.path.parent / file_path)
        out["row"] = row
        for b in BEADS:
            out[b] = math.nan
            if cell_text(rec.get(b)):
                shown = cell_text(rec[b])
                try:
                    out[b] = cell_number(rec[b], decimal)
                except ValueError as exc:
                    self.report(row, b, spec, f"{b}={shown!r} {exc}")
                    continue
                if not math.isfinite(out[b]) or out[b] < 0:
                    self.report(row, b, spec, f"{b}={shown!r}: must be a number >= 0")
        self._demographics(row, spec, rec, decimal)
        self._times(row, spec, rec, decimal)
        self.rows.append(out)

    def _once(self, row: int, spec: str, rec: dict[str, Any], cells: list[Any]) -> bool:
        """Whether the row is to be read: each tube of a specimen on one row, each specimen of
        one patient and timepoint. A row repeating an earlier one cell for cell is named and
        skipped (False; the specimen is kept); another row for the same tube, or a specimen id
        used for two patients or timepoints, is a problem that leaves the specimen out."""
        tube = cell_text(rec["tube"])
        text = [cell_text(c) for c in cells]
        width = len(self.columns)
        text = (text + [""] * width)[: max(width, len(text))]
        earlier = self.tubes.get((spec, tube))
        if earlier is not None and earlier[1] == text:
            self.report(
                row,
                "",
                spec,
                f"the row repeats row {earlier[0]} (tube {tube}) cell for cell; the repeat is "
                "not read: remove it",
                keep=True,
            )
            return False
        if earlier is not None:
            self.report(
                row,
                "tube",
                spec,
                f"tube {tube} of specimen {spec} is also on row {earlier[0]} with other cells "
                f"(file {cell_text(rec['file'])!r} here); give each tube of a specimen on one row",
            )
            return False
        self.tubes[(spec, tube)] = (row, text)
        patient, timepoint = cell_text(rec["patient"]), cell_text(rec["timepoint"])
        owner = self.owner.setdefault(spec, (patient, timepoint, row))
        for what, before, now in (
            ("patient", owner[0], patient),
            ("timepoint", owner[1], timepoint),
        ):
            if before != now:
                self.report(
                    row,
                    what,
                    spec,
                    f"specimen {spec} is {what} {before!r} on row {owner[2]} and {now!r} here: "
                    "one specimen id for two different draws? Give each specimen its own id",
                )
                return False
        return True

    def _cbc(
        self,
        row: int,
        spec: str,
        name: str,
        raw: Any,
        decimal: str | None,
        row_unit: Unit | None,
        row_unit_error: str,
    ) -> None:
        shown = cell_text(raw)
        try:
            value = cell_number(raw, decimal)
        except ValueError as exc:
            self.report(row, name, spec, f"{name}={shown!r} {exc}")
            return
        if not math.isfinite(value) or value < 0:
            self.report(row, name, spec, f"{name}={shown!r}: a count must be a number >= 0")
            return
        column = self.column[name]
        if column.unit_error:
            self.report_once(row, name, spec, column.unit_error, name)
            return
        if column.unit is None and row_unit_error:
            self.report_once(row, "units", spec, row_unit_error, f"units of row {row}")
            return
        unit = column.unit or row_unit or CELLS_PER_UL
        per_ul = value * unit.factor
        if 0 < per_ul < 1:
            if unit.factor == 1:
                message = (
                    f"{name}={shown} cells/µL: below one cell per µL; a count in x10^3/µL "
                    f"needs its unit stated, e.g. '{name} (x10^3/uL)'"
                )
            else:
                message = (
                    f"{name}={shown} {unit.label} is {per_ul:g} cells/µL: below one cell per "
                    "µL, which no CBC reports; check the value and its unit"
                )
            self.report(row, name, spec, message)
            return
        stated = column.unit is not None or row_unit is not None
        self.agree(
            spec, name, per_ul, row, f"{name} {unit.label}" + ("" if stated else " (assumed)")
        )

    def _demographics(self, row: int, spec: str, rec: dict[str, Any], decimal: str | None) -> None:
        """One row's age, sex, birth and draw dates into the specimen's values."""
        if cell_text(rec.get("age")):
            shown = cell_text(rec["age"])
            if self.column["age"].unit_error:
                self.report_once(row, "age", spec, self.column["age"].unit_error, "age")
                return
            try:
                age = cell_number(rec["age"], decimal)
            except ValueError as exc:
                self.report(row, "age", spec, f"age={shown!r} {exc}")
            else:
                if math.isfinite(age) and 0 <= age < MAX_AGE:
                    self.agree(spec, "age", age, row)
                else:
                    self.report(
                        row,
                        "age",
                        spec,
                        f"age={shown!r}: expected years, a number >= 0 and < {MAX_AGE:g}",
                    )
        if "sex" in rec:
            shown = cell_text(rec["sex"])
            if shown.lower() in _UNSPECIFIED_SEX:
                shown = ""
            if shown.lower() not in _SEXES:
                self.report(row, "sex", spec, f"sex={shown!r} is not F, M, female, male or empty")
            elif shown:
                self.agree(spec, "sex", _SEXES[shown.lower()], row)
        for key in ("birth_date", "draw_date"):
            day = self._past(row, spec, rec, key, parse_date)
            if day is not None:
                self.agree(spec, key, day, row)

    def _past(self, row: int, spec: str, rec: dict[str, Any], key: str, parse) -> Any:
        """``rec[key]`` read by ``parse`` (a date or a date and time); None when blank, or when
        unreadable or in the future (both reported)."""
        if not cell_text(rec.get(key)):
            return None
        try:
            value = parse(rec[key])
        except ValueError as exc:
            self.report(row, key, spec, f"{key}={cell_text(rec[key])!r} {exc}")
            return None
        if isinstance(value, datetime):  # a day's slack: clocks and time zones differ
            now = datetime.now(value.tzinfo) if value.tzinfo else datetime.now()
            future = value > now + timedelta(days=1)
        else:
            future = value > date.today()
        if future:
            self.report(row, key, spec, f"{key}={value.isoformat()} is in the future")
            return None
        return value

    def _times(self, row: int, spec: str, rec: dict[str, Any], decimal: str | None) -> None:
        """One row's draw and dose times, hours after the dose, visit and control lot."""
        for key in ("draw_time", "dose_time"):
            when = self._past(row, spec, rec, key, parse_time)
            if when is not None:
                self.agree(spec, key, when, row)
        if cell_text(rec.get("hours_post_dose")):
            shown = cell_text(rec["hours_post_dose"])
            try:
                hours = cell_number(rec["hours_post_dose"], decimal)
            except ValueError as exc:
                self.report(row, "hours_post_dose", spec, f"hours_post_dose={shown!r} {exc}")
            else:
                if math.isfinite(hours) and abs(hours) <= 24 * 366:
                    self.agree(spec, "hours_post_dose", hours, row)
                else:
                    self.report(
                        row,
                        "hours_post_dose",
                        spec,
                        f"hours_post_dose={shown!r}: expected hours, within a year of the dose",
                    )
        for key in ("visit", "control_lot"):
            if cell_text(rec.get(key)):
                self.agree(spec, key, cell_text(rec[key]), row)

    def _check_times(self, spec: str, known: dict[str, Any]) -> None:
        """Draw and dose times agree with each other, with hours_post_dose and with draw_date;
        hours_post_dose is computed from the times when not given."""
        draw, dose = known.get("draw_time"), known.get("dose_time")
        if draw and dose and (draw[0].tzinfo is None) != (dose[0].tzinfo is None):
            self.report(
                dose[1],
                "dose_time",
                spec,
                "draw_time and dose_time must both give a UTC offset or both leave it out",
            )
            return
        hours = known.get("hours_post_dose")
        if draw and dose:
            gap = (draw[0] - dose[0]).total_seconds() / 3600
            if hours is None:
                known["hours_post_dose"] = (gap, dose[1], "")
            elif abs(hours[0] - gap) > 0.05:
                self.report(
                    hours[1],
                    "hours_post_dose",
                    spec,
                    f"hours_post_dose {hours[0]:g} disagrees with draw_time {draw[0]} and "
                    f"dose_time {dose[0]} ({gap:.2f} hours)",
                )
        day = known.get("draw_date")
        if draw and day and _wall_clock(draw[0]).date() != day[0]:
            self.report(
                draw[1],
                "draw_time",
                spec,
                f"draw_time {draw[0]} is not on draw_date {day[0]} (row {day[1]})",
            )
        elif draw and not day:
            known["draw_date"] = (_wall_clock(draw[0]).date(), draw[1], "")

    def _check_specimen(self, spec: str) -> None:
        """Specimen-wide rules: age from the dates, differential within the WBC, a CBC or beads."""
        known = self.seen.setdefault(spec, {})
        self._check_times(spec, known)
        birth, draw, age = (known.get(k) for k in ("birth_date", "draw_date", "age"))
        if birth and draw and draw[0] < birth[0]:
            self.report(
                draw[1],
                "draw_date",
                spec,
                f"draw_date {draw[0]} is before birth_date {birth[0]} (row {birth[1]})",
            )
        elif birth and draw:
            years = age_in_years(birth[0], draw[0])
            if age is not None and abs(age[0] - years) >= 1:
                self.report(
                    age[1],
                    "age",
                    spec,
                    f"age {age[0]:g} disagrees with birth_date {birth[0]} and draw_date "
                    f"{draw[0]} ({years:.2f} years)",
                )
            elif age is None and years >= MAX_AGE:
                self.report(
                    birth[1],
                    "birth_date",
                    spec,
                    f"birth_date {birth[0]} and draw_date {draw[0]} give {years:.1f} years; "
                    f"expected an age < {MAX_AGE:g}",
                )
            elif age is None:
                known["age"] = (years, birth[1], "")
        elif birth and age is None:
            self.report(
                birth[1],
                "birth_date",
                spec,
                "birth_date without draw_date: the age at the draw is unknown; "
                "add draw_date or age",
            )
        wbc = known.get("WBC")
        for name in ("ANC", "ALC", "AMC"):
            part = known.get(name)
            if wbc and part and wbc[0] > 0 and part[0] > 10 * wbc[0]:
                self.report(
                    part[1],
                    name,
                    spec,
                    f"{name}={part[0]:g} cells/µL ({part[2]}) is more than ten times "
                    f"WBC={wbc[0]:g} cells/µL ({wbc[2]}), which a differential count cannot "
                    "exceed: are the columns in different units? State each column's unit",
                )
                break
        spec_rows = [r for r in self.rows if r["specimen"] == spec]
        missing = [c for c in CBC if c not in known]
        beads = all(not math.isnan(r["beads_per_tube"]) for r in spec_rows)
        if missing and not beads:
            whole = len(missing) == len(CBC)
            self.report(
                spec_rows[0]["row"],
                missing[0],
                spec,
                f"specimen {spec} has no {', '.join(missing)} (CBC, cells/µL) and no counting "
                "beads" + ("" if whole else "; counts against it are left empty"),
                keep=not whole,
            )

    def result(self) -> tuple[pd.DataFrame, list[Problem]]:
        for spec in sorted({r["specimen"] for r in self.rows} - self.bad):
            self._check_specimen(spec)
        good = [r for r in self.rows if r["specimen"] not in self.bad]
        for r in good:
            known = self.seen.get(r["specimen"], {})
            for name in CBC:
                r[name] = known[name][0] if name in known else math.nan
            r["age"] = known["age"][0] if "age" in known else math.nan
            r["sex"] = known["sex"][0] if "sex" in known else ""
            r["draw_date"] = known["draw_date"][0].isoformat() if "draw_date" in known else ""
            r["cbc_units"] = "; ".join(known[n][2] for n in CBC if n in known)
            for key in ("draw_time", "dose_time"):  # the lab's wall clock
                when = known[key][0] if key in known else None
                r[key] = _wall_clock(when).isoformat() if when else ""
            hours = known.get("hours_post_dose")
            r["hours_post_dose"] = hours[0] if hours else math.nan
            for key in ("visit", "control_lot"):
                r[key] = known[key][0] if key in known else ""
        return pd.DataFrame(good, columns=list(COLUMNS)), self.problems


_USED = {*REQUIRED, *CBC, *BEADS, *PER_SPECIMEN, "units", "decimal"}  # the columns read


def _printable(text: str) -> str:
    """``text`` with its control characters escaped (\\x00), for messages and errors.csv."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _wall_clock(when: datetime) -> datetime:
    """A time as the lab's clock shows it: an aware time (an offset or Z in the manifest, e.g. a
    LIS export in UTC) in this machine's time zone, then naive; a naive time as it is."""
    return when.astimezone().replace(tzinfo=None) if when.tzinfo is not None else when


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value.isoformat() if isinstance(value, date) else str(value)

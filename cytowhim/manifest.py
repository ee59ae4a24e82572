"""The run manifest: one row per tube file with specimen, patient, timepoint, tube and the CBC.

CSV or XLSX. The CBC (WBC, ANC, ALC, AMC) is given once per specimen (repeated or blank on its
other rows), in cells/µL or x10^3/µL, stated in the header (``ALC (x10^3/uL)``) or in a
``units`` column; unstated units mean cells/µL unless the values could only be x10^3/µL.
Counting beads (single platform) come per tube in ``beads_per_tube`` and ``volume_uL``.

Bad rows never stop the run: :func:`read_manifest` returns the good tubes and a list of
problems, each naming the file, the row and the column.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import CytowhimError

REQUIRED = ("file", "specimen", "patient", "timepoint", "tube")
CBC = ("WBC", "ANC", "ALC", "AMC")
BEADS = ("beads_per_tube", "volume_uL")
_THOUSANDS = re.compile(r"(x|×|\*)?\s*10\^?3|10³|k/|thousand", re.IGNORECASE)
_CELLS = re.compile(r"cells?\s*/\s*(u|µ|μ)l|/\s*(u|µ|μ)l", re.IGNORECASE)


class ManifestError(CytowhimError, ValueError):
    """The manifest itself cannot be used (missing file, missing columns, unreadable)."""


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


def _unit_factor(text: str) -> float | None:
    """1 for cells/µL, 1000 for x10^3/µL, None if the text states no unit."""
    if _THOUSANDS.search(text):
        return 1000.0
    if _CELLS.search(text):
        return 1.0
    return None


def _normalise_columns(
    frame: pd.DataFrame, where: str
) -> tuple[pd.DataFrame, dict[str, float | None]]:
    """Map headers like 'ALC (x10^3/uL)' to 'ALC' and remember each CBC column's unit."""
    rename, units = {}, {}
    for col in frame.columns:
        text = str(col).strip()
        base = re.split(r"[\s(\[]", text, maxsplit=1)[0]
        key = (
            base.upper()
            if base.upper() in CBC
            else base.lower()
            if base.lower() in (*REQUIRED, "units")
            else base
        )
        if base in BEADS or base.lower() in (b.lower() for b in BEADS):
            key = next(b for b in BEADS if b.lower() == base.lower())
        rename[col] = key
        if key in CBC:
            units[key] = _unit_factor(text[len(base) :])
    frame = frame.rename(columns=rename)
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise ManifestError(f"{where}: columns {dupes} appear twice")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{where}: missing columns {missing}; a manifest needs {list(REQUIRED)} "
            f"and the CBC {list(CBC)} (cells/µL or x10^3/µL)"
        )
    return frame, units


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """The manifest as a DataFrame of strings (CSV or XLSX); ManifestError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(path, dtype=str).fillna("")
        return pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except ImportError as exc:
        raise ManifestError(f"{path}: reading spreadsheets needs openpyxl ({exc})") from None
    except Exception as exc:  # pandas raises many kinds for a broken file
        raise ManifestError(
            f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})"
        ) from None


def read_manifest(path: str | os.PathLike) -> tuple[pd.DataFrame, list[Problem]]:
    """(tubes, problems): one row per usable tube with the file resolved to a path and the
    specimen's CBC in cells/µL; every unusable row named in ``problems``. Specimens with a problem
    in their CBC are left out whole (their counts would be wrong); others are kept."""
    path = Path(path)
    where = str(path)
    frame, units = _normalise_columns(read_table(path), where)
    first_row = 2  # header is row 1
    problems: list[Problem] = []
    cbc_of: dict[str, dict[str, float]] = {}
    bad_specimens: set[str] = set()
    rows = []
    for k, rec in enumerate(frame.to_dict("records")):
        row = first_row + k
        spec = str(rec.get("specimen", "")).strip()
        empty = [c for c in REQUIRED if not str(rec.get(c, "")).strip()]
        if empty:
            problems.append(Problem(where, row, empty[0], spec, f"{empty[0]} is empty"))
            if spec:
                bad_specimens.add(spec)
            continue
        row_unit = _unit_factor(str(rec.get("units", ""))) if "units" in frame.columns else None
        for name in CBC:
            raw = str(rec.get(name, "")).strip()
            if not raw:
                continue
            try:
                value = float(raw.replace(",", ""))
            except ValueError:
                problems.append(Problem(where, row, name, spec, f"{name}={raw!r} is not a number"))
                bad_specimens.add(spec)
                continue
            if not math.isfinite(value) or value < 0:
                problems.append(
                    Problem(
                        where, row, name, spec, f"{name}={raw!r}: a count must be a number >= 0"
                    )
                )
                bad_specimens.add(spec)
                continue
            factor = units.get(name) or row_unit
            if factor is None:
                if "units" in frame.columns and str(rec.get("units", "")).strip():
                    if spec in bad_specimens:
                        break  # this row's unit is already reported
                    problems.append(
                        Problem(
                            where,
                            row,
                            "units",
                            spec,
                            f"unit {rec['units']!r} is not understood; use cells/uL or x10^3/uL",
                        )
                    )
                    bad_specimens.add(spec)
                    break
                if 0 < value < 30 and name in ("WBC", "ALC", "ANC"):
                    problems.append(
                        Problem(
                            where,
                            row,
                            name,
                            spec,
                            f"{name}={raw} with no unit stated looks like x10^3/µL; state the unit in "
                            "the header (e.g. 'ALC (x10^3/uL)') or a units column",
                        )
                    )
                    bad_specimens.add(spec)
                    continue
                factor = 1.0
            value *= factor
            known = cbc_of.setdefault(spec, {})
            if name in known and abs(known[name] - value) > 1e-6 * max(1.0, value):
                problems.append(
                    Problem(
                        where,
                        row,
                        name,
                        spec,
                        f"{name} of specimen {spec} is {known[name]:g} on an "
                        f"earlier row and {value:g} here",
                    )
                )
                bad_specimens.add(spec)
            known[name] = value
        file_path = Path(str(rec["file"]).strip())
        if not file_path.is_absolute():
            file_path = path.parent / file_path
        out = {c: str(rec[c]).strip() for c in REQUIRED}
        out["file"] = str(file_path)
        out["row"] = row
        for b in BEADS:
            raw = str(rec.get(b, "")).strip()
            out[b] = float(raw) if raw and _is_number(raw) else math.nan
        rows.append(out)
    for spec in sorted({r["specimen"] for r in rows} - bad_specimens):
        missing = [c for c in CBC if c not in cbc_of.get(spec, {})]
        spec_rows = [r for r in rows if r["specimen"] == spec]
        beads = all(not math.isnan(r["beads_per_tube"]) for r in spec_rows)
        if missing and not beads:
            whole = len(missing) == len(CBC)
            problems.append(
                Problem(
                    where,
                    spec_rows[0]["row"],
                    missing[0],
                    spec,
                    f"specimen {spec} has no {', '.join(missing)} (CBC, cells/µL) and no counting beads"
                    + ("" if whole else "; counts against it are left empty"),
                )
            )
            if whole:
                bad_specimens.add(spec)
    good = [r for r in rows if r["specimen"] not in bad_specimens]
    for r in good:
        for name in CBC:
            r[name] = cbc_of.get(r["specimen"], {}).get(name, math.nan)
    columns = [*REQUIRED, *CBC, *BEADS, "row"]
    return pd.DataFrame(good, columns=columns), problems


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

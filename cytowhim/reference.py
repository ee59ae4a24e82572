"""Reference intervals (cells/µL) and the H / L flags of absolute counts outside them.

A reference table has one row per interval: ``population, low, high`` and optionally
``age_min, age_max`` (years; ``age_min <= age < age_max``), ``sex`` ('F', 'M' or '' for both),
``units`` (cells/µL; ×10^9/L and ×10^3/µL are converted; 'ratio' for the CD4/CD8 ratio) and
``source``. An empty ``low`` or
``high`` leaves that side open. When several rows match a specimen the most specific wins: an age
band and sex over an age band, over a sex, over a general row. Per population and sex there is
at most one row without an age band, and the age bands do not overlap.

:meth:`ReferenceIntervals.bundled` gives the ranges of the plerixafor WHIM trial (Table 1);
:meth:`ReferenceIntervals.load` reads a lab's own CSV.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import CytowhimError
from .labels import ascii_name
from .resources import data_path

if TYPE_CHECKING:
    from .reporting import ReportingRules

__all__ = ["BUNDLED_SOURCE", "Interval", "ReferenceTableError", "ReferenceIntervals"]

COLUMNS = ("population", "low", "high", "age_min", "age_max", "sex", "units", "source")
UNITS = "cells/µL"
BUNDLED_SOURCE = (
    "low-dose plerixafor trial in WHIM syndrome (NCT00967785, Blood), Table 1: reference "
    "intervals from 12-40 healthy volunteers"
)

_PER_UL = re.compile(r"^(cells?)?\s*/\s*[uµμ]l$", re.IGNORECASE)
_THOUSANDS = re.compile(
    r"^([x×*]\s*)?(10\^?9\s*/\s*l|10\^?3\s*/\s*[uµμ]l|g/l|k/[uµμ]l)$", re.IGNORECASE
)
_SEXES = {"": "", "f": "F", "female": "F", "m": "M", "male": "M"}


class ReferenceTableError(CytowhimError, ValueError):
    """A reference table is unusable; the message names the file, row and column."""


class ReferenceIntervals:
    """Reference intervals, cells/µL, with age- and sex-specific bands.

    Build from a DataFrame with the columns of the module docstring (``population``, ``low``,
    ``high`` required), or with :meth:`bundled` / :meth:`load`. Immutable.
    """

    def __init__(self, frame: pd.DataFrame, *, origin: str = "reference table") -> None:
        if not isinstance(frame, pd.DataFrame):
            raise ReferenceTableError(f"{origin}: expected a DataFrame; got {type(frame).__name__}")
        self._set(frame, origin, [f"row {i + 1}" for i in range(len(frame))])

    def _set(self, frame: pd.DataFrame, origin: str, labels: list[str]) -> None:
        self._frame = _validated(frame, origin, labels)
        self._origin = origin
        self._bands: dict[str, list[Interval]] = {}
        for r in self._frame.itertuples(index=False):
            self._bands.setdefault(r.population, []).append(
                Interval(r.low, r.high, r.age_min, r.age_max, r.sex, r.source or origin, r.units)
            )

    @classmethod
    def _checked(cls, frame: pd.DataFrame, origin: str, labels: list[str]) -> ReferenceIntervals:
        self = cls.__new__(cls)
        self._set(frame, origin, labels)
        return self

    @classmethod
    def bundled(cls) -> ReferenceIntervals:
        """The reference intervals of the plerixafor WHIM trial (Table 1; healthy volunteers,
        no age or sex bands), from the bundled ``whim_plerixafor_table1.csv``."""
        return _bundled()

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceIntervals:
        """A lab's reference CSV (``#`` lines are comments); errors name the file, line and
        column."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ReferenceTableError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ReferenceTableError(f"{path}: not UTF-8 text ({exc.reason})") from None
        numbered = [
            (n, line) for n, line in enumerate(text.splitlines(), 1) if not line.startswith("#")
        ]
        numbered = [(n, line) for n, line in numbered if line.strip()]
        if not numbered:
            raise ReferenceTableError(f"{path}: no header row (expected {', '.join(COLUMNS)})")
        reader = csv.reader(line for _, line in numbered)
        header = [h.strip() for h in next(reader)]
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise ReferenceTableError(
                f"{path}, line {numbered[0][0]}: column(s) {', '.join(map(repr, repeated))} "
                "appear more than once"
            )
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise ReferenceTableError(
                f"{path}, line {numbered[0][0]}: unknown column(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(COLUMNS)}"
            )
        records, labels = [], []
        for (n, _), cells in zip(numbered[1:], reader):
            if len(cells) != len(header):
                raise ReferenceTableError(
                    f"{path}, line {n}: {len(cells)} fields, the header has {len(header)}"
                )
            records.append(dict(zip(header, (c.strip() for c in cells))))
            labels.append(f"line {n}")
        frame = pd.DataFrame(records, columns=header)
        return cls._checked(frame, str(path), labels)

    @property
    def frame(self) -> pd.DataFrame:
        """The intervals (a copy): population, low, high (cells/µL), age_min, age_max, sex,
        units, source."""
        return self._frame.copy()

    def __len__(self) -> int:
        return len(self._frame)

    @property
    def source(self) -> str:
        """Where the intervals come from (a file path, or the bundled table)."""
        return self._origin

    def __repr__(self) -> str:
        n = self._frame["population"].nunique()
        return f"ReferenceIntervals({len(self)} intervals, {n} populations, from {self._origin})"

    def interval(
        self, population: str, age: float | None = None, sex: str | None = None
    ) -> Interval | None:
        """The most specific interval for a population (name, or a gate path's last part) at
        this age (years) and sex ('F'/'M'): an age band and sex over an age band, over a sex,
        over a general row; None if none applies."""
        bands = self._bands_of(population)
        if not bands:
            return None
        age = None if age is None or pd.isna(age) else float(age)
        sex = _sex(sex, "lookup", "sex") if sex is not None and not pd.isna(sex) else ""
        best, best_rank = None, (-1, -1)
        for band in bands:
            if band.banded and (age is None or not _lo(band.age_min) <= age < _hi(band.age_max)):
                continue
            if band.sex and band.sex != sex:
                continue
            rank = (int(band.banded), int(bool(band.sex)))
            if rank > best_rank:
                best, best_rank = band, rank
        return best

    def covers(self, population: str) -> bool:
        """Whether the table has any interval for the population."""
        return bool(self._bands_of(population))

    def lookup(
        self, population: str, age: float | None = None, sex: str | None = None
    ) -> tuple[float, float] | None:
        """(low, high) in cells/µL for a population at this age (years) and sex ('F'/'M'); NaN
        for an open side; None if no interval applies."""
        found = self.interval(population, age, sex)
        return None if found is None else (float(found.low), float(found.high))

    def flag(
        self, population: str, value: float, age: float | None = None, sex: str | None = None
    ) -> str:
        """'L' below the interval, 'H' above it, '' inside it, with no interval or no value."""
        found = self.interval(population, age, sex)
        return "" if found is None else found.flag(value)

    def flag_table(
        self,
        table: pd.DataFrame,
        ages: float | Mapping[Hashable, float] | None = None,
        sexes: str | Mapping[Hashable, str] | None = None,
        reporting: ReportingRules | None = None,
    ) -> pd.DataFrame:
        """The population table (a copy) with ``reference_flag``, ``reference_low``,
        ``reference_high`` (cells/µL), ``reference_band`` and ``reference_source`` filled: the
        interval each flag used.

        Flags are computed on the value as reported (:class:`~cytowhim.reporting.ReportingRules`,
        default rounding and limit of quantitation): a reported 359 is inside 359–1565; a
        reported "<1" is L only when the low limit is at or above 1. ``ages`` (years) and
        ``sexes`` are one value for every row or mappings keyed by specimen (or patient); by
        default the table's own ``age`` and ``sex`` columns are used. Rows of ratios
        (``units`` 'ratio') are flagged on their ``reported`` value. See :meth:`annotate` for
        rows whose population has intervals of which none applies.
        """
        return self.annotate(table, ages, sexes, reporting)[0]

    def annotate(
        self,
        table: pd.DataFrame,
        ages: float | Mapping[Hashable, float] | None = None,
        sexes: str | Mapping[Hashable, str] | None = None,
        reporting: ReportingRules | None = None,
    ) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
        """(:meth:`flag_table`'s table, [(row position, why no interval applies)]) for rows
        whose population has intervals but none for this specimen's age and sex."""
        from .reporting import ReportingRules

        missing = [c for c in ("population", "absolute_per_uL") if c not in table.columns]
        if missing:
            raise ReferenceTableError(
                f"flag_table: the population table has no column {', '.join(map(repr, missing))}"
            )
        rules = reporting or ReportingRules()
        out = table.copy()
        n = len(out)
        values = pd.to_numeric(out["absolute_per_uL"], errors="coerce").astype(float).tolist()
        events = _column(out, "events", math.nan)
        ratios = (
            [rules.ratio(float(v)) for v in out["ratio"]]
            if "ratio" in out.columns
            else _column(out, "reported", "")
        )
        units = [str(u) for u in _column(out, "units", "")]
        specimens = _column(out, "specimen", None)
        patients = _column(out, "patient", None)
        age_of = ages if ages is not None else _column(out, "age", None)
        sex_of = sexes if sexes is not None else _column(out, "sex", None)
        flags, lows, highs, band_texts, sources, unmatched = [], [], [], [], [], []
        for i, population in enumerate(out["population"].map(str)):
            age = _per_row(age_of, i, specimens[i], patients[i])
            sex = _per_row(sex_of, i, specimens[i], patients[i])
            found = self.interval(population, age, sex)
            if found is None:
                flags.append("")
                lows.append(math.nan)
                highs.append(math.nan)
                band_texts.append("")
                sources.append("")
                if self.covers(population):
                    unmatched.append((i, _no_interval(population, age, sex)))
                continue
            if units[i] == "ratio":
                flags.append(found.flag(_number_or_nan(ratios[i])))
            else:
                per_event = _per_event(values[i], events[i])
                reported, text = rules.reported(values[i], per_event)
                flags.append(found.flag(reported, below=text.startswith("<")))
            lows.append(found.low)
            highs.append(found.high)
            band_texts.append(found.band)
            sources.append(found.source)
        out["reference_flag"] = flags if n else pd.Series(dtype=str)
        out["reference_low"] = pd.Series(lows, index=out.index, dtype=float)
        out["reference_high"] = pd.Series(highs, index=out.index, dtype=float)
        out["reference_band"] = band_texts if n else pd.Series(dtype=str)
        out["reference_source"] = sources if n else pd.Series(dtype=str)
        return out, unmatched

    def _bands_of(self, population: str) -> list[Interval]:
        name = str(population)
        return (
            self._bands.get(name)
            or self._bands.get(name.rsplit("/", 1)[-1])
            or self._bands.get(ascii_name(name))
            or self._bands.get(ascii_name(name.rsplit("/", 1)[-1]))
            or []
        )


@dataclass(frozen=True)
class Interval:
    """One reference interval: low and high (cells/µL, or a ratio; NaN = open side), the age
    band [age_min, age_max) in years (NaN = open), sex ('F', 'M', '' for both), its source."""

    low: float
    high: float
    age_min: float = math.nan
    age_max: float = math.nan
    sex: str = ""
    source: str = ""
    units: str = UNITS

    @property
    def banded(self) -> bool:
        return not (math.isnan(self.age_min) and math.isnan(self.age_max))

    @property
    def band(self) -> str:
        """Who the interval is for: 'age 18 y and over, F', 'age 2 to under 6 y', 'all ages'."""
        low, high = _lo(self.age_min), _hi(self.age_max)
        if not self.banded:
            ages = ""
        elif math.isinf(high):
            ages = f"age {low:g} y and over"
        elif math.isinf(low):
            ages = f"age under {high:g} y"
        else:
            ages = f"age {low:g} to under {high:g} y"
        return ", ".join(p for p in (ages, self.sex) if p) or "all ages"

    def flag(self, value: float, below: bool = False) -> str:
        """'L', 'H' or '' for a value; ``below``: the value is a limit of quantitation ('<1'),
        L only when that limit is at or below the low end."""
        if value is None or pd.isna(value):
            return ""
        if below:
            return "L" if not math.isnan(self.low) and value <= self.low else ""
        if not math.isnan(self.low) and value < self.low:
            return "L"
        if not math.isnan(self.high) and value > self.high:
            return "H"
        return ""


@functools.lru_cache(maxsize=1)
def _bundled() -> ReferenceIntervals:
    path = data_path("reference", "whim_plerixafor_table1.csv")
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    frame = pd.DataFrame(
        {
            "population": [r["population"] for r in rows],
            "low": [r["reference_low"] for r in rows],
            "high": [r["reference_high"] for r in rows],
            "source": BUNDLED_SOURCE,
        }
    )
    return ReferenceIntervals._checked(frame, str(path), [f"row {i + 1}" for i in range(len(rows))])


def _validated(frame: pd.DataFrame, origin: str, labels: list[str]) -> pd.DataFrame:
    """Checked, normalised copy: numbers as floats in cells/µL, sex 'F'/'M'/'', no overlaps."""
    for column in ("population", "low", "high"):
        if column not in frame.columns:
            raise ReferenceTableError(
                f"{origin}: no column {column!r} (expected {', '.join(COLUMNS)}; "
                "population, low and high are required)"
            )
    records = []
    for label, rec in zip(labels, frame.to_dict("records")):
        where = f"{origin}, {label}"
        population = ascii_name(_text(rec.get("population")))
        if not population:
            raise ReferenceTableError(f"{where}, column population: empty")
        ratio = _text(rec.get("units")).lower() == "ratio"
        factor = 1.0 if ratio else _unit_factor(_text(rec.get("units")), f"{where}, column units")
        low, high = (_number(rec.get(c), f"{where}, column {c}") * factor for c in ("low", "high"))
        if math.isnan(low) and math.isnan(high):
            raise ReferenceTableError(f"{where}: low and high are both empty for {population!r}")
        if low > high:
            raise ReferenceTableError(f"{where}: low {low:g} > high {high:g} for {population!r}")
        age_min = _number(rec.get("age_min"), f"{where}, column age_min")
        age_max = _number(rec.get("age_max"), f"{where}, column age_max")
        if _lo(age_min) >= _hi(age_max):
            raise ReferenceTableError(
                f"{where}: age band [{age_min:g}, {age_max:g}) years is empty for {population!r}"
            )
        records.append(
            {
                "population": population,
                "low": low,
                "high": high,
                "age_min": age_min,
                "age_max": age_max,
                "sex": _sex(rec.get("sex"), where, "sex"),
                "units": "ratio" if ratio else UNITS,
                "source": _text(rec.get("source")),
                "row_label": where,
            }
        )
    out = pd.DataFrame(records, columns=[*COLUMNS, "row_label"])
    _check_overlaps(out)
    return out.drop(columns="row_label").astype(
        {"low": float, "high": float, "age_min": float, "age_max": float}
    )


def _check_overlaps(frame: pd.DataFrame) -> None:
    """One general row and non-overlapping age bands per population and sex."""
    for (population, sex), rows in frame.groupby(["population", "sex"], sort=False):
        who = f"{population!r}" + (f" (sex {sex})" if sex else "")
        general = rows[rows["age_min"].isna() & rows["age_max"].isna()]
        if len(general) > 1:
            first, second = general["row_label"].iloc[:2]
            raise ReferenceTableError(
                f"{second}: a second interval for {who} without an age band (the first is at "
                f"{first.rsplit(', ', 1)[-1]}); give each an age band or keep one"
            )
        bands = sorted(
            (_lo(r.age_min), _hi(r.age_max), i, r.row_label)
            for i, r in zip(rows.index, rows.itertuples(index=False))
            if i not in general.index
        )
        for a, b in zip(bands, bands[1:]):
            if b[0] < a[1]:
                (lo1, hi1, _, w1), (lo2, hi2, _, w2) = sorted((a, b), key=lambda band: band[2])
                raise ReferenceTableError(
                    f"{w2}: interval for {who}, ages {_band(lo2, hi2)}, overlaps the one at "
                    f"{w1.rsplit(', ', 1)[-1]}, ages {_band(lo1, hi1)}; age bands of one "
                    "population and sex must not overlap"
                )


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _number(value: Any, where: str) -> float:
    text = _text(value)
    if not text:
        return math.nan
    try:
        number = float(text)
    except ValueError:
        raise ReferenceTableError(f"{where}: {text!r} is not a number") from None
    if number < 0 or math.isinf(number):
        raise ReferenceTableError(f"{where}: must be a finite number >= 0; got {text}")
    return number


def _unit_factor(units: str, where: str) -> float:
    if not units or _PER_UL.match(units.replace(" ", "")):
        return 1.0
    if _THOUSANDS.match(units.replace(" ", "")):
        return 1000.0
    raise ReferenceTableError(f"{where}: unit {units!r} not understood; use cells/µL or x10^9/L")


def _sex(value: Any, where: str, column: str) -> str:
    text = _text(value).lower()
    if text not in _SEXES:
        raise ReferenceTableError(f"{where}, {column}: {value!r} is not 'F', 'M' or empty")
    return _SEXES[text]


def _lo(age_min: float) -> float:
    return -math.inf if math.isnan(age_min) else age_min


def _hi(age_max: float) -> float:
    return math.inf if math.isnan(age_max) else age_max


def _band(lo: float, hi: float) -> str:
    return f"[{'' if math.isinf(lo) else f'{lo:g}'}, {'' if math.isinf(hi) else f'{hi:g}'})"


def _per_specimen(given: Any, specimen: Hashable, patient: Hashable) -> Any:
    if given is None or not isinstance(given, (Mapping, pd.Series)):
        return given
    for key in (specimen, patient):
        if key is not None and key in given:
            return given[key]
    return None


def _per_row(given: Any, i: int, specimen: Hashable, patient: Hashable) -> Any:
    """A row's age or sex: from a per-row list (the table's own column), a mapping keyed by
    specimen or patient, or one value for all rows."""
    if isinstance(given, list):
        value = given[i]
    else:
        value = _per_specimen(given, specimen, patient)
    if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "":
        return None
    return value


def _column(table: pd.DataFrame, name: str, default: Any) -> list:
    return table[name].tolist() if name in table.columns else [default] * len(table)


def _per_event(value: float, events: Any) -> float:
    """Cells/µL that one event stands for in a count (NaN when unknown)."""
    try:
        n = float(events)
    except (TypeError, ValueError):
        return math.nan
    return value / n if n > 0 and math.isfinite(value) else math.nan


def _number_or_nan(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _no_interval(population: str, age: Any, sex: Any) -> str:
    who = ", ".join(
        [f"age {float(age):g} y" if age is not None else "age not given"]
        + [f"sex {sex}" if sex else "sex not given"]
    )
    return f"no reference interval for {population} applies ({who})"

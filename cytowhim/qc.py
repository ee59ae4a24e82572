"""Quality checks clinical labs run on a population table (``docs/CLINICAL.md``).

Per tube, percentages of lymphocytes are computed from the events gated in that tube:

- ``lymphosum``: T + B + NK as % of lymphocytes (fail outside the acceptable range, warn outside
  the target range);
- ``tsum``: CD4+ % + CD8+ % of lymphocytes within ``tsum_tolerance`` points of CD3+ % (fail);
- ``cd3_across_tubes``: CD3+ % of lymphocytes agrees across the tubes of a specimen (fail);
- ``min_lymphocytes``: enough gated lymphocytes for a precise count, in tubes that report
  lymphocyte subsets (T, B, NK, CD4+, CD8+, or any population whose base is lymphocytes) (warn);
- ``imprecise``: a population with fewer than ``min_population_events`` events carries more than
  ``1/sqrt(min_population_events)`` counting error (info);
- ``no_lymphocytes``: a tube with T, B or NK cells but no 'lymphocytes' row (warn; nothing checked).

Populations are matched by name ('lymphocytes', 'T cells', 'B cells', 'NK cells', 'CD4+ T cells',
'CD8+ T cells'), or by the last part of a gate path ('singlets/lymphocytes/T cells'). Checks flag,
they never drop rows.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import CytowhimError

__all__ = [
    "QCError",
    "QCFlag",
    "QCRules",
    "QCRulesError",
    "SEVERITIES",
    "add_qc_note",
    "check_specimen",
    "check_table",
]

SEVERITIES = ("fail", "warn", "info")

LYMPHOCYTES = "lymphocytes"
T_CELLS = "T cells"
B_CELLS = "B cells"
NK_CELLS = "NK cells"
CD4_T = "CD4+ T cells"
CD8_T = "CD8+ T cells"
_KEY_POPULATIONS = (LYMPHOCYTES, T_CELLS, B_CELLS, NK_CELLS, CD4_T, CD8_T)


class QCError(CytowhimError, ValueError):
    """A population table cannot be checked (missing column, ambiguous rows); the message says why."""


class QCRulesError(QCError):
    """A lab's QC thresholds are invalid or unknown; the message names the file and key."""


@dataclass(frozen=True)
class QCRules:
    """QC thresholds; the defaults are those of ``docs/CLINICAL.md``.

    Ranges are (low, high) in % of lymphocytes, inclusive; tolerances in percentage points.
    """

    lymphosum_target: tuple[float, float] = (95.0, 105.0)
    lymphosum_acceptable: tuple[float, float] = (90.0, 110.0)
    tsum_tolerance: float = 10.0
    cd3_tube_tolerance: float = 3.0
    min_lymphocytes: int = 2500
    min_population_events: int = 100

    def __post_init__(self) -> None:
        for name in ("lymphosum_target", "lymphosum_acceptable"):
            value = getattr(self, name)
            if (
                not isinstance(value, (tuple, list))
                or len(value) != 2
                or not all(_is_number(v) for v in value)
            ):
                raise QCRulesError(f"QC rule {name} must be a pair [low, high] of %; got {value!r}")
            low, high = float(value[0]), float(value[1])
            if not 0 <= low <= high:
                raise QCRulesError(f"QC rule {name}: need 0 <= low <= high; got [{low}, {high}]")
            object.__setattr__(self, name, (low, high))
        t_low, t_high = self.lymphosum_target
        a_low, a_high = self.lymphosum_acceptable
        if not a_low <= t_low <= t_high <= a_high:
            raise QCRulesError(
                f"QC rules: lymphosum_target {list(self.lymphosum_target)} must lie within "
                f"lymphosum_acceptable {list(self.lymphosum_acceptable)}"
            )
        for name in ("tsum_tolerance", "cd3_tube_tolerance"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise QCRulesError(f"QC rule {name} must be a number >= 0 (points); got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("min_lymphocytes", "min_population_events"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or float(value) != int(value):
                raise QCRulesError(f"QC rule {name} must be a whole number >= 0; got {value!r}")
            object.__setattr__(self, name, int(value))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str | None = None) -> QCRules:
        """Rules from a lab's mapping of rule name -> value; unset rules keep their defaults.

        Unknown keys raise :class:`QCRulesError` naming them (and ``source``, e.g. a file).
        """
        where = f"{source}: " if source else ""
        if not isinstance(mapping, Mapping):
            raise QCRulesError(
                f"{where}QC rules must be a mapping of rule -> value; got {type(mapping).__name__}"
            )
        known = [f.name for f in fields(cls)]
        unknown = [str(k) for k in mapping if k not in known]
        if unknown:
            raise QCRulesError(
                f"{where}unknown QC rule(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(known)}"
            )
        try:
            return cls(**dict(mapping))
        except QCRulesError as exc:
            raise QCRulesError(f"{where}{exc}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> QCRules:
        """Rules from a YAML file of ``rule: value`` lines (ranges as ``[low, high]``)."""
        import yaml

        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise QCRulesError(f"{path}: cannot read QC rules ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            raise QCRulesError(f"{path}: not valid YAML ({exc})") from None
        return cls.from_mapping({} if doc is None else doc, source=str(path))


@dataclass(frozen=True)
class QCFlag:
    """One QC finding: where (specimen, tube, population), which rule, how bad, and why."""

    specimen: str
    tube: str
    population: str
    rule: str
    severity: str  # 'fail' | 'warn' | 'info'
    message: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise QCError(f"QC flag severity must be one of {SEVERITIES}; got {self.severity!r}")

    def __str__(self) -> str:
        return f"{self.severity} {self.rule}: {self.message}"


def add_qc_note(text: str, note: str) -> str:
    """``text`` with ``note`` appended ('; '-joined), unless it is already there."""
    notes = [n for n in text.split("; ") if n] if text else []
    if note not in notes:
        notes.append(note)
    return "; ".join(notes)


def check_specimen(table: pd.DataFrame, rules: QCRules | None = None) -> list[QCFlag]:
    """QC flags of one specimen's population rows (all its tubes).

    ``table`` needs ``specimen``, ``tube``, ``population`` and ``events``. Raises
    :class:`QCError` if it holds several specimens or a tube repeats a key population.
    """
    rules = rules or QCRules()
    _require(table, ("specimen", "tube", "population", "events"))
    specimens = pd.unique(table["specimen"].map(_key))
    if len(specimens) > 1:
        raise QCError(
            f"check_specimen: expected one specimen; got {', '.join(map(str, specimens))} "
            "(use check_table)"
        )
    if len(table) == 0:
        return []
    spec = str(specimens[0])
    flags: list[QCFlag] = []
    cd3: dict[str, tuple[float, str]] = {}  # tube -> (CD3+ % of lymphocytes, lymphocytes row)
    for tube, rows in table.groupby(table["tube"].map(_key), sort=False):
        tube_flags, cd3_percent = _check_tube(spec, tube, rows, rules)
        flags.extend(tube_flags)
        if cd3_percent is not None:
            cd3[tube] = cd3_percent
    flags.extend(_check_cd3_across_tubes(spec, cd3, rules))
    flags.extend(_check_event_counts(spec, table, rules))
    return flags


def _check_tube(
    spec: str, tube: str, rows: pd.DataFrame, rules: QCRules
) -> tuple[list[QCFlag], tuple[float, str] | None]:
    """Lymphocyte count, lymphosum and T-sum of one tube; and its (CD3+ %, lymphocytes row)."""
    flags: list[QCFlag] = []

    def flag(population: str, rule: str, severity: str, message: str) -> None:
        flags.append(QCFlag(spec, tube, population, rule, severity, message))

    found = _key_rows(rows, spec, tube)
    if LYMPHOCYTES not in found:
        subsets = [p for p in (T_CELLS, B_CELLS, NK_CELLS) if p in found]
        if subsets:
            flag(
                found[subsets[0]][0],
                "no_lymphocytes",
                "warn",
                f"tube {tube} has {', '.join(subsets)} but no 'lymphocytes' row: lymphosum, "
                "T-sum and CD3 checks skipped",
            )
        return flags, None
    lymph_name, lymph = found[LYMPHOCYTES]
    counts_lymphocytes = len(found) > 1 or _has_lymphocyte_subsets(rows)
    if counts_lymphocytes and not math.isnan(lymph) and lymph < rules.min_lymphocytes:
        flag(
            lymph_name,
            "min_lymphocytes",
            "warn",
            f"{lymph:.0f} gated lymphocytes in tube {tube}, fewer than {rules.min_lymphocytes}",
        )
    if math.isnan(lymph) or lymph <= 0:
        return flags, None
    n = {p: events for p, (_, events) in found.items() if not math.isnan(events)}
    pct = {p: events / lymph * 100.0 for p, events in n.items()}
    if all(p in n for p in (T_CELLS, B_CELLS, NK_CELLS)):
        total = (n[T_CELLS] + n[B_CELLS] + n[NK_CELLS]) / lymph * 100.0
        parts = f"T {pct[T_CELLS]:.1f} + B {pct[B_CELLS]:.1f} + NK {pct[NK_CELLS]:.1f}"
        for (low, high), severity, which in (
            (rules.lymphosum_acceptable, "fail", "acceptable"),
            (rules.lymphosum_target, "warn", "target"),
        ):
            if _outside(total, low, high):
                flag(
                    lymph_name,
                    "lymphosum",
                    severity,
                    f"lymphosum {total:.1f} % of lymphocytes in tube {tube} ({parts}) is outside "
                    f"the {which} {_range(low, high)} %",
                )
                break
    if all(p in n for p in (T_CELLS, CD4_T, CD8_T)):
        tsum = (n[CD4_T] + n[CD8_T]) / lymph * 100.0
        apart = abs(n[CD4_T] + n[CD8_T] - n[T_CELLS]) / lymph * 100.0
        if _outside(apart, 0.0, rules.tsum_tolerance):
            flag(
                lymph_name,
                "tsum",
                "fail",
                f"T-sum in tube {tube}: CD4+ {pct[CD4_T]:.1f} % + CD8+ {pct[CD8_T]:.1f} % = "
                f"{tsum:.1f} % of lymphocytes vs CD3+ {pct[T_CELLS]:.1f} %, "
                f"{apart:.1f} points apart (> {rules.tsum_tolerance:g})",
            )
    return flags, ((pct[T_CELLS], lymph_name) if T_CELLS in pct else None)


def _check_cd3_across_tubes(
    spec: str, cd3: dict[str, tuple[float, str]], rules: QCRules
) -> list[QCFlag]:
    """One flag per tube when CD3+ % of lymphocytes spreads too far across the tubes."""
    if len(cd3) < 2:
        return []
    values = [v for v, _ in cd3.values()]
    spread = max(values) - min(values)
    if not _outside(spread, 0.0, rules.cd3_tube_tolerance):
        return []
    listing = ", ".join(f"tube {t} {v:.1f} %" for t, (v, _) in cd3.items())
    message = (
        f"CD3+ % of lymphocytes differs by {spread:.1f} points across tubes "
        f"(> {rules.cd3_tube_tolerance:g}): {listing}"
    )
    return [
        QCFlag(spec, tube, lymph_name, "cd3_across_tubes", "fail", message)
        for tube, (_, lymph_name) in cd3.items()
    ]


def _check_event_counts(spec: str, table: pd.DataFrame, rules: QCRules) -> list[QCFlag]:
    """An 'imprecise' flag for each population with fewer than min_population_events events."""
    flags = []
    limit = rules.min_population_events
    events = pd.to_numeric(table["events"], errors="coerce").astype(float)
    for tube, population, n in zip(table["tube"].map(_key), table["population"], events):
        if math.isnan(n) or n >= limit:
            continue
        if n == 0:
            message = f"0 events for {population}: below the one-event resolution"
        else:
            message = (
                f"{n:.0f} events for {population}: counting error ≈ {100 / math.sqrt(n):.0f} % "
                f"(> {100 / math.sqrt(limit):.0f} % below {limit} events)"
            )
        flags.append(QCFlag(spec, tube, str(population), "imprecise", "info", message))
    return flags


def check_table(
    table: pd.DataFrame, rules: QCRules | None = None
) -> tuple[pd.DataFrame, list[QCFlag]]:
    """(table with its ``qc`` column filled, all flags) for a table of any number of specimens.

    Each row's ``qc`` gets the flags about it ('; '-joined ``str(flag)``), added to any note
    already there; specimen-wide flags (lymphosum, T-sum, CD3 across tubes, lymphocyte count)
    go on the 'lymphocytes' row of the tube concerned. Returns a copy; no row is dropped.
    """
    rules = rules or QCRules()
    _require(table, ("specimen", "tube", "population", "events"))
    out = table.copy()
    notes = ["" if _blank(v) else str(v) for v in out["qc"]] if "qc" in out.columns else None
    notes = notes or [""] * len(out)
    flags: list[QCFlag] = []
    for _, rows in out.groupby(out["specimen"].map(_key), sort=False):
        flags.extend(check_specimen(rows, rules))
    positions: dict[tuple[str, str, str], list[int]] = {}
    keys = zip(out["specimen"].map(_key), out["tube"].map(_key), out["population"].map(str))
    for i, key in enumerate(keys):
        positions.setdefault(key, []).append(i)
    for f in flags:
        for i in positions.get((f.specimen, f.tube, f.population), []):
            notes[i] = add_qc_note(notes[i], str(f))
    out["qc"] = notes
    return out, flags


def _key_rows(rows: pd.DataFrame, spec: str, tube: str) -> dict[str, tuple[str, float]]:
    """Key population -> (its row's population name, events) in one tube."""
    found: dict[str, tuple[str, float]] = {}
    events = pd.to_numeric(rows["events"], errors="coerce").astype(float)
    for name, n in zip(rows["population"].map(str), events):
        leaf = name.rsplit("/", 1)[-1]
        if leaf not in _KEY_POPULATIONS:
            continue
        if leaf in found:
            raise QCError(
                f"specimen {spec}, tube {tube}: population {leaf!r} appears twice "
                f"({found[leaf][0]!r} and {name!r}); cannot tell which to check"
            )
        found[leaf] = (name, float(n))
    return found


def _has_lymphocyte_subsets(rows: pd.DataFrame) -> bool:
    """Whether a tube reports any population other than lymphocytes against the lymphocytes."""
    if "base" not in rows.columns:
        return False
    for name, base in zip(rows["population"].map(str), rows["base"].map(_key)):
        if base.rsplit("/", 1)[-1] == LYMPHOCYTES and name.rsplit("/", 1)[-1] != LYMPHOCYTES:
            return True
    return False


def _require(table: pd.DataFrame, columns: tuple[str, ...]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise QCError(f"expected a population table (DataFrame); got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise QCError(
            f"the population table has no column {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(str, table.columns))})"
        )


def _key(value: Any) -> str:
    return "" if _blank(value) else str(value)


def _blank(value: Any) -> bool:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return True
    return str(value).strip() == ""


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _outside(value: float, low: float, high: float) -> bool:
    """Outside [low, high], with a rounding margin so that a value on a bound is inside."""
    margin = 1e-9 * max(1.0, abs(value))
    return value < low - margin or value > high + margin


def _range(low: float, high: float) -> str:
    return f"{low:g}–{high:g}"

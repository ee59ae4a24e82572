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
- ``no_lymphocytes``: a tube with T, B or NK cells but no 'lymphocytes' row (warn; nothing checked);
- ``cross_tube``: B and NK cells as % of lymphocytes agree across tubes within
  ``max(cross_tube_points, cross_tube_relative x their mean)`` (warn: tubes of one specimen
  disagree as real tubes do, and the study's Table 1 shows it);
- ``percent_of_base``: a population above 100 % of its base cannot be counted against it (fail);
  ``not_nested``: a population not gated inside its base (warn; it is counted from its events
  inside the base);
- ``cbc_consistency``: ANC, ALC and AMC each at most the WBC, and ANC + ALC + AMC at most
  ``WBC x (1 + cbc_sum_tolerance)`` (fail: a unit or typing error in the CBC);
- ``cbc_vs_flow``: the flow cytometer's scatter differential (lymphocytes, monocytes,
  neutrophils as % of CD45+ leukocytes) against the analyzer's (ALC, AMC, ANC as % of WBC): warn
  beyond ``cbc_flow_points`` points, fail beyond a ``cbc_flow_ratio``-fold difference.

:func:`qc_status` gives each row its worst severity, its own or inherited from its base row
(a lymphosum failure on the lymphocytes row holds back every count made against them).

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
    "qc_status",
    "read_lab_rules",
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
    cross_tube_points: float = 1.0
    cross_tube_relative: float = 0.25
    cbc_sum_tolerance: float = 0.05
    cbc_min_wbc: float = 100.0
    cbc_flow_points: float = 15.0
    cbc_flow_ratio: float = 3.0

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
        for name in (
            "tsum_tolerance",
            "cd3_tube_tolerance",
            "cross_tube_points",
            "cross_tube_relative",
            "cbc_sum_tolerance",
            "cbc_min_wbc",
            "cbc_flow_points",
        ):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise QCRulesError(f"QC rule {name} must be a number >= 0; got {value!r}")
            object.__setattr__(self, name, float(value))
        if not _is_number(self.cbc_flow_ratio) or self.cbc_flow_ratio < 1:
            raise QCRulesError(
                f"QC rule cbc_flow_ratio must be a number >= 1 (fold); got {self.cbc_flow_ratio!r}"
            )
        object.__setattr__(self, "cbc_flow_ratio", float(self.cbc_flow_ratio))
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
        return rules_from_mapping(cls, mapping, source, QCRulesError, "QC")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> QCRules:
        """Rules from a YAML file of ``rule: value`` lines (ranges as ``[low, high]``); a
        ``reporting:`` section is left to :func:`read_lab_rules`."""
        doc = _lab_rules_document(Path(path))
        doc = {k: v for k, v in doc.items() if k != "reporting"}
        return cls.from_mapping(doc, source=str(path))


def _lab_rules_document(path: Path) -> dict:
    """The lab's rules file parsed once: a mapping (empty for an empty file)."""
    from gating.limits import read_yaml

    doc = read_yaml(path, "QC rules file", QCRulesError)  # size, UTF-8, nesting, aliases
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise QCRulesError(
            f"{path}: QC rules must be a mapping of rule -> value; got {type(doc).__name__}"
        )
    return dict(doc)


def rules_from_mapping(cls, mapping: Any, source: str | None, error: type, what: str):
    """A rules dataclass ``cls`` from a lab's mapping of rule -> value (unset rules keep their
    defaults); unknown keys and bad values raise ``error`` naming ``source`` and the key."""
    where = f"{source}: " if source else ""
    if not isinstance(mapping, Mapping):
        raise error(
            f"{where}{what} rules must be a mapping of rule -> value; got {type(mapping).__name__}"
        )
    known = [f.name for f in fields(cls)]
    unknown = [str(k) for k in mapping if k not in known]
    if unknown:
        raise error(
            f"{where}unknown {what} rule(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(known)}"
        )
    try:
        return cls(**dict(mapping))
    except error as exc:
        raise error(f"{where}{exc}") from None


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


def check_specimen(
    table: pd.DataFrame,
    rules: QCRules | None = None,
    cbc: Mapping[str, float] | None = None,
    bases: Mapping[str, str] | None = None,
) -> list[QCFlag]:
    """QC flags of one specimen's population rows (all its tubes).

    ``table`` needs ``specimen``, ``tube``, ``population`` and ``events`` (``base``,
    ``percent_of_base`` and ``nested`` enable the nesting checks). ``cbc``: the specimen's CBC
    (WBC, ANC, ALC, AMC in cells/µL) for the CBC checks; ``bases``: base population -> CBC count
    (default :data:`cytowhim.counts.BASE_TO_CBC`). CBC-wide flags have an empty tube and
    population. Raises :class:`QCError` if it holds several specimens or a tube repeats a key
    population.
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
        if cbc:
            flags.extend(_check_cbc_vs_flow(spec, tube, rows, cbc, _bases(bases), rules))
    flags.extend(_check_cd3_across_tubes(spec, cd3, rules))
    flags.extend(_check_cross_tube(spec, table, rules))
    flags.extend(_check_nesting(spec, table))
    if cbc:
        flags.extend(_check_cbc(spec, cbc, rules))
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
    table: pd.DataFrame,
    rules: QCRules | None = None,
    cbc: Mapping[Any, Mapping[str, float]] | pd.DataFrame | None = None,
    bases: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, list[QCFlag]]:
    """(table with its ``qc`` column filled, all flags) for a table of any number of specimens.

    Each row's ``qc`` gets the flags about it ('; '-joined ``str(flag)``), added to any note
    already there; specimen-wide flags (lymphosum, T-sum, CD3 across tubes, lymphocyte count)
    go on the 'lymphocytes' row of the tube concerned, CBC flags on every base row (the rows
    the CBC counts). ``cbc``: specimen -> {WBC, ANC, ALC, AMC} (cells/µL), or a DataFrame with a
    ``specimen`` column (e.g. the manifest). Returns a copy; no row is dropped.
    """
    rules = rules or QCRules()
    _require(table, ("specimen", "tube", "population", "events"))
    out = table.copy()
    notes = ["" if _blank(v) else str(v) for v in out["qc"]] if "qc" in out.columns else None
    notes = notes or [""] * len(out)
    cbc_of = _cbc_by_specimen(cbc)
    flags: list[QCFlag] = []
    for spec, rows in out.groupby(out["specimen"].map(_key), sort=False):
        flags.extend(check_specimen(rows, rules, cbc_of.get(spec), bases))
    for f, i in _flag_rows(out, flags, bases):
        notes[i] = add_qc_note(notes[i], str(f))
    out["qc"] = notes
    return out, flags


def qc_status(
    table: pd.DataFrame, flags: list[QCFlag], bases: Mapping[str, str] | None = None
) -> list[str]:
    """Per row, the worst severity ('fail', 'warn', 'info' or '') of the flags about it, with the
    fails and warnings of its base row in the same tube inherited (a failed lymphosum on the
    lymphocytes row holds back every count made against the lymphocytes of that tube)."""
    rank = {"": 0, "info": 1, "warn": 2, "fail": 3}
    worst = [""] * len(table)
    for f, i in _flag_rows(table, flags, bases):
        if rank[f.severity] > rank[worst[i]]:
            worst[i] = f.severity
    if "base" not in table.columns:
        return worst
    row_of = {
        (s, t, p): i
        for i, (s, t, p) in enumerate(
            zip(table["specimen"].map(_key), table["tube"].map(_key), table["population"].map(str))
        )
    }
    out = list(worst)
    for i, (s, t, b) in enumerate(
        zip(table["specimen"].map(_key), table["tube"].map(_key), table["base"].map(_key))
    ):
        j = row_of.get((s, t, b))
        if j is not None and worst[j] in ("fail", "warn") and rank[worst[j]] > rank[out[i]]:
            out[i] = worst[j]
    return out


def read_lab_rules(path: str | os.PathLike):
    """(QCRules, ReportingRules) from a lab's YAML file: QC rules at the top level, reporting
    rules under ``reporting:``; errors name the file and the key."""
    from .reporting import ReportingRules

    path = Path(path)
    doc = _lab_rules_document(path)
    qc = {k: v for k, v in doc.items() if k != "reporting"}
    rules = QCRules.from_mapping(qc, source=str(path))
    return rules, ReportingRules.from_mapping(doc.get("reporting"), source=str(path))


def _flag_rows(table: pd.DataFrame, flags: list[QCFlag], bases: Mapping[str, str] | None):
    """(flag, row position) for every row a flag is about; CBC-wide flags (no tube) go to the
    specimen's base rows."""
    positions: dict[tuple[str, str, str], list[int]] = {}
    base_rows: dict[str, list[int]] = {}
    known = _bases(bases)
    bases_col = table["base"].map(_key) if "base" in table.columns else None
    keys = zip(table["specimen"].map(_key), table["tube"].map(_key), table["population"].map(str))
    for i, key in enumerate(keys):
        positions.setdefault(key, []).append(i)
        if key[2] in known and (bases_col is None or bases_col.iloc[i] == key[2]):
            base_rows.setdefault(key[0], []).append(i)
    for f in flags:
        rows = positions.get((f.specimen, f.tube, f.population), [])
        if not f.tube and not f.population:
            rows = base_rows.get(f.specimen, [])
        for i in rows:
            yield f, i


def _bases(bases: Mapping[str, str] | None) -> Mapping[str, str]:
    from .counts import BASE_TO_CBC

    return BASE_TO_CBC if bases is None else {**BASE_TO_CBC, **bases}


def _cbc_by_specimen(cbc: Any) -> dict[str, dict[str, float]]:
    if cbc is None:
        return {}
    if isinstance(cbc, pd.DataFrame):
        out: dict[str, dict[str, float]] = {}
        for rec in cbc.to_dict("records"):
            known = out.setdefault(_key(rec.get("specimen")), {})
            for name in ("WBC", "ANC", "ALC", "AMC"):
                value = pd.to_numeric(rec.get(name), errors="coerce")
                if value is not None and not pd.isna(value):
                    known[name] = float(value)
        return out
    return {_key(k): dict(v) for k, v in cbc.items()}


def _check_nesting(spec: str, table: pd.DataFrame) -> list[QCFlag]:
    """percent_of_base above 100 (fail) and populations not gated inside their base (warn)."""
    flags = []
    if "percent_of_base" in table.columns:
        percent = pd.to_numeric(table["percent_of_base"], errors="coerce").astype(float)
        for tube, population, value in zip(table["tube"].map(_key), table["population"], percent):
            if not math.isnan(value) and _outside(value, 0.0, 100.0):
                flags.append(
                    QCFlag(
                        spec,
                        tube,
                        str(population),
                        "percent_of_base",
                        "fail",
                        f"{population} is {value:.2f} % of its base: more than 100 %, so it was "
                        "not gated inside it and cannot be counted against it",
                    )
                )
    if "nested" in table.columns and "base" in table.columns:
        for tube, population, base, nested in zip(
            table["tube"].map(_key), table["population"].map(str), table["base"], table["nested"]
        ):
            if _blank(base) or str(nested).lower() in ("true", "1", "nan", ""):
                continue
            flags.append(
                QCFlag(
                    spec,
                    tube,
                    population,
                    "not_nested",
                    "warn",
                    f"{population} is not gated inside its base {base}; counted from its "
                    f"events inside {base} (gate it inside {base}, or count it against a base "
                    "that contains it)",
                )
            )
    return flags


def _check_cbc(spec: str, cbc: Mapping[str, float], rules: QCRules) -> list[QCFlag]:
    """A plausible WBC (a whole CBC typed in x10^3/µL without its unit reads 1000-fold low and
    keeps every proportion); each differential count at most the WBC; their sum at most
    WBC x (1 + tolerance)."""
    wbc = cbc.get("WBC", math.nan)
    known = [v for k, v in cbc.items() if k in ("ANC", "ALC", "AMC") and not math.isnan(v)]
    total = wbc if wbc is not None and not math.isnan(wbc) else sum(known) if known else math.nan
    if not math.isnan(total) and 0 < total < rules.cbc_min_wbc:
        what = f"WBC {wbc:g}" if total == wbc else f"ANC + ALC + AMC {total:g}"
        return [
            _cbc_flag(
                spec,
                f"CBC {what} cells/µL is below {rules.cbc_min_wbc:g} cells/µL, not a blood "
                "count: values in x10^3/µL need their unit stated (e.g. 'WBC (x10^3/uL)')",
            )
        ]
    if wbc is None or math.isnan(wbc):
        return []
    flags = []
    parts = {k: cbc[k] for k in ("ANC", "ALC", "AMC") if k in cbc and not math.isnan(cbc[k])}
    for name, value in parts.items():
        if _outside(value, 0.0, wbc):
            flags.append(
                _cbc_flag(
                    spec,
                    f"CBC {name} {value:g} cells/µL is above the WBC {wbc:g} cells/µL: check the "
                    "units and values of the CBC",
                )
            )
    total = sum(parts.values())
    limit = wbc * (1 + rules.cbc_sum_tolerance)
    if len(parts) > 1 and _outside(total, 0.0, limit) and not flags:
        listing = " + ".join(f"{k} {v:g}" for k, v in parts.items())
        flags.append(
            _cbc_flag(
                spec,
                f"CBC {listing} = {total:g} cells/µL exceeds the WBC {wbc:g} by more than "
                f"{rules.cbc_sum_tolerance * 100:g} %: check the units and values of the CBC",
            )
        )
    return flags


def _cbc_flag(spec: str, message: str) -> QCFlag:
    """A failed CBC check: specimen-wide (no tube, no population)."""
    return QCFlag(spec, "", "", "cbc_consistency", "fail", message)


def _check_cbc_vs_flow(
    spec: str,
    tube: str,
    rows: pd.DataFrame,
    cbc: Mapping[str, float],
    bases: Mapping[str, str],
    rules: QCRules,
) -> list[QCFlag]:
    """Each base population as % of the CD45+ base (flow) against its CBC count as % of WBC."""
    events = dict(zip(rows["population"].map(str), pd.to_numeric(rows["events"], errors="coerce")))
    leukocytes = [p for p, name in bases.items() if name == "WBC" and p in events]
    wbc = cbc.get("WBC", math.nan)
    if not leukocytes or wbc is None or math.isnan(wbc) or wbc <= 0:
        return []
    total = float(events[leukocytes[0]])
    if not total > 0:
        return []
    flags = []
    for population, name in bases.items():
        if name == "WBC" or population not in events or name not in cbc:
            continue
        count = cbc[name]
        if count is None or math.isnan(count) or math.isnan(events[population]):
            continue
        flow = float(events[population]) / total * 100.0
        analyzer = count / wbc * 100.0
        fold = max(flow, analyzer) / min(flow, analyzer) if min(flow, analyzer) > 0 else math.inf
        message = (
            f"{population} are {flow:.1f} % of {leukocytes[0]} in tube {tube}, the CBC's {name} "
            f"is {analyzer:.1f} % of the WBC"
        )
        if max(flow, analyzer) >= 1.0 and fold > rules.cbc_flow_ratio:
            flags.append(
                QCFlag(
                    spec,
                    tube,
                    population,
                    "cbc_vs_flow",
                    "fail",
                    f"{message}: {fold:.3g}-fold apart (> {rules.cbc_flow_ratio:g}); check the "
                    f"CBC's units and the {population} gate",
                )
            )
        elif _outside(abs(flow - analyzer), 0.0, rules.cbc_flow_points):
            flags.append(
                QCFlag(
                    spec,
                    tube,
                    population,
                    "cbc_vs_flow",
                    "warn",
                    f"{message}: {abs(flow - analyzer):.1f} points apart "
                    f"(> {rules.cbc_flow_points:g})",
                )
            )
    return flags


def _check_cross_tube(spec: str, table: pd.DataFrame, rules: QCRules) -> list[QCFlag]:
    """B and NK cells as % of lymphocytes agree across the tubes that measure them (warn)."""
    percent: dict[str, dict[str, float]] = {B_CELLS: {}, NK_CELLS: {}}
    for tube, rows in table.groupby(table["tube"].map(_key), sort=False):
        found = _key_rows(rows, spec, tube)
        if LYMPHOCYTES not in found or not found[LYMPHOCYTES][1] > 0:
            continue
        for population in percent:
            if population in found and not math.isnan(found[population][1]):
                percent[population][tube] = found[population][1] / found[LYMPHOCYTES][1] * 100
    flags = []
    for population, by_tube in percent.items():
        if len(by_tube) < 2:
            continue
        values = list(by_tube.values())
        spread = max(values) - min(values)
        mean = sum(values) / len(values)
        allowed = max(rules.cross_tube_points, rules.cross_tube_relative * mean)
        if not _outside(spread, 0.0, allowed):
            continue
        listing = ", ".join(f"tube {t} {v:.2f} %" for t, v in by_tube.items())
        message = (
            f"{population} as % of lymphocytes differ by {spread:.2f} points "
            f"({spread / mean * 100 if mean else math.inf:.0f} % of their mean) across tubes, "
            f"more than {allowed:.2f}: {listing}"
        )
        names = {
            _key(t): str(p)
            for t, p in zip(table["tube"], table["population"])
            if str(p).rsplit("/", 1)[-1] == population
        }
        flags += [
            QCFlag(spec, tube, names.get(tube, population), "cross_tube", "warn", message)
            for tube in by_tube
        ]
    return flags


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

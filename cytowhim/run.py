"""``cytowhim run``: gate every tube of a manifest, turn events into absolute counts with the
specimen's CBC (or counting beads), run the QC rules and flag values outside reference intervals.

:func:`gate_tube` is a pure function of its inputs (file, tube, strategy), so the same call can
run in a process pool later; :func:`run_manifest` assembles the population table.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .manifest import CBC, read_manifest
from .panels import Panels

COLUMNS = [
    "specimen",
    "patient",
    "timepoint",
    "tube",
    "population",
    "parent",
    "events",
    "percent_of_parent",
    "base",
    "base_events",
    "percent_of_base",
    "absolute_per_uL",
    "absolute_error_per_uL",
    "qc",
    "reference_flag",
]


@dataclass
class RunResult:
    table: pd.DataFrame  # COLUMNS, one row per specimen x tube x population
    flags: list = field(default_factory=list)  # QC flags
    errors: list[str] = field(default_factory=list)  # one line per input that failed
    notes: list[str] = field(default_factory=list)  # engine notes (fall-backs, no spillover)


def gate_tube(path: str, tube: str, panels: Panels) -> tuple[pd.DataFrame, list[str]]:
    """Population rows of one tube file (events, parents, bases) and the engine's notes."""
    from .fcs import read_fcs

    strategy = panels.strategy(tube)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recorded in result.notes instead
        sample = read_fcs(path)
        result = strategy.apply(sample)
    stats = result.stats()
    counts = dict(zip(stats["name"], stats["count"]))
    rows = []
    for p in strategy:
        base = panels.base_of(tube, strategy, p.name)
        rows.append(
            {
                "population": p.name,
                "parent": p.parent or "",
                "events": counts[p.name],
                "percent_of_parent": float(
                    stats.loc[stats["name"] == p.name, "percent_of_parent"].iloc[0]
                ),
                "base": base,
                "base_events": counts.get(base, math.nan) if base else math.nan,
            }
        )
    return pd.DataFrame(rows), [f"{Path(path).name}: {n}" for n in result.notes]


def run_manifest(
    manifest: str | os.PathLike,
    panels: Panels | None = None,
    qc_rules=None,
    reference=None,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Gate, count, check and flag every usable tube of a manifest; failures are collected, never
    raised, so one broken file or CBC row leaves the rest of the run intact."""
    from gating import GatingError

    from .counts import BASE_TO_CBC
    from .errors import FCSError
    from .panels import PanelError
    from .qc import QCRules, check_table
    from .reference import ReferenceIntervals

    panels = panels or Panels.load()
    qc_rules = qc_rules or QCRules()
    reference = reference or ReferenceIntervals.bundled()
    tubes, problems = read_manifest(manifest)
    errors = [str(p) for p in problems]
    notes: list[str] = []
    tables = []
    bases = {**BASE_TO_CBC, **panels.base_populations}
    for _, spec_tubes in tubes.groupby("specimen", sort=False):
        cbc = {
            c: float(spec_tubes[c].iloc[0]) for c in CBC if not math.isnan(spec_tubes[c].iloc[0])
        }
        parts = []
        for rec in spec_tubes.to_dict("records"):
            try:
                rows, tube_notes = gate_tube(rec["file"], rec["tube"], panels)
            except (FCSError, GatingError, PanelError, OSError) as exc:
                errors.append(f"{rec['file']}: {exc}" if isinstance(exc, OSError) else str(exc))
                continue
            finally:
                if progress:
                    progress(Path(rec["file"]).name)
            notes.extend(tube_notes)
            for key in ("specimen", "patient", "timepoint", "tube"):
                rows.insert(len(rows.columns), key, rec[key])
            parts.append(rows)
        if not parts:
            continue
        table = pd.concat(parts, ignore_index=True)
        table["qc"] = ""
        tables.append(_absolute(table, spec_tubes, cbc, bases, errors))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    table, flags = check_table(table, qc_rules)
    table = reference.flag_table(table)
    return RunResult(table[COLUMNS], flags, errors, notes)


BEAD_POPULATIONS = ("beads", "counting beads")


def _absolute(
    table: pd.DataFrame,
    tubes: pd.DataFrame,
    cbc: dict[str, float],
    bases: dict[str, str],
    errors: list[str],
) -> pd.DataFrame:
    """Absolute counts of one specimen: single platform for tubes with counting beads (a
    population named 'beads' in their strategy), dual platform with the CBC for the others."""
    from .counts import absolute_counts, absolute_counts_beads

    parts = []
    for tube, rows in table.groupby("tube", sort=False):
        rec = tubes[tubes.tube == tube].iloc[0]
        if math.isnan(rec["beads_per_tube"]) or math.isnan(rec["volume_uL"]):
            parts.append(absolute_counts(rows, cbc, bases=bases))
            continue
        beads = rows[rows.population.isin(BEAD_POPULATIONS)]
        if beads.empty:
            errors.append(
                f"{rec['file']}: the manifest gives counting beads for tube {tube} but "
                f"its strategy has no population named {' or '.join(BEAD_POPULATIONS)}"
            )
            parts.append(absolute_counts(rows, cbc, bases=bases))
            continue
        parts.append(
            absolute_counts_beads(
                rows,
                float(beads.events.iloc[0]),
                float(rec["beads_per_tube"]),
                float(rec["volume_uL"]),
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_run(result: RunResult, out: str | os.PathLike) -> Path:
    """DIR/populations.csv, DIR/qc_flags.csv and (when something failed) DIR/errors.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "populations.csv", index=False)
    pd.DataFrame([vars(f) if hasattr(f, "__dict__") else f.__dict__ for f in result.flags]).to_csv(
        out / "qc_flags.csv", index=False
    )
    errors = out / "errors.csv"
    if result.errors:
        pd.DataFrame({"error": result.errors}).to_csv(errors, index=False)
    elif errors.exists():
        errors.unlink()
    return out / "populations.csv"

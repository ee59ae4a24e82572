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


@dataclass(frozen=True)
class TubeTask:
    """Everything :func:`gate_tube` needs, picklable (it runs in worker processes)."""

    file: str
    tube: str
    panels: str  # panel file
    strategies: tuple[tuple[str, str], ...] = ()  # --strategy TUBE=FILE overrides


@dataclass
class TubeOutcome:
    task: TubeTask
    rows: pd.DataFrame | None = None  # population, parent, events, percent_of_parent, base, ...
    notes: list[str] = field(default_factory=list)
    geometry: dict = field(default_factory=dict)
    n_events: int = 0
    error: str | None = None


_PANELS: dict[tuple, Panels] = {}


def _panels_for(task: TubeTask) -> Panels:
    key = (task.panels, task.strategies)
    if key not in _PANELS:
        _PANELS[key] = Panels.load(task.panels).with_strategies(dict(task.strategies))
    return _PANELS[key]


def gate_tube(task: TubeTask) -> TubeOutcome:
    """Gate one tube file: its population rows (events, parents, bases), the engine's notes and the
    geometry the gates took. A pure function of the task; failures come back in ``error``."""
    from gating import GatingError

    from .errors import FCSError
    from .fcs import read_fcs
    from .panels import PanelError

    try:
        panels = _panels_for(task)
        strategy = panels.strategy(task.tube)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in result.notes instead
            sample = read_fcs(task.file)
            result = strategy.apply(sample)
    except (FCSError, GatingError, PanelError) as exc:
        return TubeOutcome(task, error=str(exc))
    except OSError as exc:
        return TubeOutcome(task, error=f"{task.file}: {exc.strerror or exc}")
    stats = result.stats()
    counts = dict(zip(stats["name"], stats["count"]))
    parent_pct = dict(zip(stats["name"], stats["percent_of_parent"]))
    rows = []
    for p in strategy:
        base = panels.base_of(task.tube, strategy, p.name)
        rows.append(
            {
                "population": p.name,
                "parent": p.parent or "",
                "events": counts[p.name],
                "percent_of_parent": float(parent_pct[p.name]),
                "base": base,
                "base_events": counts.get(base, math.nan) if base else math.nan,
            }
        )
    notes = [f"{Path(task.file).name}: {n}" for n in result.notes]
    return TubeOutcome(task, pd.DataFrame(rows), notes, result.geometry(), sample.n_events)


def _gate_all(tasks: list[TubeTask], jobs: int, progress) -> list[TubeOutcome]:
    """Gate tubes in ``jobs`` worker processes (1: in this process), in task order."""
    if jobs <= 1 or len(tasks) <= 1:
        out = []
        for t in tasks:
            out.append(gate_tube(t))
            if progress:
                progress(Path(t.file).name)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked child inherits locks held by this process's threads (BLAS,
    # logging) and can hang on them
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(gate_tube, t) for t in tasks]
        out = []
        for t, f in zip(tasks, futures):
            out.append(f.result())
            if progress:
                progress(Path(t.file).name)
        return out


def run_manifest(
    manifest: str | os.PathLike,
    panels: Panels | None = None,
    qc_rules=None,
    reference=None,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> RunResult:
    """Gate, count, check and flag every usable tube of a manifest; failures are collected, never
    raised, so one broken file or CBC row leaves the rest of the run intact. ``jobs`` worker
    processes gate the files; this process assembles the results."""
    from .counts import BASE_TO_CBC
    from .qc import QCRules, check_table
    from .reference import ReferenceIntervals

    panels = panels or Panels.load()
    qc_rules = qc_rules or QCRules()
    reference = reference or ReferenceIntervals.bundled()
    tubes, problems = read_manifest(manifest)
    errors = [str(p) for p in problems]
    notes: list[str] = []
    overrides = tuple(sorted((t, str(p)) for t, p in panels.strategies.items()))
    tasks = [
        TubeTask(r["file"], r["tube"], panels.source, overrides) for r in tubes.to_dict("records")
    ]
    outcomes = _gate_all(tasks, jobs, progress)
    bases = {**BASE_TO_CBC, **panels.base_populations}
    tables = []
    for _, spec_tubes in tubes.groupby("specimen", sort=False):
        cbc = {
            c: float(spec_tubes[c].iloc[0]) for c in CBC if not math.isnan(spec_tubes[c].iloc[0])
        }
        parts = []
        for idx, rec in spec_tubes.iterrows():
            outcome = outcomes[tubes.index.get_loc(idx)]
            if outcome.error:
                errors.append(outcome.error)
                continue
            notes.extend(outcome.notes)
            rows = outcome.rows.copy()
            for key in ("specimen", "patient", "timepoint", "tube"):
                rows[key] = rec[key]
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


def write_run(
    result: RunResult,
    out: str | os.PathLike,
    manifest: str | os.PathLike | None = None,
    panels: Panels | None = None,
) -> Path:
    """DIR/populations.csv, DIR/qc_flags.csv, (when something failed) DIR/errors.csv, and
    DIR/run.json naming the manifest, panel file and strategies (for ``cytowhim report``)."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        info = {"manifest": str(Path(manifest).resolve())}
        if panels is not None:
            info["panels"] = str(Path(panels.source).resolve()) if panels.source else ""
            info["strategies"] = {t: str(Path(p).resolve()) for t, p in panels.strategies.items()}
        (out / "run.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
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

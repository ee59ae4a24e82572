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
    save_events: bool = False  # return each population's membership (for --save-events)


@dataclass
class TubeOutcome:
    task: TubeTask
    rows: pd.DataFrame | None = None  # population, parent, events, percent_of_parent, base, ...
    notes: list[str] = field(default_factory=list)
    geometry: dict = field(default_factory=dict)
    n_events: int = 0
    membership: dict | None = None
    file_sha256: str = ""
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
    membership = dict(result.masks) if task.save_events else None
    return TubeOutcome(
        task, pd.DataFrame(rows), notes, result.geometry(), sample.n_events, membership
    )


def _gate_all(
    tasks: list[TubeTask], jobs: int, progress, scheduler: str | None = None
) -> list[TubeOutcome]:
    """Gate tubes in ``jobs`` worker processes (1: in this process), or on the Dask distributed
    cluster at ``scheduler``; results in task order."""
    if scheduler is not None:
        return _gate_on_dask(tasks, scheduler, progress)
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


def _inputs_key(spec_tubes: pd.DataFrame, panels: Panels, qc_rules, reference, hashes) -> str:
    """Content hash of everything a specimen's results depend on: its manifest rows and CBC, its
    FCS files, the strategies and panel file, the QC rules, the reference intervals, the version."""
    import json

    from . import __version__
    from .store import file_sha256, text_sha256

    rows = spec_tubes.drop(columns=["row"]).astype(str).to_dict("records")
    strategies = sorted(
        {
            t: hashes(panels.strategies[t]) if t in panels.strategies else ""
            for t in spec_tubes.tube
        }.items()
    )
    doc = {
        "version": __version__,
        "rows": rows,
        "files": [hashes(f) for f in spec_tubes.file],
        "strategies": strategies,
        "panels": file_sha256(panels.source) if panels.source else "",
        "bases": sorted(panels.base_populations.items()),
        "qc": repr(qc_rules),
        "reference": text_sha256(reference.frame.to_csv(index=False)),
    }
    return text_sha256(json.dumps(doc, sort_keys=True, default=str))


def _gate_on_dask(tasks: list[TubeTask], scheduler: str, progress) -> list[TubeOutcome]:
    """The same pure gate_tube calls on a Dask distributed cluster (``--executor dask``); the
    files and strategy paths must be readable from the workers."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError(
            "--executor dask needs dask.distributed: pip install 'cytowhim[dask]'"
        ) from None
    with Client(scheduler) as client:
        futures = client.map(gate_tube, tasks, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[TubeOutcome | None] = [None] * len(tasks)
        for future in as_completed(futures):
            i = index[future.key]
            out[i] = future.result()
            if progress:
                progress(Path(tasks[i].file).name)
    return out  # type: ignore[return-value]


def run_manifest(
    manifest: str | os.PathLike,
    panels: Panels | None = None,
    qc_rules=None,
    reference=None,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
    out: str | os.PathLike | None = None,
    save_events: bool = False,
    scheduler: str | None = None,
) -> RunResult:
    """Gate, count, check and flag every usable tube of a manifest; failures are collected, never
    raised, so one broken file or CBC row leaves the rest of the run intact. ``jobs`` worker
    processes gate the files; this process assembles the results.

    With ``out``, each specimen whose tubes all succeeded is written as a complete part file
    (``out/parts``, atomically) keyed by the content hash of its inputs, and a rerun reuses valid
    parts: after an interruption only what is missing or changed is redone."""
    from .qc import QCRules
    from .reference import ReferenceIntervals
    from .store import file_sha256, part_is_valid, part_path, read_part

    panels = panels or Panels.load()
    qc_rules = qc_rules or QCRules()
    reference = reference or ReferenceIntervals.bundled()
    tubes, problems = read_manifest(manifest)
    errors = [str(p) for p in problems]
    notes: list[str] = []
    parts_dir = Path(out) / "parts" if out is not None else None
    sha: dict[str, str] = {}

    def hashes(path) -> str:
        key = str(path)
        if key not in sha:
            try:
                sha[key] = file_sha256(path)
            except OSError:
                sha[key] = "missing"
        return sha[key]

    groups = list(tubes.groupby("specimen", sort=False))
    keys, reused = {}, {}
    if parts_dir is not None:
        for spec, spec_tubes in groups:
            path = part_path(parts_dir, spec)
            if not path.is_file():
                continue  # nothing to reuse: its files are hashed while they are gated
            keys[spec] = _inputs_key(spec_tubes, panels, qc_rules, reference, hashes)
            if part_is_valid(path, keys[spec]):
                reused[spec] = read_part(path)[1]
    overrides = tuple(sorted((t, str(p)) for t, p in panels.strategies.items()))
    todo = tubes[~tubes.specimen.isin(reused)]
    tasks = [
        TubeTask(r["file"], r["tube"], panels.source, overrides, save_events)
        for r in todo.to_dict("records")
    ]
    outcomes = dict(zip(todo.index, _gate_all(tasks, jobs, progress, scheduler)))
    for outcome in outcomes.values():
        if outcome.file_sha256:
            sha[str(outcome.task.file)] = outcome.file_sha256
    tables, flags, done = [], [], []
    for spec, spec_tubes in groups:
        if spec in reused:
            records = reused[spec]
        else:
            records = _specimen_records(
                spec_tubes,
                [outcomes[i] for i in spec_tubes.index],
                panels,
                qc_rules,
                reference,
                errors,
                hashes,
            )
            if records is None:
                continue
            if parts_dir is not None and len(records) == len(spec_tubes):
                from .store import write_part

                key = keys.get(spec) or _inputs_key(spec_tubes, panels, qc_rules, reference, hashes)
                write_part(part_path(parts_dir, spec), spec, records, key)
        if parts_dir is not None and len(records) == len(spec_tubes):
            done.append(spec)
        for r in records:
            tables.append(r.table)
            flags.extend(r.qc_flags)
            notes.extend(r.notes)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    if parts_dir is not None and done:
        from .store import assemble

        assemble(parts_dir, Path(out) / "results.h5", specimens=done)
    return RunResult(table[COLUMNS], flags, errors, notes)


def _specimen_records(spec_tubes, outcomes, panels, qc_rules, reference, errors, hashes):
    """The TubeRecords of one specimen (counts, QC, reference flags), or None if no tube
    succeeded; failed tubes add to ``errors``."""
    from dataclasses import asdict

    from .counts import BASE_TO_CBC
    from .qc import check_table
    from .store import TubeRecord

    bases = {**BASE_TO_CBC, **panels.base_populations}
    first = spec_tubes.iloc[0]
    cbc = {c: float(first[c]) for c in CBC if not math.isnan(first[c])}
    parts, ok = [], []
    for (_, rec), outcome in zip(spec_tubes.iterrows(), outcomes):
        if outcome.error:
            errors.append(outcome.error)
            continue
        rows = outcome.rows.copy()
        for key in ("specimen", "patient", "timepoint", "tube"):
            rows[key] = rec[key]
        parts.append(rows)
        ok.append((rec, outcome))
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    table["qc"] = ""
    table = _absolute(table, spec_tubes, cbc, bases, errors)
    table, flags = check_table(table, qc_rules)
    table = reference.flag_table(table)[COLUMNS]
    records = []
    for rec, outcome in ok:
        tube = rec["tube"]
        records.append(
            TubeRecord(
                specimen=rec["specimen"],
                patient=rec["patient"],
                timepoint=rec["timepoint"],
                tube=tube,
                file=rec["file"],
                file_sha256=hashes(rec["file"]),
                strategy_sha256=hashes(panels.strategies[tube])
                if tube in panels.strategies
                else "",
                table=table[table.tube == tube].reset_index(drop=True),
                geometry=outcome.geometry,
                qc_flags=[
                    asdict(f) for f in flags if f.tube == tube or (not f.tube and not records)
                ],
                notes=outcome.notes,
                n_events=outcome.n_events,
                membership=outcome.membership,
            )
        )
    return records


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
    pd.DataFrame(result.flags).to_csv(out / "qc_flags.csv", index=False)
    errors = out / "errors.csv"
    if result.errors:
        pd.DataFrame({"error": result.errors}).to_csv(errors, index=False)
    elif errors.exists():
        errors.unlink()
    return out / "populations.csv"

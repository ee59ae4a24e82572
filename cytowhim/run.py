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
from typing import Any

import pandas as pd

from .labels import ascii_name
from .manifest import CBC, read_manifest
from .panels import Panels
from .reporting import UNITS_PER_UL

COLUMNS = [
    "specimen",
    "patient",
    "timepoint",
    "age",
    "sex",
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
    "units",
    "reported",
    "qc",
    "qc_status",
    "reference_flag",
    "reference_low",
    "reference_high",
    "reference_band",
    "reference_source",
]

#: Ratios reported per tube: name -> (numerator population, denominator population).
RATIOS = {"CD4/CD8 ratio": ("CD4+ T cells", "CD8+ T cells")}


@dataclass
class RunResult:
    table: pd.DataFrame  # COLUMNS, one row per specimen x tube x population
    flags: list = field(default_factory=list)  # QC flags
    errors: list[str] = field(default_factory=list)  # one line per input that failed
    notes: list[str] = field(default_factory=list)  # engine notes (fall-backs, no spillover)
    reporting: Any = None  # the ReportingRules the values were reported with

    def printed(self) -> pd.DataFrame:
        """The table as ``populations.csv`` has it: whole event counts, percentages and counts
        rounded as reported (full precision stays in ``table`` and ``results.h5``)."""
        from .reporting import ReportingRules

        return printed_table(self.table, self.reporting or ReportingRules())


def printed_table(table: pd.DataFrame, reporting) -> pd.DataFrame:
    """A population table rounded for people and spreadsheets: ``events`` and ``base_events``
    as whole numbers, percentages to ``percent_decimals``, each absolute count and its error to
    the decimals of the reported value."""
    out = table.copy()
    if "age" in out.columns:
        out["age"] = pd.to_numeric(out["age"], errors="coerce").round(2)
    for column in ("events", "base_events"):
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce").round().astype("Int64")
    for column in ("percent_of_parent", "percent_of_base"):
        if column in out.columns:
            out[column] = reporting.percent(out[column])
    if "absolute_per_uL" in out.columns:
        values = pd.to_numeric(out["absolute_per_uL"], errors="coerce").astype(float)
        out["absolute_per_uL"] = values.map(reporting.round)
        if "absolute_error_per_uL" in out.columns:
            errors = pd.to_numeric(out["absolute_error_per_uL"], errors="coerce").astype(float)
            out["absolute_error_per_uL"] = [
                reporting.round_like(e, v) for e, v in zip(errors, values)
            ]
    return out


@dataclass(frozen=True)
class TubeTask:
    """Everything :func:`gate_tube` needs, picklable (it runs in worker processes)."""

    file: str
    tube: str
    panels: str  # panel file
    strategies: tuple[tuple[str, str], ...] = ()  # --strategy TUBE=FILE overrides
    save_events: bool = False  # return each population's membership (for --save-events)
    markers: tuple[tuple[str, str], ...] = ()  # strategy name -> the file's marker or channel


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
    failed: dict[str, str] = field(default_factory=dict)  # population -> why it was not gated


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
            result = strategy.apply(sample, markers=dict(task.markers))
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
        gated = p.name not in result.failed and (not base or base not in result.failed)
        nested, inside = (
            _nesting(strategy, result, p.name, base, counts) if gated else (False, math.nan)
        )
        events = counts[p.name]
        rows.append(
            {
                "population": ascii_name(p.name),  # 'CD27- B cells' in every output
                "parent": ascii_name(p.parent or ""),
                # a population whose gate failed on this file has no count (NaN)
                "events": math.nan if events is pd.NA else events,
                "percent_of_parent": float(parent_pct[p.name]),
                "base": ascii_name(base),
                "base_events": (
                    math.nan if not base or counts.get(base, pd.NA) is pd.NA else counts[base]
                ),
                "nested": nested,
                "events_in_base": inside,
            }
        )
    notes = [f"{Path(task.file).name}: {n}" for n in result.notes]
    membership = dict(result.masks) if task.save_events else None
    return TubeOutcome(
        task,
        pd.DataFrame(rows),
        notes,
        result.geometry(),
        sample.n_events,
        membership,
        failed={ascii_name(k): v for k, v in result.failed.items()},
    )


def _nesting(strategy, result, name: str, base: str, counts: dict) -> tuple[bool, float]:
    """(whether the population lies inside its base, its events inside the base): nested when
    the base is the population or one of its ancestors, or when every event of it is inside the
    base; NaN events for rows without a base."""
    import numpy as np

    if not base or base not in counts:
        return False, math.nan
    ancestor: str | None = name
    while ancestor is not None:
        if ancestor == base:
            return True, float(counts[name])
        ancestor = strategy[ancestor].parent
    inside = int(np.count_nonzero(result.mask(name) & result.mask(base)))
    return inside == counts[name], float(inside)


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
    if panels.extra_markers:  # --markers FILE (the panel file's markers: are in its hash)
        doc["markers"] = sorted(panels.extra_markers.items())
    return text_sha256(json.dumps(doc, sort_keys=True, default=str))


#: Seconds to wait for a Dask scheduler before giving up (distributed's default is 30 s).
DASK_CONNECT_TIMEOUT = 10


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _gate_on_dask(tasks: list[TubeTask], scheduler: str, progress) -> list[TubeOutcome]:
    """The same pure gate_tube calls on a Dask distributed cluster (``--executor dask``); the
    files and strategy paths must be readable from the workers.

    Raises :class:`~cytowhim.errors.ExecutorError` (one line naming the scheduler and what to do)
    when dask.distributed is missing, the address is not one, the scheduler cannot be reached
    within :data:`DASK_CONNECT_TIMEOUT` seconds, or the cluster fails while gating."""
    from .errors import ExecutorError

    if not scheduler or not str(scheduler).strip():
        # Client("") would quietly start a local cluster
        raise ExecutorError("--executor dask needs a scheduler address, e.g. tcp://10.0.0.5:8786")
    try:
        from distributed import Client, as_completed
        from distributed.comm import get_address_host_port, parse_address
    except ImportError:
        raise ExecutorError(
            f"cannot use the Dask scheduler {scheduler}: dask.distributed is not installed; "
            "pip install 'cytowhim[dask]' (or run without --executor dask)"
        ) from None
    try:
        # checked before Client(): a Client that fails on a malformed address hangs for 20 s
        # in its finaliser when the interpreter exits
        if parse_address(scheduler)[0] != "inproc":
            get_address_host_port(scheduler)
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except ValueError as exc:
        raise ExecutorError(
            f"{scheduler!r} is not a Dask scheduler address ({' '.join(str(exc).split())}): "
            "give it as tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(
            f"cannot reach the Dask scheduler at {scheduler} within {DASK_CONNECT_TIMEOUT} s "
            f"({_one_line(exc)}): check the address and that the scheduler is running "
            "('dask scheduler') and reachable from this machine"
        ) from None
    current = None
    try:
        with client:
            futures = client.map(gate_tube, tasks, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            out: list[TubeOutcome | None] = [None] * len(tasks)
            for future in as_completed(futures, loop=client.loop):
                i = current = index[future.key]
                out[i] = future.result()  # gate_tube returns its own failures
                if progress:
                    progress(Path(tasks[i].file).name)
    except Exception as exc:  # the cluster, not gate_tube: lost workers, scheduler gone, imports
        where = f" while gating {tasks[current].file}" if current is not None else ""
        raise ExecutorError(
            f"the Dask cluster at {scheduler} failed{where} ({_one_line(exc)}): check that the "
            "scheduler and workers are running, that the workers have cytowhim installed "
            "(pip install 'cytowhim[dask]') and can read the FCS and strategy files"
        ) from exc
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
    reporting=None,
    units: str | None = None,
    decimal: str | None = None,
) -> RunResult:
    """Gate, count, check and flag every usable tube of a manifest; failures are collected, never
    raised, so one broken file or CBC row leaves the rest of the run intact. ``jobs`` worker
    processes gate the files; this process assembles the results.

    With ``out``, each specimen whose tubes all succeeded is written as a complete part file
    (``out/parts``, atomically) keyed by the content hash of its inputs, and a rerun reuses valid
    parts: after an interruption only what is missing or changed is redone. ``reporting``
    (:class:`~cytowhim.reporting.ReportingRules`): the CBC's CVs, limit of quantitation and
    rounding of the reported values. ``units`` and ``decimal``: the manifest's CBC unit where it
    states none, and its decimal separator (see :func:`~cytowhim.manifest.read_manifest`)."""
    from .qc import QCRules
    from .reference import ReferenceIntervals
    from .reporting import ReportingRules
    from .store import file_sha256, part_is_valid, part_path, read_part

    panels = panels or Panels.load()
    qc_rules = qc_rules or QCRules()
    reporting = reporting or ReportingRules()
    reference = reference or ReferenceIntervals.bundled()
    tubes, problems = read_manifest(manifest, units=units, decimal=decimal)
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
            keys[spec] = _inputs_key(spec_tubes, panels, (qc_rules, reporting), reference, hashes)
            if part_is_valid(path, keys[spec]):
                reused[spec] = read_part(path)[1]
    overrides = tuple(sorted((t, str(p)) for t, p in panels.strategies.items()))
    todo = tubes[~tubes.specimen.isin(reused)]
    tasks = [
        TubeTask(
            r["file"],
            r["tube"],
            panels.source,
            overrides,
            save_events,
            tuple(sorted(panels.markers_for(r["tube"]).items())),
        )
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
                (qc_rules, reporting),
                reference,
                errors,
                hashes,
            )
            if records is None:
                continue
            if parts_dir is not None and len(records) == len(spec_tubes):
                from .store import write_part

                key = keys.get(spec) or _inputs_key(
                    spec_tubes, panels, (qc_rules, reporting), reference, hashes
                )
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
    return RunResult(table[COLUMNS], flags, errors, notes, reporting)


def _specimen_records(spec_tubes, outcomes, panels, rules, reference, errors, hashes):
    """The TubeRecords of one specimen (counts, QC, reference flags, reported values), or None
    if no tube succeeded; failed tubes add to ``errors``."""
    from dataclasses import asdict

    from .counts import BASE_TO_CBC
    from .qc import QCFlag, add_qc_note, check_table, qc_status
    from .store import TubeRecord

    qc_rules, reporting = rules
    bases = {**BASE_TO_CBC, **panels.base_populations}
    first = spec_tubes.iloc[0]
    cbc = {c: float(first[c]) for c in CBC if not math.isnan(first[c])}
    parts, ok = [], []
    for (_, rec), outcome in zip(spec_tubes.iterrows(), outcomes):
        if outcome.error:
            errors.append(outcome.error)
            continue
        for name, why in outcome.failed.items():
            errors.append(f"{outcome.task.file}: population {name!r} was not gated: {why}")
        rows = outcome.rows.copy()
        for key in ("specimen", "patient", "timepoint", "tube"):
            rows[key] = rec[key]
        rows["age"] = float(rec["age"]) if "age" in rec and rec["age"] == rec["age"] else math.nan
        rows["sex"] = str(rec["sex"]) if "sex" in rec and isinstance(rec["sex"], str) else ""
        parts.append(rows)
        ok.append((rec, outcome))
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    table["qc"] = ""
    table = _absolute(table, spec_tubes, cbc, bases, errors, reporting)
    table = _with_ratios(table)
    table, flags = check_table(table, qc_rules, cbc={first["specimen"]: cbc}, bases=bases)
    table, flags = _gate_failures(table, flags, ok)
    table, unmatched = reference.annotate(table, reporting=reporting)
    notes = list(table["qc"])
    for i, message in unmatched:
        row = table.iloc[i]
        flag = QCFlag(
            str(row["specimen"]),
            str(row["tube"]),
            str(row["population"]),
            "reference",
            "warn",
            message,
        )
        flags.append(flag)
        notes[i] = add_qc_note(notes[i], str(flag))
    table["qc"] = notes
    table["qc_status"] = qc_status(table, flags, bases)
    table = _reported(table, reporting)[COLUMNS]
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


def _gate_failures(table: pd.DataFrame, flags: list, ok: list) -> tuple[pd.DataFrame, list]:
    """A 'gate_failed' QC fail on every population that was not gated on its file (its gate
    could not place itself, or a population it depends on was not gated)."""
    from .qc import QCFlag, add_qc_note

    notes = list(table["qc"])
    flags = list(flags)
    for rec, outcome in ok:
        for name, why in outcome.failed.items():
            hits = (table["tube"] == rec["tube"]) & (table["population"] == name)
            flag = QCFlag(
                str(rec["specimen"]),
                str(rec["tube"]),
                name,
                "gate_failed",
                "fail",
                f"not gated on {Path(rec['file']).name}: {why}",
            )
            flags.append(flag)
            for i in hits[hits].index:
                notes[i] = add_qc_note(notes[i], str(flag))
    table = table.copy()
    table["qc"] = notes
    return table, flags


def _with_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a row per :data:`RATIOS` entry in each tube that has both populations
    (the ratio of their events, which is the ratio of their absolute counts)."""
    extra = []
    for tube, rows in table.groupby("tube", sort=False):
        events = dict(
            zip(rows["population"].map(lambda p: str(p).rsplit("/", 1)[-1]), rows["events"])
        )
        for name, (top, bottom) in RATIOS.items():
            if top not in events or bottom not in events:
                continue
            ratio = events[top] / events[bottom] if events[bottom] > 0 else math.nan
            first = rows.iloc[0]
            extra.append(
                {
                    **{k: first[k] for k in ("specimen", "patient", "timepoint", "age", "sex")},
                    "tube": tube,
                    "population": name,
                    "parent": "",
                    "base": "",
                    "units": "ratio",
                    "ratio": ratio,
                    "qc": "",
                }
            )
    if not extra:
        return table
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True)


def _reported(table: pd.DataFrame, reporting) -> pd.DataFrame:
    """``units`` and ``reported`` (the value as printed: rounded, '<1' below the limit of
    quantitation, the ratio to its decimals) for every row."""
    out = table.copy()
    units = out["units"].fillna("") if "units" in out.columns else pd.Series("", index=out.index)
    ratios = out["ratio"] if "ratio" in out.columns else pd.Series(math.nan, index=out.index)
    reported = []
    for unit, value, events, ratio in zip(units, out["absolute_per_uL"], out["events"], ratios):
        if unit == "ratio":
            reported.append(reporting.ratio(float(ratio)))
            continue
        per_event = value / events if events and events > 0 and value == value else math.nan
        reported.append(reporting.reported(float(value), per_event)[1])
    out["units"] = [u if u else UNITS_PER_UL for u in units]
    out["reported"] = reported
    return out


BEAD_POPULATIONS = ("beads", "counting beads")


def _absolute(
    table: pd.DataFrame,
    tubes: pd.DataFrame,
    cbc: dict[str, float],
    bases: dict[str, str],
    errors: list[str],
    reporting,
) -> pd.DataFrame:
    """Absolute counts of one specimen: single platform for tubes with counting beads (a
    population named 'beads' in their strategy), dual platform with the CBC for the others."""
    from .counts import absolute_counts, absolute_counts_beads

    parts = []
    for tube, rows in table.groupby("tube", sort=False):
        rec = tubes[tubes.tube == tube].iloc[0]
        if math.isnan(rec["beads_per_tube"]) or math.isnan(rec["volume_uL"]):
            parts.append(absolute_counts(rows, cbc, bases=bases, cbc_cv=reporting.cbc_cv))
            continue
        beads = rows[rows.population.isin(BEAD_POPULATIONS)]
        if beads.empty:
            errors.append(
                f"{rec['file']}: the manifest gives counting beads for tube {tube} but "
                f"its strategy has no population named {' or '.join(BEAD_POPULATIONS)}"
            )
            parts.append(absolute_counts(rows, cbc, bases=bases, cbc_cv=reporting.cbc_cv))
            continue
        parts.append(
            absolute_counts_beads(
                rows,
                float(beads.events.iloc[0]),
                float(rec["beads_per_tube"]),
                float(rec["volume_uL"]),
                bead_cv=reporting.bead_cv,
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
    DIR/run.json naming the manifest, panel file and strategies (for ``cytowhim report``).
    The CSV files are UTF-8 with a byte-order mark (Excel opens them with the right encoding)."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        info = {"manifest": str(Path(manifest).resolve())}
        if panels is not None:
            info["panels"] = str(Path(panels.source).resolve()) if panels.source else ""
            info["strategies"] = {t: str(Path(p).resolve()) for t, p in panels.strategies.items()}
            if panels.extra_markers:  # --markers FILE, for cytowhim report's regating
                info["markers"] = dict(panels.extra_markers)
        (out / "run.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    # UTF-8 with a BOM, so Excel shows µ and other non-ASCII text as written
    result.printed().to_csv(out / "populations.csv", index=False, encoding="utf-8-sig")
    from .store import QC_COLUMNS

    # with no flag, still a header (an empty file is not a CSV table)
    flags = pd.DataFrame(result.flags) if result.flags else pd.DataFrame(columns=list(QC_COLUMNS))
    flags.to_csv(out / "qc_flags.csv", index=False, encoding="utf-8-sig")
    errors = out / "errors.csv"
    if result.errors:
        pd.DataFrame({"error": result.errors}).to_csv(errors, index=False, encoding="utf-8-sig")
    elif errors.exists():
        errors.unlink()
    return out / "populations.csv"

"""``cytowhim run``: gate every tube of a manifest, turn events into absolute counts with the
specimen's CBC (or counting beads), run the QC rules and flag values outside reference intervals.

:func:`gate_tube` is a pure function of its inputs (file, tube, strategy), so the same call can
run in a process pool later; :func:`run_manifest` assembles the population table.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .executors import DASK_CONNECT_TIMEOUT, _one_line, run_tasks
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

__all__ = [
    "COLUMNS",
    "DASK_CONNECT_TIMEOUT",
    "RATIOS",
    "RunResult",
    "TubeOutcome",
    "TubeTask",
    "gate_tube",
    "not_a_regular_file",
    "printed_table",
    "run_manifest",
    "write_run",
]

log = logging.getLogger(__name__)

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
    traceback: str = ""  # of an unexpected error (a bug), for --debug


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

    try:  # an exception other than these is the executor's failure (e.g. a broken install)
        panels = _panels_for(task)
        strategy = panels.strategy(task.tube)
    except (FCSError, GatingError, PanelError) as exc:
        return TubeOutcome(task, error=str(exc))
    except OSError as exc:
        return TubeOutcome(task, error=f"{exc.filename or task.panels}: {exc.strerror or exc}")
    problem = not_a_regular_file(task.file)
    if problem:  # a FIFO would block read_fcs forever
        return TubeOutcome(task, error=problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in result.notes instead
            sample = read_fcs(task.file)
            result = strategy.apply(sample, markers=dict(task.markers))
    except (FCSError, GatingError, PanelError) as exc:
        return TubeOutcome(task, error=str(exc))
    except OSError as exc:
        return TubeOutcome(task, error=f"{task.file}: {exc.strerror or exc}")
    except (MemoryError, RecursionError) as exc:
        return TubeOutcome(task, error=f"{task.file}: cannot be gated ({_one_line(exc)})")
    except Exception as exc:  # a bug met on this file: the other files are still gated
        import traceback

        return TubeOutcome(
            task,
            error=f"{task.file}: cannot be gated ({_one_line(exc)}): an error in cytowhim; "
            "please report it with this line (cytowhim --debug run ... shows the traceback)",
            traceback=traceback.format_exc(),
        )
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


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not read as an FCS file (one line naming it), or None for a regular file
    (links followed). Only regular files are opened: reading a FIFO or a device blocks or never
    ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    except ValueError as exc:  # an embedded NUL
        return f"{str(path)!r}: {exc}"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"{path}: not a regular file ({kind}); give the FCS file itself"


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
    cluster at ``scheduler``; results in task order (see :mod:`cytowhim.executors`)."""
    out: list[TubeOutcome | None] = [None] * len(tasks)

    def done(i: int, outcome: TubeOutcome) -> None:
        out[i] = outcome
        if progress:
            progress(Path(tasks[i].file).name)

    run_tasks(gate_tube, tasks, done, jobs, scheduler, describe=_file_of)
    return out  # type: ignore[return-value]


def _file_of(task: TubeTask) -> str:
    return str(task.file)


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


def _gate_on_dask(tasks: list[TubeTask], scheduler: str, progress) -> list[TubeOutcome]:
    """:func:`gate_tube` of every task on the Dask cluster at ``scheduler`` (results in task
    order); :class:`~cytowhim.errors.ExecutorError` as :func:`cytowhim.executors.on_dask`."""
    return _gate_all(tasks, 1, progress, scheduler)


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
    db: Any = None,
    run_info: Any = None,
) -> RunResult:
    """Gate, count, check and flag every usable tube of a manifest; failures are collected, never
    raised, so one broken file, CBC row or specimen leaves the rest of the run intact. ``jobs``
    worker processes gate the files (they die with this process, see
    :mod:`cytowhim.executors`); this process assembles the results.

    With ``out``, the run holds the lock of the folder (:func:`cytowhim.batch_lock.output_lock`;
    :class:`~cytowhim.errors.OutputInUseError` if another run holds it), removes the temporary
    files of an interrupted run and ``out/run.json`` (the mark of a complete run, written last
    by :func:`write_run`), and writes each specimen whose tubes all succeeded as a complete part
    file (``out/parts``, atomically) as soon as its last tube is gated, keyed by the content hash
    of its inputs; a rerun reuses valid parts. A kill loses at most the specimens in flight, and
    the rerun ends with the same outputs as an uninterrupted run. A part that cannot be written
    (disk full) raises :class:`~cytowhim.errors.OutputError`; the finished parts are kept.

    ``reporting`` (:class:`~cytowhim.reporting.ReportingRules`): the CBC's CVs, limit of
    quantitation and rounding of the reported values. ``units`` and ``decimal``: the manifest's
    CBC unit where it states none, and its decimal separator (see
    :func:`~cytowhim.manifest.read_manifest`). ``db`` (:class:`cytowhim.db.ResultsDB`):
    register each complete specimen there as it finishes (or is reused), with ``run_info``
    (:class:`cytowhim.db.RunInfo`); a specimen that cannot be registered is an error line, the
    rest goes on. ValueError for ``jobs`` < 1;
    :class:`~cytowhim.manifest.ManifestError` when the manifest cannot be used at all."""
    from .qc import QCRules
    from .reference import ReferenceIntervals
    from .reporting import ReportingRules

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: give the number of worker processes, a whole number >= 1")
    panels = panels or Panels.load()
    qc_rules = qc_rules or QCRules()
    reporting = reporting or ReportingRules()
    reference = reference or ReferenceIntervals.bundled()
    tubes, problems = read_manifest(manifest, units=units, decimal=decimal)
    batch = _Batch(panels, (qc_rules, reporting), reference, out, save_events)
    if db is not None:
        from .db import RunInfo

        batch.db, batch.run_info = db, run_info or RunInfo(out_dir=str(out or ""))
    if out is None:
        return batch.run(tubes, problems, progress, jobs, scheduler)
    from .batch_lock import clean_stale_temporaries, output_lock

    with output_lock(out):
        clean_stale_temporaries(out)
        try:
            (Path(out) / "run.json").unlink(missing_ok=True)  # not a complete run until the end
        except OSError as exc:
            raise _output_error(exc, Path(out) / "run.json") from exc
        return batch.run(tubes, problems, progress, jobs, scheduler)


def _output_error(exc: OSError, path: Path):
    """One line for an output that cannot be written: the file (its final name, not the
    temporary one), why, and that the same command resumes."""
    from .batch_lock import TEMPORARY
    from .errors import OutputError

    where = Path(exc.filename) if isinstance(exc.filename, str) else Path(path)
    if TEMPORARY.fullmatch(where.name):  # .NAME.<hex>.tmp -> NAME
        where = where.with_name(where.name[1:].rsplit(".", 2)[0])
    return OutputError(
        f"{where}: cannot be written ({exc.strerror or _one_line(exc)}); the specimens already "
        "finished are kept: fix the output folder (space, permissions) and rerun the same "
        "command to resume"
    )


@dataclass
class _Specimen:
    """What one specimen gave: its tube records (None: none could be counted) and error lines."""

    records: list | None
    errors: list[str]


class _Batch:
    """One run_manifest call: the configuration, the files' hashes, the parts folder."""

    def __init__(self, panels, rules, reference, out, save_events: bool) -> None:
        self.panels, self.rules, self.reference = panels, rules, reference
        self.out = Path(out) if out is not None else None
        self.parts = self.out / "parts" if self.out is not None else None
        self.save_events = save_events
        self.sha: dict[str, str] = {}
        self.db: Any = None  # a ResultsDB each finished specimen is registered in
        self.run_info: Any = None

    def hashes(self, path) -> str:
        from .store import file_sha256

        key = str(path)
        if key not in self.sha:
            if not_a_regular_file(path):
                self.sha[key] = "missing"  # never opened: a FIFO would block
            else:
                try:
                    self.sha[key] = file_sha256(path)
                except OSError:
                    self.sha[key] = "missing"
        return self.sha[key]

    def key(self, spec_tubes: pd.DataFrame) -> str:
        return _inputs_key(spec_tubes, self.panels, self.rules, self.reference, self.hashes)

    def run(self, tubes, problems, progress, jobs, scheduler) -> RunResult:
        groups = dict(list(tubes.groupby("specimen", sort=False)))
        done: dict[str, _Specimen] = {}
        if self.parts is not None:
            for spec, spec_tubes in groups.items():
                reused = self.reuse(spec, spec_tubes)
                if reused is not None:
                    done[spec] = reused
        overrides = tuple(sorted((t, str(p)) for t, p in self.panels.strategies.items()))
        tasks, owner = [], []
        for spec, spec_tubes in groups.items():
            if spec in done:
                continue
            for i, r in zip(spec_tubes.index, spec_tubes.to_dict("records")):
                markers = tuple(sorted(self.panels.markers_for(r["tube"]).items()))
                tasks.append(
                    TubeTask(
                        r["file"],
                        r["tube"],
                        self.panels.source,
                        overrides,
                        self.save_events,
                        markers,
                    )
                )
                owner.append((spec, i))
        waiting = {spec: len(groups[spec]) for spec, _ in owner}
        outcomes: dict[Any, TubeOutcome] = {}

        def finished(k: int, outcome: TubeOutcome) -> None:
            spec, i = owner[k]
            outcomes[i] = outcome
            if outcome.traceback:
                log.debug("%s: %s", outcome.task.file, outcome.traceback)
            if progress:
                progress(Path(outcome.task.file).name)
            waiting[spec] -= 1
            if not waiting[spec]:  # its last tube: count it and write its part now
                spec_tubes = groups[spec]
                done[spec] = self.finish(
                    spec, spec_tubes, [outcomes.pop(j) for j in spec_tubes.index]
                )

        run_tasks(gate_tube, tasks, finished, jobs, scheduler, describe=_file_of)
        return self.result(groups, done, problems)

    def reuse(self, spec: str, spec_tubes: pd.DataFrame) -> _Specimen | None:
        """The specimen's valid part (written for these very inputs), else None."""
        from .store import part_path, read_part, read_part_errors

        path = part_path(self.parts, spec)
        if not path.is_file():
            return None  # nothing to reuse: its files are hashed while they are gated
        key = self.key(spec_tubes)
        try:
            stored, records = read_part(path)
            errors = read_part_errors(path)
        except Exception:  # damaged: h5py raises OSError, KeyError, ValueError ...
            return None
        if stored != key or errors is None or [r.specimen for r in records[:1]] != [spec]:
            return None
        for r in records:
            r.membership = None  # in the part; not needed here
        return _Specimen(records, self.register(spec, spec_tubes, records, list(errors)))

    def finish(self, spec: str, spec_tubes: pd.DataFrame, outcomes: list) -> _Specimen:
        """Count, check and flag one specimen whose tubes are all gated; write its part."""
        errors: list[str] = []
        try:
            records = _specimen_records(
                spec_tubes, outcomes, self.panels, self.rules, self.reference, errors, self.hashes
            )
        except Exception as exc:  # a bug met on this specimen: the others are still counted
            log.debug("specimen %s", spec, exc_info=True)
            errors.append(
                f"specimen {spec}: cannot be counted ({_one_line(exc)}): an error in "
                "cytowhim; please report it with this line"
            )
            return _Specimen(None, errors)
        if records and self.parts is not None and len(records) == len(spec_tubes):
            from .store import part_path, write_part

            path = part_path(self.parts, spec)
            try:
                write_part(path, spec, records, self.key(spec_tubes), errors)
            except OSError as exc:  # disk full, folder gone: the run cannot go on
                raise _output_error(exc, path) from exc
            except Exception as exc:
                log.debug("specimen %s", spec, exc_info=True)
                errors.append(f"specimen {spec}: its results cannot be stored ({_one_line(exc)})")
                return _Specimen(None, errors)
            for r in records:
                r.membership = None  # in the part now: not kept in memory
        if records and len(records) == len(spec_tubes):
            errors = self.register(spec, spec_tubes, records, errors)
        return _Specimen(records, errors)

    def register(self, spec: str, spec_tubes: pd.DataFrame, records: list, errors: list) -> list:
        """Register a complete specimen in the results database (if any); ``errors`` with a
        line added when it cannot be (the run goes on)."""
        if self.db is None:
            return errors
        from .db.from_run import specimen_entry

        try:
            entry = specimen_entry(spec_tubes, records, self.key(spec_tubes), self.rules[1])
            self.db.register(entry, self.run_info)
        except Exception as exc:  # the database went away, a constraint ...: this specimen only
            log.debug("specimen %s", spec, exc_info=True)
            errors.append(
                f"specimen {spec}: not registered in the results database {self.db.url} "
                f"({_one_line(exc)}); rerun the same command to register it"
            )
        return errors

    def result(self, groups: dict, done: dict, problems) -> RunResult:
        """The run's table, flags, errors and notes, in manifest order whatever order the
        specimens finished in (or were reused); ``results.h5`` from the complete ones."""
        errors = [str(p) for p in problems]
        tables, flags, notes, complete = [], [], [], []
        for spec, spec_tubes in groups.items():
            specimen = done[spec]
            errors.extend(specimen.errors)
            if specimen.records is None:
                continue
            if len(specimen.records) == len(spec_tubes):
                complete.append(spec)
            for r in specimen.records:
                tables.append(r.table)
                flags.extend(r.qc_flags)
                notes.extend(r.notes)
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
        if self.parts is not None:
            from .store import assemble

            results = self.out / "results.h5"
            try:
                if complete:
                    assemble(self.parts, results, specimens=complete)
                else:  # none to assemble: no stale results from an earlier run
                    results.unlink(missing_ok=True)
            except OSError as exc:
                raise _output_error(exc, results) from exc
        return RunResult(table[COLUMNS], flags, errors, notes, self.rules[1])


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
    The CSV files are UTF-8 with a byte-order mark (Excel opens them with the right encoding).

    Each file is written to a temporary name and renamed into place (never half-written), under
    the folder's lock (:func:`cytowhim.batch_lock.output_lock`), and ``run.json`` last: it marks
    the folder as holding one complete run. :class:`~cytowhim.errors.OutputError` (one line) when
    a file cannot be written."""
    import json

    from .batch_lock import output_lock
    from .store import QC_COLUMNS

    out = Path(out)
    with output_lock(out):
        try:
            _write_csv(result.printed(), out / "populations.csv")
            # with no flag, still a header (an empty file is not a CSV table)
            flags = pd.DataFrame(result.flags) if result.flags else pd.DataFrame(columns=QC_COLUMNS)
            _write_csv(flags, out / "qc_flags.csv")
            if result.errors:
                _write_csv(pd.DataFrame({"error": result.errors}), out / "errors.csv")
            else:
                (out / "errors.csv").unlink(missing_ok=True)
            if manifest is not None:
                info = {"manifest": str(Path(manifest).resolve())}
                if panels is not None:
                    info["panels"] = str(Path(panels.source).resolve()) if panels.source else ""
                    info["strategies"] = {
                        t: str(Path(p).resolve()) for t, p in panels.strategies.items()
                    }
                    if panels.extra_markers:  # --markers FILE, for cytowhim report's regating
                        info["markers"] = dict(panels.extra_markers)
                text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
                _write_bytes(text.encode("utf-8"), out / "run.json")
        except OSError as exc:
            raise _output_error(exc, out) from exc
    return out / "populations.csv"


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as UTF-8 CSV with a BOM (so Excel shows µ and other non-ASCII text as
    written), no text cell a spreadsheet would run as a formula
    (:func:`~cytowhim.spreadsheet.spreadsheet_safe`), atomically."""
    from .spreadsheet import spreadsheet_safe
    from .store import atomic_path

    with atomic_path(path) as tmp:
        spreadsheet_safe(frame).to_csv(tmp, index=False, encoding="utf-8-sig")


def _write_bytes(data: bytes, path: Path) -> None:
    from .store import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)

"""``cytowhim run``: gate every tube of a manifest, turn events into absolute counts with the
specimen's CBC (or counting beads), run the QC rules and flag values outside reference intervals.

:func:`gate_tube` is a pure function of its inputs (file, tube, strategy), so the same call can
run in a process pool later; :func:`run_manifest` assembles the population table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .executors import DASK_CONNECT_TIMEOUT, _one_line, run_tasks
from .manifest import read_manifest
from .panels import Panels
from .specimen_counts import COLUMNS, RATIOS, specimen_records
from .tube_gating import TubeOutcome, TubeTask, gate_tube, not_a_regular_file

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
    overrides: str | os.PathLike | None = None,
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
    rest goes on. ``overrides``: an overrides file (:mod:`gating.overrides`; e.g. the reviewed
    gates ``cytowhim review export-overrides`` writes): its gates are pinned in the files it
    names, and are part of those specimens' inputs. ValueError for ``jobs`` < 1;
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
    if overrides is not None:
        batch.set_overrides(overrides)
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
        self.overrides = ""  # an overrides file
        self.pins: dict = {}  # its content: FCS file name -> population -> pinned gate

    def set_overrides(self, path) -> None:
        from gating.limits import read_yaml

        self.overrides = str(Path(path).resolve())
        self.pins = read_yaml(Path(path), "overrides file") or {}

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
        key = _inputs_key(spec_tubes, self.panels, self.rules, self.reference, self.hashes)
        names = [Path(f).name for f in spec_tubes.file]
        pins = {n: self.pins[n] for n in names if n in self.pins}
        if not pins:  # without overrides, the key of earlier versions
            return key
        import json

        from .store import text_sha256

        return text_sha256(json.dumps([key, pins], sort_keys=True, default=str))

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
                        self.overrides,
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
            records = specimen_records(
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


def write_run(
    result: RunResult,
    out: str | os.PathLike,
    manifest: str | os.PathLike | None = None,
    panels: Panels | None = None,
    lab_files: dict[str, Any] | None = None,
) -> Path:
    """DIR/populations.csv, DIR/qc_flags.csv, (when something failed) DIR/errors.csv, and
    DIR/run.json naming the manifest, panel file and strategies (for ``cytowhim report``), and
    ``lab_files`` given (``{"qc": --qc FILE, "reference": --reference FILE}``, None: defaults)
    the lab's QC rules and reference intervals the run counted with (for ``cytowhim review``).
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
                for key, path in (lab_files or {}).items():
                    if path:
                        info[key] = str(Path(path).resolve())
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

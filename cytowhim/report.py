"""``cytowhim report``: one self-contained HTML page about a run folder.

Reads what ``cytowhim run`` wrote (``populations.csv``, ``qc_flags.csv``, ``errors.csv`` and
``run.json``, which names the manifest and the strategy file of each tube), gates every tube again
and draws each gate on its parent's events, then adds the QC flags, the Table 1 comparison and
reference-range plots. Images are PNGs embedded as base64 (matplotlib, Agg canvas); the page has
inline CSS and loads nothing else, so it can be mailed or archived as one file.

This module reads the run folder and puts the report together; the figures are drawn in
:mod:`cytowhim.report_plots` and the page is written in :mod:`cytowhim.report_html`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import CytowhimError
from .labels import display_name

# Names the report's callers and tests import from here (they moved with the split).
from .report_html import SEVERITY_ORDER as SEVERITY_ORDER
from .report_html import _gate_card as _gate_card
from .report_html import _page as _page
from .report_html import _qc_html as _qc_html
from .report_html import _Tube as _Tube
from .report_html import _tube_html as _tube_html
from .report_plots import BINS as BINS
from .report_plots import DPI as DPI
from .report_plots import GATE_FIGSIZE as GATE_FIGSIZE
from .report_plots import REFERENCE_FIGSIZE as REFERENCE_FIGSIZE
from .report_plots import _Painter as _Painter
from .report_plots import _reference_plots as _reference_plots

if TYPE_CHECKING:
    from gating.result import GatingResult

    from .compare import Comparison
    from .panels import Panels

__all__ = ["ReportError", "RunFolder", "build_report", "load_run", "main_report"]

SIMULATOR = "cytowhim simulator"  # $CYT of simulated files
_TEXT = ("specimen", "patient", "timepoint", "tube", "population", "parent", "base", "qc")
# text columns of newer run folders, kept as written ('' when empty) but not required
_OPTIONAL_TEXT = (
    "sex",
    "units",
    "reported",
    "qc_status",
    "reference_flag",
    "reference_band",
    "reference_source",
)
_NUMBERS = ("events", "percent_of_parent", "absolute_per_uL", "reference_low", "reference_high")
_FLAG_COLUMNS = ("specimen", "tube", "population", "rule", "severity", "message")

Progress = Callable[[str], None]


class ReportError(CytowhimError, ValueError):
    """A run folder cannot be reported on; the message names the folder and what is missing."""


# --- the run folder ------------------------------------------------------------------------------


@dataclass
class RunFolder:
    """What ``cytowhim run`` left in a folder, and where the run's inputs are."""

    folder: Path
    table: pd.DataFrame  # populations.csv
    flags: pd.DataFrame  # qc_flags.csv: specimen, tube, population, rule, severity, message
    errors: list[str]  # errors.csv: one line per input that failed
    manifest: Path
    panels: Panels


def load_run(run_dir: str | os.PathLike, manifest: str | os.PathLike | None = None) -> RunFolder:
    """The run folder's tables, its manifest and its panels (strategies as run.json names them).

    ``manifest`` overrides (or, for folders without run.json, stands in for) run.json's manifest.
    ReportError when populations.csv is missing, or run.json is missing and no manifest is given.
    """
    from .panels import Panels

    folder = Path(run_dir)
    populations = folder / "populations.csv"
    if not populations.is_file():
        where = "" if folder.is_dir() else " (no such folder)"
        raise ReportError(
            f"{folder}: no populations.csv{where}; write it with `cytowhim run MANIFEST --out {folder}`"
        )
    doc = _run_json(folder)
    if doc is None and manifest is None:
        raise ReportError(
            f"{folder}: no run.json (it names the run's manifest and strategies); "
            f"rerun `cytowhim run MANIFEST --out {folder}`"
        )
    doc = doc or {}
    manifest_path = _resolve(folder, manifest if manifest is not None else doc.get("manifest"))
    if manifest_path is None:
        raise ReportError(f"{folder / 'run.json'}: names no manifest")
    panels = Panels.load(_resolve(folder, doc.get("panels")))
    strategies = {
        str(t): str(_resolve(folder, p)) for t, p in (doc.get("strategies") or {}).items()
    }
    if strategies:
        panels = panels.with_strategies(strategies)
    if isinstance(doc.get("markers"), dict):  # the run's --markers FILE
        panels = panels.with_markers({str(k): str(v) for k, v in doc["markers"].items()})
    return RunFolder(
        folder=folder,
        table=_read_populations(populations),
        flags=_read_flags(folder / "qc_flags.csv"),
        errors=_read_errors(folder / "errors.csv"),
        manifest=manifest_path,
        panels=panels,
    )


def _run_json(folder: Path) -> dict[str, Any] | None:
    path = folder / "run.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected an object with manifest, strategies and panels")
    return doc


def _resolve(folder: Path, value: Any) -> Path | None:
    """A path from run.json (relative ones are relative to the run folder); None if empty."""
    if value is None or str(value).strip() == "":
        return None
    path = Path(str(value))
    return path if path.is_absolute() else folder / path


def _read_populations(path: Path) -> pd.DataFrame:
    try:
        text = {k: str for k in (*_TEXT, *_OPTIONAL_TEXT)}
        frame = pd.read_csv(path, dtype=text, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read as CSV ({exc})") from None
    missing = [c for c in ("specimen", "tube", "population", "events") if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: lacks column(s) {', '.join(missing)}")
    for c in _NUMBERS:
        if c in frame.columns:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    for c in _TEXT:
        if c not in frame.columns:
            frame[c] = ""
    return frame


def _read_flags(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        frame = pd.DataFrame(columns=list(_FLAG_COLUMNS))
    if not set(_FLAG_COLUMNS) <= set(frame.columns):
        frame = pd.DataFrame(columns=list(_FLAG_COLUMNS))
    return frame


def _read_errors(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        return []
    column = "error" if "error" in frame.columns else frame.columns[0]
    return [str(e) for e in frame[column] if str(e).strip()]


def _choose_timepoints(
    table: pd.DataFrame, baseline: str | None, peak: str | None
) -> tuple[str, str] | None:
    """(baseline, peak) to compare: as given, else 'baseline' and 'peak' if both exist."""
    if (baseline is None) != (peak is None):
        raise ReportError("give both baseline and peak timepoints, or neither")
    present = list(dict.fromkeys(table["timepoint"].astype(str)))
    if baseline is None or peak is None:
        return ("baseline", "peak") if {"baseline", "peak"} <= set(present) else None
    lacking = [t for t in (str(baseline), str(peak)) if t not in present]
    if lacking:
        raise ReportError(
            f"no rows with timepoint {', '.join(map(repr, lacking))} in populations.csv; "
            f"its timepoints: {', '.join(present) or 'none'}"
        )
    return str(baseline), str(peak)


# --- building the report -------------------------------------------------------------------------


def build_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
    baseline: str | None = None,
    peak: str | None = None,
    max_events: int = 20_000,
    progress: Progress | None = None,
) -> Path:
    """Write one self-contained HTML report of a run folder; returns its path.

    ``out``: default ``run_dir/report.html``. ``manifest``: for folders without run.json.
    ``baseline``/``peak``: timepoints of the Table 1 comparison (default 'baseline' and 'peak'
    when both exist; none otherwise). ``max_events``: events drawn per plot (a random subsample of
    the parent; counts and percentages always use every event). ``progress``: called with a short
    text per step. Tubes that cannot be gated again are shown as failures, not raised.
    """
    return _build(run_dir, out, manifest, baseline, peak, max_events, progress)[0]


def _build(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None,
    manifest: str | os.PathLike | None,
    baseline: str | None,
    peak: str | None,
    max_events: int,
    progress: Progress | None,
) -> tuple[Path, list[str]]:
    """(report path, the tubes that could not be gated again)."""
    from .manifest import read_manifest

    run = load_run(run_dir, manifest)
    timepoints = _choose_timepoints(run.table, baseline, peak)
    tubes_frame, problems = read_manifest(run.manifest)
    painter = _Painter()
    records = tubes_frame.to_dict("records")
    tubes = []
    for i, rec in enumerate(records, 1):
        if progress:
            progress(f"{i}/{len(records)} {rec['specimen']} {rec['tube']}")
        tubes.append(_render_tube(i, rec, run, painter, max(int(max_events), 1)))
    comparison = _comparison(run, timepoints, simulated=any(t.simulated for t in tubes))
    refs = []
    if comparison is not None:
        if progress:
            progress("reference plots")
        refs = _reference_plots(painter, run.table, comparison)
    page = _page(run, tubes_frame, tubes, [str(p) for p in problems], comparison, refs)
    target = Path(out) if out is not None else run.folder / "report.html"
    _write_atomic(target, page)
    return target, [t.error for t in tubes if t.error]


def _comparison(
    run: RunFolder, timepoints: tuple[str, str] | None, simulated: bool
) -> Comparison | None:
    from .compare import compare_timepoints

    if timepoints is None:
        return None
    return compare_timepoints(
        run.table, *timepoints, sources=run.panels.report, simulated=simulated
    )


def _write_atomic(path: Path, text: str) -> None:
    """Write text to path through a new temporary file in the same folder, then os.replace: a
    reader sees the old report or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # "x": new file, permissions by umask
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- gating a tube again -------------------------------------------------------------------------


def _gate(path: str, tube: str, panels: Panels) -> tuple[Any, GatingResult]:
    """(sample, gating result) of one tube file, the way ``cytowhim run`` gates it."""
    import warnings

    from .fcs import read_fcs

    strategy = panels.strategy(tube)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kept in result.notes
        sample = read_fcs(path)
        return sample, strategy.apply(sample, markers=panels.markers_for(tube))


def _render_tube(
    index: int, rec: dict[str, Any], run: RunFolder, painter: _Painter, max_events: int
) -> _Tube:
    """Gate one manifest tube again and render its section (an error card if that fails)."""
    from gating import GatingError

    from .errors import FCSError
    from .panels import PanelError

    t = _Tube(index, str(rec["specimen"]), str(rec["tube"]), str(rec["file"]))
    try:
        sample, result = _gate(t.file, t.tube, run.panels)
    except (FCSError, GatingError, PanelError, OSError) as exc:
        t.error = f"{t.file}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
        t.html = _tube_html(t, [], [])
        return t
    t.simulated = sample.keywords.get("$CYT", "") == SIMULATOR
    t.notes = list(result.notes)
    run_rows = run.table[(run.table["specimen"] == t.specimen) & (run.table["tube"] == t.tube)]
    cards = [
        _gate_card(painter, result, pop.name, t, run.flags, max_events)
        for pop in result.strategy.populations
    ]
    t.html = _tube_html(t, cards, _count_mismatches(result, run_rows))
    return t


def _count_mismatches(result: GatingResult, run_rows: pd.DataFrame) -> list[str]:
    """Populations whose count now differs from populations.csv (files or strategies changed)."""
    if run_rows.empty:
        return ["this tube has no rows in populations.csv (it failed in the run)"]
    events = dict(zip(run_rows["population"], run_rows["events"]))
    out = []
    for pop in result.strategy.populations:
        before = events.get(pop.name)
        if pop.name in result.failed:
            continue  # no count now: its card says why
        now = result.count(pop.name)
        if before is not None and not (isinstance(before, float) and math.isnan(before)):
            if int(before) != now:
                name = display_name(pop.name)
                out.append(f"{name}: {now:,} events now, {int(before):,} in populations.csv")
    return out


# --- command line --------------------------------------------------------------------------------


def main_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    baseline: str | None = None,
    peak: str | None = None,
    quiet: bool = False,
) -> int:
    """``cytowhim report DIR``: 0 written; 1 written, but some tubes could not be gated again
    (each named on stderr); 2 the folder cannot be reported on (one line on stderr)."""
    folder = Path(run_dir)
    for needed in ("populations.csv", "run.json"):
        if not (folder / needed).is_file():
            where = "" if folder.is_dir() else " (no such folder)"
            _stderr(
                f"{folder}: no {needed}{where}; write it with "
                f"`cytowhim run MANIFEST --out {folder}`"
            )
            return 2
    progress = None if quiet else (lambda text: print(f"report: {text}", file=sys.stderr))
    try:
        path, failed = _build(folder, out, None, baseline, peak, 20_000, progress)
    except CytowhimError as exc:
        _stderr(str(exc))
        return 2
    for message in failed:
        _stderr(message)
    if not quiet:
        print(path)
    return 1 if failed else 0


def _stderr(message: str) -> None:
    print(f"cytowhim: report: {message}", file=sys.stderr)

"""``cytowhim report``: one self-contained HTML page about a run folder.

Reads what ``cytowhim run`` wrote (``populations.csv``, ``qc_flags.csv``, ``errors.csv`` and
``run.json``, which names the manifest and the strategy file of each tube), gates every tube again
and draws each gate on its parent's events, then adds the QC flags, the Table 1 comparison and
reference-range plots. Images are PNGs embedded as base64 (matplotlib, Agg canvas); the page has
inline CSS and loads nothing else, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import CytowhimError

if TYPE_CHECKING:
    from gating.gates import Gate
    from gating.result import GatingResult

    from .compare import Comparison
    from .panels import Panels

__all__ = ["ReportError", "RunFolder", "build_report", "load_run", "main_report"]

GATE_FIGSIZE = (2.6, 2.4)  # inches; small, so a run of 18 tubes stays a few MB
REFERENCE_FIGSIZE = (3.0, 2.5)
DPI = 80
BINS = 96  # per axis of the density plots
SIMULATOR = "cytowhim simulator"  # $CYT of simulated files
SEVERITY_ORDER = {"fail": 0, "warn": 1, "info": 2}
_TEXT = ("specimen", "patient", "timepoint", "tube", "population", "parent", "base", "qc")
_NUMBERS = ("events", "percent_of_parent", "absolute_per_uL")
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
        frame = pd.read_csv(path, dtype={k: str for k in _TEXT}, keep_default_na=False)
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
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        frame = pd.DataFrame(columns=list(_FLAG_COLUMNS))
    if not set(_FLAG_COLUMNS) <= set(frame.columns):
        frame = pd.DataFrame(columns=list(_FLAG_COLUMNS))
    return frame


def _read_errors(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
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


@dataclass
class _Tube:
    """One manifest tube as rendered: its HTML section and what the summary needs."""

    index: int
    specimen: str
    tube: str
    file: str
    html: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)
    simulated: bool = False


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
        return sample, strategy.apply(sample)


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
        now = result.count(pop.name)
        if before is not None and not (isinstance(before, float) and math.isnan(before)):
            if int(before) != now:
                out.append(f"{pop.name}: {now:,} events now, {int(before):,} in populations.csv")
    return out


def _sample_index(mask: np.ndarray | None, n: int, max_events: int) -> np.ndarray:
    """Event indices of the parent (all events if mask is None), at most max_events of them."""
    idx = np.arange(n) if mask is None else np.flatnonzero(mask)
    if idx.size > max_events:
        rng = np.random.default_rng(0)  # the same subsample every time the report is built
        idx = np.sort(rng.choice(idx, max_events, replace=False))
    return idx


def _flags_of(flags: pd.DataFrame, specimen: str, tube: str, population: str) -> list[dict]:
    hit = flags[
        (flags["specimen"] == specimen)
        & (flags["tube"] == tube)
        & (flags["population"] == population)
    ]
    return sorted(hit.to_dict("records"), key=lambda f: SEVERITY_ORDER.get(f["severity"], 3))


def _gate_card(
    painter: _Painter,
    result: GatingResult,
    name: str,
    t: _Tube,
    flags: pd.DataFrame,
    max_events: int,
) -> str:
    """One population: its gate drawn on the parent's events, with caption and QC notes."""
    pop = result.strategy[name]
    gate = result.gates[name]
    n = result.count(name)
    parent_n = result.count(pop.parent) if pop.parent else result.n_events
    pct = 100.0 * n / parent_n if parent_n else math.nan
    parent = result.strategy[pop.parent].display if pop.parent else "all events"
    subtitle = f"{n:,} events · {_pct(pct)} of parent"
    pop_flags = _flags_of(flags, t.specimen, t.tube, name)
    caption = f"{pop.display} — {n:,} events, {_pct(pct)} of {parent}"
    if not gate.dimensions:
        body = f'<div class="nogate">{_e(_boolean_text(gate))}</div>'
    else:
        mask = result.mask(pop.parent) if pop.parent else None
        idx = _sample_index(mask, result.n_events, max_events)
        png = painter.gate_plot(result, name, idx, pop.display, subtitle)
        body = _img(png, caption, "gate", specimen=t.specimen, tube=t.tube, population=name)
    severity = pop_flags[0]["severity"] if pop_flags else ""
    notes = "".join(
        f'<div class="flag {_e(f["severity"])}">{_e(f["severity"])} {_e(f["rule"])}: '
        f"{_e(f['message'])}</div>"
        for f in pop_flags
    )
    pinned = result.pinned.get(name)
    if pinned:
        notes += f'<div class="flag warn">gate pinned by a reviewer: {_e(pinned)}</div>'
    return (
        f'<figure class="card {severity}">{body}<figcaption>'
        f'<span class="parent">gated on {_e(parent)}</span>{notes}</figcaption></figure>'
    )


def _boolean_text(gate: Gate) -> str:
    geo = gate.geometry()
    terms = [("not " if comp else "") + ref for ref, comp in geo.get("operands", [])]
    joined = f" {geo.get('op', '')} ".join(terms) or "(no operands)"
    return f"{type(gate).kind} gate: {joined}"


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f} %"


# --- drawing -------------------------------------------------------------------------------------


class _Painter:
    """Draws the report's small figures on one reused Agg figure and returns PNG bytes."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=GATE_FIGSIZE, dpi=DPI)
        FigureCanvasAgg(self.fig)

    def _axes(self, size: tuple[float, float], title: str, subtitle: str = "", width: float = 0.75):
        self.fig.clf()
        self.fig.set_size_inches(*size)
        self.fig.text(0.03, 0.96, title, fontsize=8, fontweight="bold", va="top")
        if subtitle:
            self.fig.text(0.03, 0.895, subtitle, fontsize=7, va="top", color="#333333")
        ax = self.fig.add_axes((0.2, 0.17, width, 0.64))
        ax.tick_params(labelsize=6.5, length=2.5, pad=1.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        return ax

    def _png(self) -> bytes:
        """The figure as a 128-colour palette PNG (a third of the size, same look)."""
        from PIL import Image  # matplotlib depends on Pillow

        self.fig.canvas.draw()
        image = Image.fromarray(np.asarray(self.fig.canvas.buffer_rgba())[..., :3])
        out = io.BytesIO()
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
        return out.getvalue()

    def gate_plot(
        self, result: GatingResult, name: str, idx: np.ndarray, title: str, subtitle: str
    ) -> bytes:
        """The gate of population ``name`` over its parent's events ``idx``."""
        gate = result.gates[name]
        ax = self._axes(GATE_FIGSIZE, title, subtitle)
        ev = result.evaluator
        assert ev is not None
        values = np.column_stack([ev.values(d, idx) for d in gate.dimensions])
        finite = np.all(np.isfinite(values), axis=1)
        labels = [_axis_label(result, d) for d in gate.dimensions]
        if not finite.any():
            ax.text(0.5, 0.5, "no events in the parent", ha="center", va="center", fontsize=7)
            ax.set_axis_off()
        else:
            _draw_gate(ax, gate, values[finite], labels, result.mask(name)[idx][finite])
        return self._png()

    def reference_plot(
        self, population: str, frame: pd.DataFrame, order: list[str], interval: Any
    ) -> bytes:
        """Counts of one population per patient per timepoint, with the reference band."""
        ax = self._axes(REFERENCE_FIGSIZE, population, "cells/µL", width=0.6)
        _draw_reference(ax, frame, order, interval)
        return self._png()


def _axis_label(result: GatingResult, dim: Any) -> str:
    if dim.transform is None:
        return dim.name
    tr = result.strategy.transforms.get(dim.transform)
    return f"{dim.name} ({type(tr).__name__.lower() if tr is not None else dim.transform})"


def _draw_gate(ax, gate: Gate, values: np.ndarray, labels: list[str], inside: np.ndarray) -> None:
    """Dispatch on the applied gate's type: range histogram, or density with the outline."""
    from gating.adaptive import MixtureRegion
    from gating.gates import EllipsoidGate, PolygonGate, RectangleGate

    if isinstance(gate, MixtureRegion):
        logs = np.log10(np.clip(values[:, :2], 1.0, None))
        _density(ax, logs, [f"{lab} (log10)" for lab in labels[:2]])
        for j in gate.chosen:
            mean = np.asarray(gate.means[j])[:2]
            cov = np.asarray(gate.covariances[j])[:2, :2]
            _outline(ax, _ellipse(mean, cov, 2.0))
    elif values.shape[1] == 1:
        if isinstance(gate, RectangleGate):
            _range(ax, values[:, 0], labels[0], gate.mins[0], gate.maxs[0])
        elif isinstance(gate, EllipsoidGate):
            half = math.sqrt(gate.distance_square * gate.covariance[0][0])
            _range(ax, values[:, 0], labels[0], gate.mean[0] - half, gate.mean[0] + half)
        else:
            _range(ax, values[:, 0], labels[0], None, None, inside)
    else:
        lim = _density(ax, values[:, :2], labels[:2], _gate_extent(gate))
        if isinstance(gate, RectangleGate) and len(gate.dimensions) == 2:
            _outline(ax, _rectangle(gate.mins, gate.maxs, lim))
        elif isinstance(gate, PolygonGate):
            _outline(ax, np.asarray(gate.vertices + gate.vertices[:1]))
        elif isinstance(gate, EllipsoidGate):
            mean, cov = np.asarray(gate.mean)[:2], np.asarray(gate.covariance)[:2, :2]
            _outline(ax, _ellipse(mean, cov, math.sqrt(gate.distance_square)))
        else:  # custom gates: show which events they took
            pts = values[inside]
            ax.plot(pts[:, 0], pts[:, 1], ",", color="black", alpha=0.6)


def _gate_extent(gate: Gate) -> np.ndarray | None:
    """Finite corner points of a gate's geometry, so the view includes the gate."""
    from gating.gates import EllipsoidGate, PolygonGate, RectangleGate

    if isinstance(gate, PolygonGate):
        return np.asarray(gate.vertices)
    if isinstance(gate, RectangleGate):
        pts = [(lo, hi) for lo, hi in zip(gate.mins, gate.maxs)]
        corners = [[v for v in p if v is not None] for p in pts]
        if all(corners):
            return np.array([[x, y] for x in corners[0] for y in corners[1]])
    if isinstance(gate, EllipsoidGate):
        return _ellipse(
            np.asarray(gate.mean)[:2],
            np.asarray(gate.covariance)[:2, :2],
            math.sqrt(gate.distance_square),
        )
    return None


def _limits(x: np.ndarray, extra: np.ndarray | None = None) -> tuple[float, float]:
    """A robust view of x (0.1-99.9 %), widened to the gate's points when they are near."""
    lo, hi = (float(v) for v in np.quantile(x, [0.001, 0.999]))
    span = hi - lo or max(abs(hi), 1.0)
    if extra is not None and extra.size:
        e = extra[np.isfinite(extra)]
        e = e[(e >= lo - span) & (e <= hi + span)]
        if e.size:
            lo, hi = min(lo, float(e.min())), max(hi, float(e.max()))
            span = hi - lo or span
    return lo - 0.04 * span, hi + 0.04 * span


def _density(
    ax, xy: np.ndarray, labels: list[str], extent: np.ndarray | None = None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Pseudo-colour 2-D histogram (log colour scale, empty bins white); returns the limits."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    xlim = _limits(xy[:, 0], None if extent is None else extent[:, 0])
    ylim = _limits(xy[:, 1], None if extent is None else extent[:, 1])
    counts, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=BINS, range=[xlim, ylim])
    image = np.ma.masked_less(counts.T, 1)
    cmap = colormaps["turbo"].with_extremes(bad="white")
    norm = LogNorm(vmin=1, vmax=max(2.0, float(counts.max())))
    ax.imshow(
        image,
        origin="lower",
        extent=(*xlim, *ylim),
        aspect="auto",
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
    )
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel(labels[0], fontsize=7, labelpad=1)
    ax.set_ylabel(labels[1], fontsize=7, labelpad=1)
    _compact_ticks(ax)
    return xlim, ylim


def _range(
    ax,
    x: np.ndarray,
    label: str,
    lo: float | None,
    hi: float | None,
    inside: np.ndarray | None = None,
) -> None:
    """Histogram of one dimension with the gate's threshold line(s) and its side shaded."""
    xlim = _limits(x, np.array([v for v in (lo, hi) if v is not None], dtype=float))
    ax.hist(x, bins=BINS, range=xlim, histtype="stepfilled", color="#7a8ca3", linewidth=0)
    if inside is not None:  # custom gate: the events it took, on top
        ax.hist(x[inside], bins=BINS, range=xlim, histtype="stepfilled", color="#1f4e79")
    for v in (lo, hi):
        if v is not None:
            ax.axvline(v, color="#c0392b", linewidth=1.3)
    if lo is not None or hi is not None:
        a = lo if lo is not None else xlim[0]
        b = hi if hi is not None else xlim[1]
        ax.axvspan(a, b, color="#c0392b", alpha=0.08, linewidth=0)
    ax.set_xlim(xlim)
    ax.set_xlabel(label, fontsize=7, labelpad=1)
    ax.set_ylabel("events", fontsize=7, labelpad=1)
    _compact_ticks(ax)


def _outline(ax, pts: np.ndarray) -> None:
    ax.plot(pts[:, 0], pts[:, 1], color="black", linewidth=1.3, solid_joinstyle="miter")


def _rectangle(
    mins: Iterable[float | None], maxs: Iterable[float | None], lim: tuple
) -> np.ndarray:
    """Closed outline of a 2-D rectangle; open sides run past the view's edge."""
    (xa, xb), (ya, yb) = ((lo - (hi - lo), hi + (hi - lo)) for lo, hi in lim)
    (x0, y0), (x1, y1) = (
        [v if v is not None else d for v, d in zip(mins, (xa, ya))],
        [v if v is not None else d for v, d in zip(maxs, (xb, yb))],
    )
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)


def _ellipse(mean: np.ndarray, cov: np.ndarray, radius: float, n: int = 90) -> np.ndarray:
    """Points of the ellipse at Mahalanobis distance ``radius`` around mean."""
    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)])
    return (mean[:, None] + vecs @ (np.sqrt(np.clip(vals, 0, None))[:, None] * circle) * radius).T


def _compact_ticks(ax) -> None:
    """Tick labels like 50k for scatter channels (values up to 262144)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    def fmt(v: float, _pos: Any) -> str:
        return f"{v / 1000:g}k" if abs(v) >= 10_000 else f"{v:g}"

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(4))
        axis.set_major_formatter(FuncFormatter(fmt))


# --- reference-range plots -----------------------------------------------------------------------


def _reference_plots(
    painter: _Painter, table: pd.DataFrame, comparison: Comparison
) -> list[tuple[str, bytes]]:
    """(population, PNG) per Table 1 population with counts: patients x timepoints."""
    from .reference import ReferenceIntervals

    reference = ReferenceIntervals.bundled()
    order = _timepoint_order(table, comparison.baseline, comparison.peak)
    out = []
    for pop, tube in zip(comparison.table["population"], comparison.table["tube"]):
        rows = table[(table["population"] == pop) & (table["tube"] == tube)]
        rows = rows[np.isfinite(rows["absolute_per_uL"].astype(float))]
        if rows.empty:
            continue
        interval = reference.lookup(pop)
        out.append((pop, painter.reference_plot(pop, rows, order, interval)))
    return out


def _timepoint_order(table: pd.DataFrame, baseline: str, peak: str) -> list[str]:
    rest = [t for t in dict.fromkeys(table["timepoint"].astype(str)) if t not in (baseline, peak)]
    return [baseline, peak, *rest]


def _draw_reference(ax, frame: pd.DataFrame, order: list[str], interval: Any) -> None:
    """Points per patient per timepoint (▲ above, ▼ below the interval), band = interval."""
    patients = list(dict.fromkeys(frame["patient"].astype(str)))
    colours = _colours(len(patients))
    values = frame["absolute_per_uL"].astype(float).to_numpy()
    low, high = (math.nan, math.nan) if interval is None else (float(v) for v in interval)
    for k, patient in enumerate(patients):
        mine = frame[frame["patient"].astype(str) == patient]
        x = [order.index(tp) + _jitter(k, len(patients)) for tp in mine["timepoint"].astype(str)]
        y = mine["absolute_per_uL"].astype(float).to_numpy()
        if len(x) > 1:
            ax.plot(x, y, color=colours[k], linewidth=0.8, alpha=0.6)
        for xi, yi in zip(x, y):
            marker = "^" if yi > high else "v" if yi < low else "o"
            ax.plot(xi, yi, marker, color=colours[k], markersize=4.5)
    for j, tp in enumerate(order):
        at = values[frame["timepoint"].astype(str).to_numpy() == tp]
        if at.size:
            ax.plot([j - 0.25, j + 0.25], [at.mean()] * 2, color="black", linewidth=1.2)
    _reference_band(ax, values, low, high)
    shown = [j for j, tp in enumerate(order) if tp in set(frame["timepoint"].astype(str))]
    ax.set_xticks(shown, [order[j] for j in shown], fontsize=7)
    ax.set_xlim(min(shown) - 0.5, max(shown) + 0.5)
    if len(patients) <= 12:
        _patient_legend(ax, patients, colours)


def _patient_legend(ax, patients: list[str], colours: list) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, markersize=4) for c in colours]
    ax.legend(
        handles,
        patients,
        fontsize=6,
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        handlelength=0.6,
        handletextpad=0.4,
        borderaxespad=0,
    )


def _reference_band(ax, values: np.ndarray, low: float, high: float) -> None:
    """Shade the reference interval; log y when every value is positive and they span > 8x."""
    bounds = [v for v in (low, high) if math.isfinite(v)]
    points = np.concatenate([values, bounds])
    positive = points[points > 0]
    log = positive.size == points.size and positive.max() / positive.min() > 8
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        lo, hi = positive.min() / 1.6, positive.max() * 1.6
    else:
        span = (points.max() - points.min()) or max(abs(points.max()), 1.0)
        lo, hi = min(0.0, points.min() - 0.1 * span), points.max() + 0.1 * span
    ax.set_ylim(lo, hi)
    if bounds:
        a = low if math.isfinite(low) else lo
        b = high if math.isfinite(high) else hi
        ax.axhspan(a, b, color="#2e8b57", alpha=0.15, linewidth=0, zorder=0)


def _jitter(k: int, n: int) -> float:
    return 0.0 if n <= 1 else (k / (n - 1) - 0.5) * 0.3


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]


# --- HTML ----------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _img(png: bytes, alt: str, cls: str, **data: str) -> str:
    attrs = "".join(f' data-{k}="{_e(v)}"' for k, v in data.items())
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{_e(alt)}"{attrs} src="data:image/png;base64,{b64}">'


def _anchor(index: int) -> str:
    return f"tube-{index}"


def _tube_html(t: _Tube, cards: list[str], mismatches: list[str]) -> str:
    head = (
        f'<section class="tube" id="{_anchor(t.index)}"><h3>Tube {_e(t.tube)} '
        f'<span class="file">{_e(Path(t.file).name)}</span></h3>'
    )
    if t.error:
        return head + f'<p class="error">Could not be gated: {_e(t.error)}</p></section>'
    notes = "".join(f'<li class="warn">{_e(n)}</li>' for n in mismatches)
    notes += "".join(f"<li>{_e(n)}</li>" for n in t.notes)
    listing = f'<ul class="notes">{notes}</ul>' if notes else ""
    return head + listing + f'<div class="grid">{"".join(cards)}</div></section>'


def _page(
    run: RunFolder,
    tubes_frame: pd.DataFrame,
    tubes: list[_Tube],
    problems: list[str],
    comparison: Comparison | None,
    refs: list[tuple[str, bytes]],
) -> str:
    from . import __version__

    simulated = [t for t in tubes if t.simulated]
    title = f"Flow cytometry run report: {run.folder.resolve().name}"
    banner = (
        f'<p class="simulated">Simulated specimens (synthetic data), not patient results: '
        f"{len(simulated)} of {len(tubes)} tubes.</p>"
        if simulated
        else ""
    )
    body = [
        '<header><div class="brand">cytowhim</div>',
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Run folder {_e(run.folder.resolve())} · manifest {_e(run.manifest)} '
        f"· generated {datetime.now():%Y-%m-%d %H:%M} · cytowhim {_e(__version__)}</p>",
        banner,
        "</header>",
        '<div class="layout">',
        _nav(tubes, comparison is not None and bool(refs)),
        "<main>",
        _summary_html(run, tubes_frame, tubes, problems),
        _qc_html(run),
        _table1_html(comparison, run.table),
        _reference_html(refs),
        _specimens_html(tubes_frame, tubes),
        "</main></div>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body>\n</html>\n"
    )


def _nav(tubes: list[_Tube], has_refs: bool) -> str:
    links = [("summary", "Summary"), ("qc", "QC flags"), ("table1", "Table 1")]
    if has_refs:
        links.append(("reference", "Reference ranges"))
    items = [f'<li><a href="#{a}">{_e(label)}</a></li>' for a, label in links]
    by_specimen: dict[str, list[_Tube]] = {}
    for t in tubes:
        by_specimen.setdefault(t.specimen, []).append(t)
    items.append('<li class="sub">Specimens</li>')
    for spec, spec_tubes in by_specimen.items():
        links_t = " ".join(
            f'<a class="{"bad" if t.error else ""}" href="#{_anchor(t.index)}">{_e(t.tube)}</a>'
            for t in spec_tubes
        )
        items.append(f'<li class="spec"><div>{_e(spec)}</div>{links_t}</li>')
    return f"<nav><ul>{''.join(items)}</ul></nav>"


def _summary_html(
    run: RunFolder, tubes_frame: pd.DataFrame, tubes: list[_Tube], problems: list[str]
) -> str:
    severities = run.flags["severity"].value_counts().to_dict()
    failed = [t for t in tubes if t.error]
    tiles = [
        ("specimens", tubes_frame["specimen"].nunique() if len(tubes_frame) else 0, ""),
        ("tubes", len(tubes), ""),
        ("tubes gated", len(tubes) - len(failed), "bad" if failed else ""),
        ("QC flags", len(run.flags), "bad" if severities.get("fail") else ""),
        ("failures", len(run.errors), "bad" if run.errors else ""),
    ]
    tile_html = "".join(
        f'<div class="tile {cls}"><div class="n">{n}</div><div class="l">{_e(label)}</div></div>'
        for label, n, cls in tiles
    )
    split = " · ".join(
        f'<span class="sev {s}">{severities.get(s, 0)} {s}</span>' for s in SEVERITY_ORDER
    )
    parts = [
        '<section id="summary"><h2>Summary</h2>',
        f'<div class="tiles">{tile_html}</div>',
        f"<p>QC flags by severity: {split}.</p>",
    ]
    failures = [*run.errors, *(t.error for t in failed if t.error not in run.errors)]
    failures += [p for p in problems if p not in failures]
    if failures:
        parts.append('<h3>Failures</h3><ul class="errors">')
        parts += [f"<li>{_e(f)}</li>" for f in failures]
        parts.append("</ul>")
    notes = [f"{t.specimen} {t.tube}: {n}" for t in tubes for n in t.notes]
    if notes:
        parts.append(f"<details><summary>Gating notes ({len(notes)})</summary><ul>")
        parts += [f"<li>{_e(n)}</li>" for n in notes]
        parts.append("</ul></details>")
    parts.append("</section>")
    return "".join(parts)


def _qc_html(run: RunFolder) -> str:
    """Rows of populations.csv with QC notes, worst first; fail rows in red."""
    table = run.table
    rows = table[table["qc"].astype(str).str.strip() != ""]
    head = '<section id="qc"><h2>QC flags</h2>'
    if rows.empty:
        return head + '<p class="ok">No population has a QC note.</p></section>'
    worst = {
        (f["specimen"], f["tube"], f["population"]): f["severity"]
        for f in sorted(
            run.flags.to_dict("records"),
            key=lambda f: -SEVERITY_ORDER.get(f["severity"], 3),
        )
    }
    records = rows.to_dict("records")
    records.sort(
        key=lambda r: SEVERITY_ORDER.get(
            worst.get((r["specimen"], r["tube"], r["population"]), ""), 3
        )
    )
    cells = []
    for r in records:
        sev = worst.get((r["specimen"], r["tube"], r["population"]), "")
        events = "" if pd.isna(r["events"]) else f"{int(r['events']):,}"
        cells.append(
            f'<tr class="{sev}"><td>{_e(sev)}</td><td>{_e(r["specimen"])}</td>'
            f"<td>{_e(r['tube'])}</td><td>{_e(r['population'])}</td>"
            f'<td class="n">{events}</td><td>{_e(r["qc"])}</td></tr>'
        )
    return (
        head + '<table class="qc"><thead><tr><th>severity</th><th>specimen</th><th>tube</th>'
        "<th>population</th><th>events</th><th>QC notes</th></tr></thead><tbody>"
        + "".join(cells)
        + "</tbody></table></section>"
    )


def _table1_html(comparison: Comparison | None, table: pd.DataFrame) -> str:
    head = '<section id="table1"><h2>Table 1: baseline vs peak</h2>'
    if comparison is None:
        seen = ", ".join(dict.fromkeys(table["timepoint"].astype(str))) or "none"
        return (
            head + f"<p>No comparison: the run has no 'baseline' and 'peak' timepoints "
            f"(it has: {_e(seen)}); give baseline and peak to compare two of them.</p></section>"
        )
    page = comparison.to_html()
    inner = page.partition("<body>")[2].rpartition("</body>")[0]
    inner = inner.replace("<h1>", '<p class="t1title">').replace("</h1>", "</p>")
    inner = inner.replace("<h2>", "<h4>").replace("</h2>", "</h4>")
    return head + f'<div class="table1">{inner}</div></section>'


def _reference_html(refs: list[tuple[str, bytes]]) -> str:
    if not refs:
        return ""
    figures = "".join(
        f'<figure class="card ref">{_img(png, f"{pop}: counts vs reference interval", "refplot", population=pop)}</figure>'
        for pop, png in refs
    )
    return (
        '<section id="reference"><h2>Counts against reference intervals</h2>'
        '<p class="legend">Absolute counts (cells/µL) per patient and timepoint; shaded: '
        "reference interval (Table 1, healthy adults); ▲ above, ▼ below it; bar: mean. "
        "Log scale where counts span more than a factor of 8.</p>"
        f'<div class="grid">{figures}</div></section>'
    )


def _specimens_html(tubes_frame: pd.DataFrame, tubes: list[_Tube]) -> str:
    parts = ['<section id="specimens"><h2>Gates per specimen and tube</h2>']
    parts.append(
        '<p class="legend">Each gate over its parent\'s events (pseudo-colour density, '
        "log colour scale; at most a subsample of the parent is drawn). Black outline: the gate "
        "as applied to this file; red line: a threshold, shaded on the gated side; ellipses: "
        "2-SD contours of the scatter clusters that make up the population.</p>"
    )
    by_specimen: dict[str, list[_Tube]] = {}
    for t in tubes:
        by_specimen.setdefault(t.specimen, []).append(t)
    info = tubes_frame.drop_duplicates("specimen").set_index("specimen")
    for spec, spec_tubes in by_specimen.items():
        rec = info.loc[spec] if spec in info.index else None
        who = (
            f' <span class="who">patient {_e(rec["patient"])} · {_e(rec["timepoint"])}</span>'
            if rec is not None
            else ""
        )
        parts.append(f'<article class="specimen"><h2 class="spec">{_e(spec)}{who}</h2>')
        parts += [t.html for t in spec_tubes]
        parts.append("</article>")
    parts.append("</section>")
    return "\n".join(parts)


_CSS = """
:root{--ink:#1d2733;--muted:#5b6776;--line:#d8dee6;--bg:#f5f7fa;--accent:#1f4e79;
--fail:#b3261e;--failbg:#fdecea;--warn:#8a5300;--warnbg:#fff4de;--info:#2f5d8a;--infobg:#eaf1f8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:var(--bg)}
header{background:#fff;border-bottom:3px solid var(--accent);padding:14px 24px}
header h1{margin:2px 0 4px;font-size:22px}
.brand{font-size:12px;letter-spacing:.12em;text-transform:uppercase;color:var(--accent);
font-weight:700}
.meta{margin:0;color:var(--muted);font-size:12px;word-break:break-all}
.simulated{display:inline-block;margin:8px 0 0;padding:4px 10px;border:1px solid #a40;
color:#a40;background:#fff6ef;font-weight:600;border-radius:4px}
.layout{display:flex;align-items:flex-start}
nav{position:sticky;top:0;flex:0 0 190px;max-height:100vh;overflow:auto;padding:16px 10px 16px 20px;
font-size:13px}
nav ul{list-style:none;margin:0;padding:0}nav li{margin:3px 0}
nav a{color:var(--accent);text-decoration:none}nav a:hover{text-decoration:underline}
nav .sub{margin-top:12px;color:var(--muted);font-size:11px;text-transform:uppercase;
letter-spacing:.08em}
nav .spec{margin:5px 0}nav .spec div{font-weight:600}nav .spec a{margin:0 6px 0 8px}
nav a.bad{color:var(--fail);font-weight:700}
main{flex:1;min-width:0;padding:8px 24px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 18px 14px;
margin:14px 0}
h2{font-size:18px;margin:6px 0 10px}h3{font-size:15px;margin:14px 0 6px}
.tiles{display:flex;flex-wrap:wrap;gap:10px}
.tile{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px;background:#fbfcfd}
.tile .n{font-size:24px;font-weight:700}.tile .l{color:var(--muted);font-size:12px}
.tile.bad{border-color:var(--fail);background:var(--failbg)}.tile.bad .n{color:var(--fail)}
.sev{padding:1px 6px;border-radius:3px}.sev.fail{background:var(--failbg);color:var(--fail)}
.sev.warn{background:var(--warnbg);color:var(--warn)}.sev.info{background:var(--infobg);
color:var(--info)}
ul.errors li{color:var(--fail);font-weight:600}
.error{color:var(--fail);font-weight:600;background:var(--failbg);padding:8px 10px;border-radius:4px}
.ok{color:#2e7d32}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}td.n{text-align:right;white-space:nowrap}
table.qc td:nth-child(-n+4){white-space:nowrap}
table.qc tr.fail td{background:var(--failbg);color:var(--fail);font-weight:600}
table.qc tr.warn td{background:var(--warnbg);color:var(--warn)}
table.qc tr.info td:first-child{color:var(--info)}
.table1 .t1title{font-weight:600;margin:4px 0}.table1 table{margin:6px 0}
.legend{color:var(--muted);font-size:12px;margin:2px 0 8px}
.grid{display:flex;flex-wrap:wrap;gap:8px}
figure.card{margin:0;width:212px;border:1px solid var(--line);border-radius:4px;background:#fff;
padding:2px}
figure.card.ref{width:auto}
figure.card img{display:block}
figure.card.fail{border:2px solid var(--fail)}figure.card.warn{border:2px solid #d89a2b}
figure.card.info{border-color:#9db7d3}
figcaption{font-size:11px;color:var(--muted);padding:0 4px 3px}
.flag{margin-top:2px;padding:1px 4px;border-radius:3px;font-size:10.5px}
.flag.fail{background:var(--failbg);color:var(--fail);font-weight:600}
.flag.warn{background:var(--warnbg);color:var(--warn)}.flag.info{background:var(--infobg);color:var(--info)}
.nogate{width:208px;height:192px;display:flex;align-items:center;justify-content:center;
text-align:center;color:var(--muted);font-size:12px;padding:10px}
article.specimen{border-top:2px solid var(--line);margin-top:18px}
h2.spec{margin-top:14px}.who{color:var(--muted);font-weight:400;font-size:14px}
.file{color:var(--muted);font-weight:400;font-size:12px}
section.tube{border:none;padding:0;margin:6px 0 14px}
ul.notes{margin:0 0 6px;padding-left:18px;font-size:12px;color:var(--muted)}
ul.notes li.warn{color:var(--warn)}
@media print{nav{display:none}body{background:#fff}section{border:none}
article.specimen{break-before:page}}
"""


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

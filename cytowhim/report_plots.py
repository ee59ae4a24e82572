"""The figures of ``cytowhim report``: each gate over its parent's events, and the counts of the
Table 1 populations against their reference intervals.

PNG bytes from one reused matplotlib figure (Agg canvas). matplotlib is imported inside the
functions that draw, never at module import, so the command line starts without it.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .labels import display_name

if TYPE_CHECKING:
    from gating.gates import Gate
    from gating.result import GatingResult

    from .compare import Comparison

GATE_FIGSIZE = (2.6, 2.4)  # inches; small, so a run of 18 tubes stays a few MB
REFERENCE_FIGSIZE = (3.0, 2.5)
DPI = 80
BINS = 96  # per axis of the density plots
GRID = 400  # per axis of the grid a fitted region's outline is traced on
TABLE1_SOURCE = "Table 1, healthy adults"  # the bundled intervals, for folders that record none


def _sample_index(mask: np.ndarray | None, n: int, max_events: int) -> np.ndarray:
    """Event indices of the parent (all events if mask is None), at most max_events of them."""
    idx = np.arange(n) if mask is None else np.flatnonzero(mask)
    if idx.size > max_events:
        rng = np.random.default_rng(0)  # the same subsample every time the report is built
        idx = np.sort(rng.choice(idx, max_events, replace=False))
    return idx


# --- gate plots ----------------------------------------------------------------------------------


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
        linear = [_is_scatter(result, d) for d in gate.dimensions]
        if not finite.any():
            ax.text(0.5, 0.5, "no events in the parent", ha="center", va="center", fontsize=7)
            ax.set_axis_off()
        else:
            inside = result.mask(name)[idx][finite]
            _draw_gate(ax, gate, values[finite], labels, inside, linear)
        return self._png()

    def reference_plot(
        self,
        title: str,
        frame: pd.DataFrame,
        order: list[str],
        limits: np.ndarray,
        subtitle: str = "cells/µL",
    ) -> bytes:
        """Counts of one population per patient per timepoint (rows of ``frame``), each with
        its reference interval (``limits``: low, high per row; NaN for an open side)."""
        ax = self._axes(REFERENCE_FIGSIZE, title, subtitle, width=0.6)
        _draw_reference(ax, frame, order, np.asarray(limits, dtype=float).reshape(-1, 2))
        return self._png()


SCATTER = re.compile(r"\s*(FSC|SSC)", re.IGNORECASE)


def _is_scatter(result: GatingResult, dim: Any) -> bool:
    """Whether a dimension is a scatter channel (FSC*, SSC*) without a transform: drawn on a
    linear axis, as labs look at scatter (a fitted mixture's log10 scale included)."""
    if dim.transform is not None:
        return False
    names = [dim.name]
    resolved = getattr(result, "resolved", None)  # marker name -> channel, where resolved
    if isinstance(resolved, dict) and dim.name in resolved:
        names.append(str(resolved[dim.name]))
    return any(SCATTER.match(str(n)) for n in names)


def _axis_label(result: GatingResult, dim: Any) -> str:
    if dim.transform is None:
        return dim.name
    tr = result.strategy.transforms.get(dim.transform)
    return f"{dim.name} ({type(tr).__name__.lower() if tr is not None else dim.transform})"


def _draw_gate(
    ax,
    gate: Gate,
    values: np.ndarray,
    labels: list[str],
    inside: np.ndarray,
    linear: list[bool] | None = None,
) -> None:
    """Dispatch on the applied gate's type: range histogram, or density with the outline.
    ``linear``: per dimension, whether it is a scatter channel (see :func:`_is_scatter`)."""
    from gating.adaptive import MixtureRegion
    from gating.gates import EllipsoidGate, PolygonGate, RectangleGate

    if isinstance(gate, MixtureRegion) and values.shape[1] >= 2:
        linear2 = tuple(bool(v) for v in (linear or [False, False])[:2])
        plotted = _mixture_coordinates(values[:, :2], linear2)
        names = [lab if lin else f"{lab} (log10)" for lab, lin in zip(labels[:2], linear2)]
        if values.shape[1] == 2:
            # traced over a wide view first, so that the view can take in the region
            wide = tuple(_limits(plotted[:, k], spread=1.0) for k in range(2))
            lines = _region_outline(gate, wide, linear2)
            extent = np.concatenate(lines) if lines else None
            lim = _density(ax, plotted, names, extent)
            for line in _region_outline(gate, lim, linear2):
                _outline(ax, line)
        else:  # a region in more than two dimensions has no outline here: its events
            _density(ax, plotted, names)
            pts = plotted[inside]
            ax.plot(pts[:, 0], pts[:, 1], ",", color="black", alpha=0.6)
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


def _limits(
    x: np.ndarray, extra: np.ndarray | None = None, spread: float = 0.0
) -> tuple[float, float]:
    """A robust view of x (0.1-99.9 %), widened to the gate's points when they are near
    (``spread``: widened by that many spans on each side, for a first look)."""
    lo, hi = (float(v) for v in np.quantile(x, [0.001, 0.999]))
    span = hi - lo or max(abs(hi), 1.0)
    if spread:
        return lo - spread * span, hi + spread * span
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


def _mixture_coordinates(values: np.ndarray, linear: tuple[bool, bool]) -> np.ndarray:
    """A mixture region's two dimensions as plotted: scatter channels as they are (linear
    axes), others on the region's own scale, log10 of values clipped at 1."""
    out = np.asarray(values, dtype=np.float64).copy()
    for k, lin in enumerate(linear):
        if not lin:
            out[:, k] = np.log10(np.clip(out[:, k], 1.0, None))
    return out


def _region_outline(
    gate: Any, lim: tuple[tuple[float, float], tuple[float, float]], linear: tuple[bool, bool]
) -> list[np.ndarray]:
    """The boundary of a 2-D mixture region within the view ``lim``, in plot coordinates (see
    :func:`_mixture_coordinates`): the region's own test on a fine grid of the view, mapped to
    values (10**u on log10 axes), contoured. It is the region the gate applies (the chosen
    clusters within ``max_distance2``, cut where another cluster is more probable), whatever
    the axes."""
    import contourpy

    (x0, x1), (y0, y1) = lim
    xs = np.linspace(x0, x1, GRID + 1)
    ys = np.linspace(y0, y1, GRID + 1)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    for k, lin in enumerate(linear):
        if not lin:
            grid[:, k] = np.power(10.0, grid[:, k])
    inside = gate.contains(grid).reshape(gx.shape).astype(np.float64)
    lines = contourpy.contour_generator(xs, ys, inside).lines(0.5)
    return [np.asarray(line, dtype=np.float64) for line in lines if len(line) > 1]


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
    """Tick labels like 50K, 100K for scatter channels (values up to 262144)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    def fmt(v: float, _pos: Any) -> str:
        return f"{v / 1000:g}K" if abs(v) >= 10_000 else f"{v:g}"

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]))
        axis.set_major_formatter(FuncFormatter(fmt))


# --- reference-range plots -----------------------------------------------------------------------


@dataclass
class _RefPlot:
    """One population's counts against its reference interval(s)."""

    population: str  # as in populations.csv (ASCII); display_name() it for people
    png: bytes
    source: str  # where the interval(s) come from
    bands: list[str] = field(default_factory=list)  # per patient, when the interval differs


def _reference_plots(
    painter: _Painter, table: pd.DataFrame, comparison: Comparison
) -> list[_RefPlot]:
    """One plot per Table 1 population with counts: patients x timepoints, each count against
    the interval populations.csv recorded for it (``reference_low``/``reference_high``), else,
    for run folders that record none, the bundled Table 1 interval. Ratio rows are not counts
    and are left out."""
    recorded = _recorded(table)
    reference = None
    if not recorded:
        from .reference import ReferenceIntervals

        reference = ReferenceIntervals.bundled()
    order = _timepoint_order(table, comparison.baseline, comparison.peak)
    out = []
    for pop, tube in zip(comparison.table["population"], comparison.table["tube"]):
        rows = table[(table["population"] == pop) & (table["tube"] == tube)]
        if "units" in rows.columns:
            rows = rows[rows["units"].astype(str).str.strip() != "ratio"]
        counts = pd.to_numeric(rows["absolute_per_uL"], errors="coerce").astype(float)
        rows = rows[np.isfinite(counts.to_numpy())]
        if rows.empty:
            continue
        if reference is not None:
            interval = reference.lookup(pop)
            pair = (math.nan, math.nan) if interval is None else tuple(map(float, interval))
            limits = np.tile(np.asarray(pair, dtype=float), (len(rows), 1))
            source = TABLE1_SOURCE
        else:
            limits = np.column_stack(
                [_numbers(rows["reference_low"]), _numbers(rows["reference_high"])]
            )
            source = "; ".join(_texts(rows, "reference_source"))
        shared = _one_interval(limits) is not None
        subtitle = "cells/µL" if shared else "cells/µL · interval varies by age/sex"
        png = painter.reference_plot(display_name(pop), rows, order, limits, subtitle)
        bands = [] if shared else _band_texts(rows, limits)
        out.append(_RefPlot(pop, png, source, bands))
    return out


def _recorded(table: pd.DataFrame) -> bool:
    """Whether populations.csv records each row's interval (runs since age/sex bands)."""
    columns = ("reference_low", "reference_high")
    if not all(c in table.columns for c in columns):
        return False
    return any(np.isfinite(_numbers(table[c])).any() for c in columns)


def _numbers(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").astype(float).to_numpy()


def _texts(rows: pd.DataFrame, column: str) -> list[str]:
    if column not in rows.columns:
        return []
    return [t for t in dict.fromkeys(rows[column].fillna("").astype(str).str.strip()) if t]


def _one_interval(limits: np.ndarray) -> tuple[float, float] | None:
    """The (low, high) every row shares (NaN for an open side or no interval), or None when
    the rows were judged against different intervals."""
    first = limits[0]
    same = (limits == first) | (np.isnan(limits) & np.isnan(first))
    return (float(first[0]), float(first[1])) if bool(np.all(same)) else None


def _band_texts(rows: pd.DataFrame, limits: np.ndarray) -> list[str]:
    """'P2, P3: 359–1565 (age 18 y and over)': the patients judged against each interval."""
    bands = (
        rows["reference_band"].fillna("").astype(str).str.strip()
        if "reference_band" in rows.columns
        else pd.Series("", index=rows.index)
    )
    who: dict[str, list[str]] = {}
    for patient, band, (low, high) in zip(rows["patient"].astype(str), bands, limits):
        if math.isnan(low) and math.isnan(high):
            text = "no interval"
        else:
            lo = "" if math.isnan(low) else f"{low:g}"
            hi = "" if math.isnan(high) else f"{high:g}"
            text = f"{lo}–{hi}" + (f" ({band})" if band else "")
        patients = who.setdefault(text, [])
        if patient not in patients:
            patients.append(patient)
    return [f"{', '.join(patients)}: {text}" for text, patients in who.items()]


def _timepoint_order(table: pd.DataFrame, baseline: str, peak: str) -> list[str]:
    rest = [t for t in dict.fromkeys(table["timepoint"].astype(str)) if t not in (baseline, peak)]
    return [baseline, peak, *rest]


def _draw_reference(ax, frame: pd.DataFrame, order: list[str], limits: np.ndarray) -> None:
    """Points per patient per timepoint (▲ above, ▼ below its interval). One interval for all:
    a shaded band; intervals that differ (age/sex bands): a box at each point."""
    patients = list(dict.fromkeys(frame["patient"].astype(str)))
    colours = _colours(len(patients))
    values = frame["absolute_per_uL"].astype(float).to_numpy()
    timepoints = frame["timepoint"].astype(str).to_numpy()
    who = np.array([patients.index(p) for p in frame["patient"].astype(str)], dtype=int)
    xs = np.array(
        [order.index(tp) + _jitter(k, len(patients)) for tp, k in zip(timepoints, who)],
        dtype=float,
    )
    for k in range(len(patients)):
        mine = who == k
        x, y = xs[mine], values[mine]
        if len(x) > 1:
            ax.plot(x, y, color=colours[k], linewidth=0.8, alpha=0.6)
        for xi, yi, (low, high) in zip(x, y, limits[mine]):
            marker = "^" if yi > high else "v" if yi < low else "o"
            ax.plot(xi, yi, marker, color=colours[k], markersize=4.5)
    for j, tp in enumerate(order):
        at = values[timepoints == tp]
        if at.size:
            ax.plot([j - 0.25, j + 0.25], [at.mean()] * 2, color="black", linewidth=1.2)
    shared = _one_interval(limits)
    if shared is not None:
        _reference_band(ax, values, *shared)
    else:
        lo, hi = _reference_scale(ax, values, limits)
        width = 0.2 if len(patients) <= 1 else min(0.12, 0.8 * 0.3 / (len(patients) - 1))
        for x, k, (low, high) in zip(xs, who, limits):
            if math.isnan(low) and math.isnan(high):
                continue
            a = low if math.isfinite(low) else lo
            b = high if math.isfinite(high) else hi
            ax.fill_between(
                [x - width / 2, x + width / 2],
                a,
                b,
                facecolor=(0.18, 0.545, 0.341, 0.2),  # the band's green, light
                edgecolor=colours[k],
                linewidth=0.6,
                zorder=0,
            )
    shown = [j for j, tp in enumerate(order) if tp in set(timepoints)]
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


def _reference_scale(ax, values: np.ndarray, limits: np.ndarray) -> tuple[float, float]:
    """y limits over the counts and the intervals' finite ends: log when every one of them is
    positive and they span more than 8x. Returns the limits."""
    bounds = limits[np.isfinite(limits)]
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
    return lo, hi


def _reference_band(ax, values: np.ndarray, low: float, high: float) -> None:
    """Scale the y axis (:func:`_reference_scale`) and shade the one reference interval
    across the plot (an open side runs to the axis' end)."""
    lo, hi = _reference_scale(ax, values, np.array([[low, high]], dtype=float))
    if math.isnan(low) and math.isnan(high):
        return
    a = low if math.isfinite(low) else lo
    b = high if math.isfinite(high) else hi
    ax.axhspan(a, b, color="#2e8b57", alpha=0.15, linewidth=0, zorder=0)


def _jitter(k: int, n: int) -> float:
    return 0.0 if n <= 1 else (k / (n - 1) - 0.5) * 0.3


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]

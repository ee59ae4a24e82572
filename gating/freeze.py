"""Freeze a result: the gates as they were applied to one sample, as a fixed :class:`Strategy`.

Data-driven gates resolved to fixed geometry on the sample (a threshold to a range, an automatic
quadrant to rectangles, the singlet wedge to a polygon, quantile and tail gates to ranges); those
resolved gates replace them. A scatter-mixture cluster (:class:`~gating.adaptive.MixtureRegion`:
the most probable component of a Gaussian mixture on log10 scatter, within a Mahalanobis distance)
has no Gating-ML form: it becomes a polygon tracing the region's boundary (see
:func:`mixture_polygon`), checked against the exact region on the sample's own events, and the
strategy's notes say so.

Dimensions name the sample's channels ($PnN): markers are resolved as the engine resolved them,
so the frozen strategy can be written as Gating-ML or a FlowJo workspace and read by tools that
know channels only. The file's own spillover matrix (compensation ``'FCS'``) is embedded as an
explicit matrix unless asked otherwise; dimensions the matrix does not cover (scatter, time) are
marked uncompensated, which is what they were.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import GatingError
from .gates import BooleanGate, Dimension, EllipsoidGate, Gate, PolygonGate, RectangleGate
from .strategy import Population, Strategy
from .transforms import Ratio

if TYPE_CHECKING:
    from .evaluator import Evaluator
    from .result import GatingResult

#: (grid cells per side, Douglas-Peucker tolerance in log10 units) tried in turn until the
#: polygon classifies every event of the parent as the mixture region does
_LEVELS = ((512, 1e-4), (1024, 1e-4), (2048, 1e-4))
SPILLOVER_ID = "spillover"
_CHUNK = 1 << 18  # grid points per evaluation of the mixture's field


def freeze(result: GatingResult, embed_spillover: bool = True) -> Strategy:
    """The gates of ``result`` as applied, as a :class:`Strategy` of fixed gates (see the module
    docstring); :meth:`GatingResult.frozen` calls this."""
    ev = result.evaluator
    if ev is None:
        raise GatingError("a result without its sample cannot be frozen (no evaluator)")
    st = result.strategy
    sample_name = _sample_name(ev)
    if result.failed:
        listing = "; ".join(f"{n!r}: {why}" for n, why in result.failed.items())
        raise GatingError(
            f"{sample_name}: {len(result.failed)} population(s) were not gated, so there is no "
            f"geometry to freeze for them ({listing}); pin their gates (overrides) first"
        )
    notes = [f"frozen on {sample_name}: the gates as applied to it"]
    notes += [f"when applied: {n}" for n in ev.notes]

    comps: dict[str, Compensation] = dict(st.compensations)
    comp_ids: dict[str, str] = {}
    used = {d.compensation for g in result.gates.values() for d in g.dimensions}
    if FROM_FILE in used:
        own = ev.compensation(FROM_FILE)
        if own is None:
            comp_ids[FROM_FILE] = UNCOMPENSATED
        elif embed_spillover:
            ident = _unique(SPILLOVER_ID, set(comps) | set(st.transforms))
            comps[ident] = Compensation(ident, own.fluorochromes, own.detectors, own.matrix)
            comp_ids[FROM_FILE] = ident
            notes.append(f"compensation: the spillover matrix of {sample_name}, as {ident!r}")

    mapper = _Channels(ev, comps, comp_ids)
    transforms = {
        k: (mapper.ratio(t) if isinstance(t, Ratio) else t) for k, t in st.transforms.items()
    }
    pops = []
    for p in st.populations:
        applied = result.gates[p.name]
        if _is_mixture(applied):
            gate, note = _freeze_mixture(result, p, applied, mapper)
            notes.append(note)
        else:
            gate = mapper.gate(applied)
            if not _is_fixed(gate):
                notes.append(
                    f"population {p.name!r}: {type(gate).__name__} kept as is (no fixed form); "
                    "it cannot be written as Gating-ML or FlowJo"
                )
        pops.append(Population(p.name, gate, p.parent, p.label))
    return Strategy(
        pops,
        transforms,
        {k: c for k, c in comps.items() if k != FROM_FILE},
        name=f"{st.name or 'strategy'} (frozen on {sample_name})",
        source=None,
        pins=st.pins,
        notes=notes,
    )


def on_channels(strategy: Strategy, sample: Any, markers: Any = None) -> Strategy:
    """``strategy`` with every dimension (and ratio) naming the channel ($PnN) of ``sample`` it
    reads, as the engine finds names (``markers``: as for :meth:`Strategy.apply`); nothing else
    changes. For tools that know channels only (FlowKit, FlowJo)."""
    from .evaluator import Evaluator
    from .markers import as_markers

    ev = Evaluator(strategy, sample, as_markers(markers))
    mapper = _Channels(ev, dict(strategy.compensations), {})
    transforms = {
        k: (mapper.ratio(t) if isinstance(t, Ratio) else t) for k, t in strategy.transforms.items()
    }
    pops = [Population(p.name, mapper.gate(p.gate), p.parent, p.label) for p in strategy]
    return Strategy(
        pops,
        transforms,
        strategy.compensations,
        strategy.name,
        strategy.source,
        strategy.pins,
        strategy.notes,
    )


def _sample_name(ev: Evaluator) -> str:
    from pathlib import PurePath

    name = ev.sample_name
    return PurePath(str(name)).name if name else "the sample"


def _unique(base: str, taken: set[str]) -> str:
    name, k = base, 2
    while name in taken:
        name, k = f"{base}{k}", k + 1
    return name


def _is_mixture(gate: Gate) -> bool:
    from .adaptive import MixtureRegion

    return isinstance(gate, MixtureRegion)


def _is_fixed(gate: Gate) -> bool:
    if isinstance(gate, (RectangleGate, PolygonGate, EllipsoidGate, BooleanGate)):
        return True
    inner = getattr(gate, "gate", None)  # FlowJo's OutsideGate
    return isinstance(inner, Gate) and _is_fixed(inner)


class _Channels:
    """Rewrites dimensions to the sample's channel names and the frozen compensation ids."""

    def __init__(self, ev: Evaluator, comps: dict[str, Compensation], comp_ids: dict[str, str]):
        self.ev, self.comps, self.comp_ids = ev, comps, comp_ids

    def channel(self, name: str, comp: Compensation | None) -> str:
        if comp is not None and name in comp.fluorochromes and name not in comp.detectors:
            return name  # an unmixed fluorochrome of a Gating-ML spectrum matrix
        return self.ev.channels[self.ev.column(name)]

    def dimension(self, d: Dimension) -> Dimension:
        comp_id = self.comp_ids.get(d.compensation, d.compensation)
        comp = self.comps.get(comp_id)
        if d.ratio:
            return Dimension(d.name, comp_id, d.transform, True)
        name = self.channel(d.name, comp)
        if comp is not None and name not in comp.fluorochromes:
            comp_id = UNCOMPENSATED  # not a compensated parameter: its values are the raw ones
        return Dimension(name, comp_id, d.transform)

    def ratio(self, r: Ratio) -> Ratio:
        return dataclasses.replace(
            r,
            numerator=self.channel(r.numerator, None),
            denominator=self.channel(r.denominator, None),
        )

    def gate(self, gate: Gate) -> Gate:
        inner = getattr(gate, "gate", None)
        if isinstance(inner, Gate):  # FlowJo's OutsideGate: its dimensions are its inner gate's
            return dataclasses.replace(gate, gate=self.gate(inner))
        if not gate.dimensions or not dataclasses.is_dataclass(gate):
            return gate
        dims = tuple(self.dimension(d) for d in gate.dimensions)
        return dataclasses.replace(gate, dimensions=dims)


def _freeze_mixture(
    result: GatingResult, pop: Population, region: Any, mapper: _Channels
) -> tuple[PolygonGate, str]:
    ev = result.evaluator
    assert ev is not None
    parent = result.masks[pop.parent] if pop.parent is not None else None
    idx = None if parent is None else np.flatnonzero(parent)
    values = ev.matrix(region.dimensions, idx)
    vertices, differ, loops = mixture_polygon(region, values)
    gate = PolygonGate(tuple(mapper.dimension(d) for d in region.dimensions), vertices)
    exact = int(np.count_nonzero(region.contains(values)))
    names = " x ".join(d.name for d in gate.dimensions)
    pieces = f" in {loops} pieces joined by zero-width bridges" if loops > 1 else ""
    note = (
        f"population {pop.name!r}: the Gaussian-mixture cluster (fitted on log10 values) is approximated "
        f"by a {len(vertices)}-vertex polygon on {names}{pieces}; on {_sample_name(ev)} "
        f"{differ} of {values.shape[0]} parent events fall differently (mixture {exact} events)"
    )
    return gate, note


# --- the polygon of a mixture region --------------------------------------------------------------


def _log10(values: np.ndarray) -> np.ndarray:
    """The mixture's scale: log10 of values clipped at 1 (as :class:`MixtureRegion` has it)."""
    return np.log10(np.clip(np.asarray(values, dtype=np.float64), 1.0, None))


def _field(region: Any, u: np.ndarray) -> np.ndarray:
    """A continuous function of log10 coordinates (n x 2) that is >= 0 exactly where the region
    is: min(best chosen log density - best other log density, (max_distance2 - d2 to the best
    chosen component) / 2). Its zero contour is the region's boundary."""
    if u.shape[0] > _CHUNK:  # a fine grid: in pieces, to bound the memory
        return np.concatenate(
            [_field(region, u[k : k + _CHUNK]) for k in range(0, u.shape[0], _CHUNK)]
        )
    u = np.maximum(u, 0.0)  # values below 1 sit at 0, as the region sees them
    k = len(region.weights)
    logp = np.empty((u.shape[0], k))
    d2 = np.empty((u.shape[0], k))
    for j, (w, mu, cov) in enumerate(zip(region.weights, region.means, region.covariances)):
        cov = np.asarray(cov, dtype=np.float64)
        d = u - np.asarray(mu, dtype=np.float64)
        d2[:, j] = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
        logp[:, j] = np.log(w) - 0.5 * (d2[:, j] + np.log(np.linalg.det(cov)))
    chosen = np.zeros(k, dtype=bool)
    chosen[list(region.chosen)] = True
    mine = logp[:, chosen]
    other = logp[:, ~chosen].max(axis=1) if (~chosen).any() else np.full(u.shape[0], -np.inf)
    best = np.flatnonzero(chosen)[np.argmax(mine, axis=1)]
    margin = mine.max(axis=1) - other
    inside = 0.5 * (region.max_distance2 - d2[np.arange(u.shape[0]), best])
    return np.minimum(margin, inside)


def _simplify(
    points: np.ndarray, linear: np.ndarray, eps: float, pinned: set[int] | None = None
) -> np.ndarray:
    """Douglas-Peucker on a closed loop of log10 coordinates (``points``; ``linear``: the same in
    values, where the polygon's edges are straight): a point may be left out where it lies within
    ``eps`` decades of the straight edge between values that replaces it. ``pinned`` points are
    kept."""
    n = len(points)
    keep = np.zeros(n, dtype=bool)
    cuts = sorted({0, n - 1, *(pinned or ())})
    keep[cuts] = True
    stack = list(zip(cuts[:-1], cuts[1:]))
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        p = linear[i + 1 : j]
        w = 1.0 / (np.maximum(np.abs(p), 1.0) * np.log(10.0))  # a relative distance: decades
        seg = (linear[j] - linear[i]) * w
        rel = (p - linear[i]) * w
        # distance to the segment (not its line: a loop may double back beyond its ends)
        length2 = np.einsum("ij,ij->i", seg, seg)
        t = np.einsum("ij,ij->i", rel, seg) / np.where(length2 > 0, length2, 1.0)
        off = rel - np.clip(t, 0.0, 1.0)[:, None] * seg
        dist = np.hypot(off[:, 0], off[:, 1])
        m = int(np.argmax(dist))
        if dist[m] <= eps:
            continue
        keep[i + 1 + m] = True
        stack += [(i, i + 1 + m), (i + 1 + m, j)]
    return points[keep]


def _area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _join(loops: list[np.ndarray]) -> np.ndarray:
    """Closed loops as one polygon: each loop in turn, joined by bridges that are walked there and
    back, so that they enclose nothing (the odd-winding rule keeps holes as holes)."""
    back = [loop[:1] for loop in reversed(loops[:-1])]
    return np.vstack(list(loops) + back)


def _to_linear(u: np.ndarray, low: np.ndarray, grid_low: np.ndarray) -> np.ndarray:
    """log10 coordinates back to values: 10**u; below 0 (where the region sees every value under 1
    as 0) linearly down to ``low``, below every event."""
    x = np.power(10.0, u)
    for k in range(2):
        below = u[:, k] < 0
        if below.any():
            frac = u[below, k] / grid_low[k]  # 0 at u = 0, 1 at the grid's low end
            x[below, k] = 1.0 + frac * (low[k] - 1.0)
    return x


def mixture_polygon(
    region: Any, values: np.ndarray, levels: tuple[tuple[int, float], ...] = _LEVELS
) -> tuple[tuple[tuple[float, float], ...], int, int]:
    """A polygon (in the dimensions' units) tracing a 2-D mixture region's boundary.

    The region's indicator is a continuous function of log10 values (:func:`_field`), contoured
    at zero on a fine grid spanning the chosen components' reach (d2 <= max_distance2) within the
    parent's data range; each closed contour is simplified (Douglas-Peucker, in log10 units) and
    mapped back to values. Grids get finer until the polygon classifies every event of
    ``values`` (the parent's) as the region does. Returns (vertices, events classified
    differently, number of closed loops).
    """
    import contourpy

    values = np.asarray(values, dtype=np.float64)
    finite = values[np.all(np.isfinite(values), axis=1)]
    exact = region.contains(values)
    lo, hi = [], []
    d2 = float(region.max_distance2)
    for j in region.chosen:
        mu = np.asarray(region.means[j], dtype=np.float64)
        reach = np.sqrt(max(d2, 0.0) * np.diag(np.asarray(region.covariances[j])))
        lo.append(mu - reach)
        hi.append(mu + reach)
    if finite.shape[0]:
        u = _log10(finite)
        span = np.maximum(u.max(axis=0) - u.min(axis=0), 0.05)
        data_lo, data_hi = u.min(axis=0) - 0.02 * span, u.max(axis=0) + 0.02 * span
        low = np.minimum(finite.min(axis=0), 0.0) - 1.0
    else:
        data_lo, data_hi = np.full(2, -np.inf), np.full(2, np.inf)
        low = np.full(2, -1.0)
    if lo:
        g_lo = np.maximum(np.min(lo, axis=0), data_lo)
        g_hi = np.minimum(np.max(hi, axis=0), data_hi)
    if not lo or np.any(g_hi <= g_lo):
        return _empty(low), int(np.count_nonzero(exact)), 0

    pad = 0.02 * (g_hi - g_lo)
    g_lo, g_hi = g_lo - pad, g_hi + pad
    g_lo = np.where(g_lo < 0, np.minimum(g_lo, -0.01), g_lo)  # a strip below 0 if it reaches 0

    best: tuple[tuple[tuple[float, float], ...], int, int] | None = None
    for cells, eps in levels:
        xs = np.linspace(g_lo[0], g_hi[0], cells + 1)
        ys = np.linspace(g_lo[1], g_hi[1], cells + 1)
        gx, gy = np.meshgrid(xs, ys)
        z = _field(region, np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
        z[[0, -1], :] = -1.0  # outside on the grid's border: every contour closes
        z[:, [0, -1]] = -1.0
        lines = contourpy.contour_generator(xs, ys, z).lines(0.0)
        step = float(max(xs[1] - xs[0], ys[1] - ys[0]))
        raw = [_refine(region, np.asarray(line, dtype=np.float64), step) for line in lines]
        raw = [q for q in raw if len(q) >= 4]
        if not raw:
            return _empty(low), int(np.count_nonzero(exact)), 0
        raw.sort(key=_area, reverse=True)
        lin = [_to_linear(q, low, g_lo) for q in raw]
        pins: list[set[int]] = [set() for _ in raw]
        for _ in range(6):  # keep the contour's own points next to events the polygon misplaces
            loops = [_simplify(q, x, eps, p) for q, x, p in zip(raw, lin, pins)]
            kept = _prune(loops, values, exact, low, g_lo)
            verts = _to_linear(_join([loops[k] for k in kept]), low, g_lo)
            got = PolygonGate((Dimension("x"), Dimension("y")), tuple(map(tuple, verts)))
            wrong = np.flatnonzero(got.contains(values) != exact)
            result = (tuple((float(a), float(b)) for a, b in verts), int(wrong.size), len(kept))
            if best is None or wrong.size < best[1]:
                best = result
            if wrong.size == 0 or not _pin(raw, kept, pins, _log10(values[wrong[:200]])):
                break
        if best is not None and best[1] == 0:
            break
    assert best is not None
    return best


def _refine(region: Any, points: np.ndarray, step: float) -> np.ndarray:
    """Contour points moved onto the region's boundary: bisection of the field along its gradient
    within a grid step either side (points where the field does not change sign there, at the
    corners of the region, stay where the contour put them)."""
    h = 1e-3 * step
    grad = np.column_stack(
        [
            _field(region, points + [h, 0.0]) - _field(region, points - [h, 0.0]),
            _field(region, points + [0.0, h]) - _field(region, points - [0.0, h]),
        ]
    )
    norm = np.hypot(grad[:, 0], grad[:, 1])
    ok = norm > 0
    n = np.zeros_like(points)
    n[ok] = grad[ok] / norm[ok, None]
    lo, hi = np.full(len(points), -step), np.full(len(points), step)
    f_lo = _field(region, points + lo[:, None] * n)
    f_hi = _field(region, points + hi[:, None] * n)
    ok &= (f_lo < 0) & (f_hi >= 0)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        inside = _field(region, points + mid[:, None] * n) >= 0
        hi = np.where(inside, mid, hi)
        lo = np.where(inside, lo, mid)
    out = points.copy()
    out[ok] = points[ok] + hi[ok, None] * n[ok]
    out[-1] = out[0]  # a closed loop stays closed
    return out


def _pin(raw: list[np.ndarray], kept: list[int], pins: list[set[int]], points: np.ndarray) -> bool:
    """Pin the contour points nearest to ``points`` (log10) and their neighbours; False when they
    are all pinned already (the contour itself is what misplaces them)."""
    added = False
    for u in points:
        best_k, best_i, best_d = -1, -1, np.inf
        for k in kept:
            d = np.hypot(raw[k][:, 0] - u[0], raw[k][:, 1] - u[1])
            i = int(np.argmin(d))
            if d[i] < best_d:
                best_k, best_i, best_d = k, i, float(d[i])
        n = len(raw[best_k])
        for i in range(best_i - 2, best_i + 3):
            if 0 < i < n - 1 and i not in pins[best_k]:
                pins[best_k].add(i)
                added = True
    return added


def _prune(
    loops: list[np.ndarray],
    values: np.ndarray,
    exact: np.ndarray,
    low: np.ndarray,
    g_lo: np.ndarray,
) -> list[int]:
    """Indices of the loops (largest first) to keep: small loops (islands or holes) that no event
    needs are dropped, so that the polygon needs no bridges where the sample allows."""
    if len(loops) == 1:
        return [0]

    def errors(kept: list[int]) -> int:
        verts = _to_linear(_join([loops[k] for k in kept]), low, g_lo)
        gate = PolygonGate((Dimension("x"), Dimension("y")), tuple(map(tuple, verts)))
        return int(np.count_nonzero(gate.contains(values) != exact))

    kept = list(range(len(loops)))
    base = errors(kept)
    for k in range(1, len(loops)):
        trial = [q for q in kept if q != k]
        if errors(trial) <= base:
            kept = trial
    return kept


def _empty(low: np.ndarray) -> tuple[tuple[float, float], ...]:
    """A tiny triangle below every event: an empty region."""
    x, y = float(low[0]) - 2.0, float(low[1]) - 2.0
    return ((x, y), (x + 1.0, y), (x + 1.0, y + 1.0))

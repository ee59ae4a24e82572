"""Per-gate evaluation plans, run block by block over runs of consecutive populations
(:class:`_Segment`).

A segment holds consecutive populations whose gates decide each event from that event's values
alone (rectangles, polygons, ellipsoids, booleans). It prepares a plan per gate, then evaluates
every plan on one block of events (:mod:`gating.blocks`) after another, each on its parent's
events in the block.

Range and rectangle gates on a monotonic scale are evaluated on raw values: their bounds are
mapped back through the transform's inverse, and only events within rounding distance of a bound
are transformed to decide exactly (so results match transforming every event). Polygon and
ellipsoid gates transform only the events in (a slightly widened preimage of) their bounding box.
Boolean gates combine the block's part of other populations' masks.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from .blocks import (
    _BLOCK,
    _WORKSPACE,
    _Axis,
    _Block,
    _CompPlan,
    _raw_bound,
    _resolve_axis,
    _Source,
    _widen,
)
from .clusters import MixtureRegion
from .errors import GatingError
from .gates import BooleanGate, Dimension, EllipsoidGate, Gate, PolygonGate, RectangleGate

if TYPE_CHECKING:
    from .evaluator import Evaluator


class _Bound:
    """One side of a range, decided on raw values (see the module docstring)."""

    __slots__ = ("bound", "lower", "tr", "xb", "lo", "hi")

    def __init__(self, bound: float, lower: bool, tr: Any):
        self.bound, self.lower, self.tr = bound, lower, tr
        self.xb = _raw_bound(tr, bound)
        w = _widen(self.xb) if tr is not None and math.isfinite(self.xb) else 0.0
        self.lo, self.hi = self.xb - w, self.xb + w

    def test(self, x: np.ndarray, parent: np.ndarray | None) -> np.ndarray:
        """Bool array over the block: the event's value is on the inside of this bound."""
        tr, bound = self.tr, self.bound
        if tr is None:
            return (x >= bound) if self.lower else (x < bound)
        if not math.isfinite(self.xb):  # the bound is outside the transform's range: transform
            idx = np.arange(x.size) if parent is None else np.flatnonzero(parent)
            out = np.zeros(x.size, dtype=bool)
            y = tr.apply(x[idx])
            out[idx] = (y >= bound) if self.lower else (y < bound)
            return out
        if self.lower:
            sure, maybe = x > self.hi, x >= self.lo
        else:
            sure, maybe = x < self.lo, x <= self.hi
        if np.count_nonzero(maybe) != np.count_nonzero(sure):  # events near the bound
            near = np.flatnonzero(maybe ^ sure)
            y = tr.apply(x[near])
            sure[near] = (y >= bound) if self.lower else (y < bound)
        return sure


class _Plan(ABC):
    """A population's gate, prepared for block-wise evaluation."""

    def __init__(self, pop: Any):
        self.name: str = pop.name
        self.parent: str | None = pop.parent
        self.gate: Gate = pop.gate

    @abstractmethod
    def evaluate(
        self, blk: _Block, parent: np.ndarray | None, masks: dict[str, np.ndarray]
    ) -> np.ndarray:
        """Bool array over the block; the caller ANDs it with the parent."""
        ...


class _RectanglePlan(_Plan):
    """Ranges on monotonic scales are decided on raw values (:class:`_Bound`); on other scales
    (log, ratios' transforms, lookup tables) on the parent's transformed values."""

    def __init__(self, pop: Any, seg: _Segment):
        super().__init__(pop)
        gate = pop.gate
        self.raw_tests: list[tuple[_Source, list[_Bound]]] = []
        self.scaled_tests: list[tuple[_Axis, float | None, float | None]] = []
        for dim, lo, hi in zip(gate.dimensions, gate.mins, gate.maxs):
            axis = seg.axis(dim)
            if axis.monotonic:
                bounds = [
                    _Bound(b, low, axis.transform)
                    for b, low in ((lo, True), (hi, False))
                    if b is not None
                ]
                self.raw_tests.append((axis.source, bounds))
            else:
                self.scaled_tests.append((axis, lo, hi))

    def evaluate(
        self, blk: _Block, parent: np.ndarray | None, masks: dict[str, np.ndarray]
    ) -> np.ndarray:
        inside: np.ndarray | None = None
        for src, bounds in self.raw_tests:
            x = blk.base(src)
            for b in bounds:
                cond = b.test(x, parent)
                if inside is None:
                    inside = cond
                else:
                    inside &= cond
        if self.scaled_tests:
            idx = None if parent is None else np.flatnonzero(parent)
            for axis, lo, hi in self.scaled_tests:
                y = blk.scaled(axis, idx)
                cond = np.ones(y.size, dtype=bool)
                if lo is not None:
                    cond &= y >= lo
                if hi is not None:
                    cond &= y < hi
                if idx is not None:
                    full = np.zeros(blk.n, dtype=bool)
                    full[idx] = cond
                    cond = full
                if inside is None:
                    inside = cond
                else:
                    inside &= cond
        assert inside is not None
        return inside


class _RegionPlan(_Plan):
    """Polygon and ellipsoid gates: values on the scale for the parent's events inside a raw
    preimage of the gate's bounding box (widened like range bounds), then ``gate.contains``."""

    def __init__(self, pop: Any, seg: _Segment):
        super().__init__(pop)
        gate = pop.gate
        self.axes = [seg.axis(d) for d in gate.dimensions]
        box = _bounding_box(gate)
        self.filters: list[tuple[_Source, float, float]] = []
        if box is not None:
            for axis, lo, hi in zip(self.axes, *box):
                if not axis.monotonic:
                    continue
                if axis.transform is None:
                    self.filters.append((axis.source, lo, hi))
                    continue
                xlo, xhi = _raw_bound(axis.transform, lo), _raw_bound(axis.transform, hi)
                xlo = xlo - _widen(xlo) if math.isfinite(xlo) else -np.inf
                xhi = xhi + _widen(xhi) if math.isfinite(xhi) else np.inf
                self.filters.append((axis.source, xlo, xhi))

    def evaluate(
        self, blk: _Block, parent: np.ndarray | None, masks: dict[str, np.ndarray]
    ) -> np.ndarray:
        cand = None if parent is None else parent.copy()
        for src, lo, hi in self.filters:
            x = blk.base(src)
            if cand is None:
                cand = x >= lo
            else:
                cand &= x >= lo
            cand &= x <= hi
        idx = None if cand is None else np.flatnonzero(cand)
        m = blk.n if idx is None else idx.size
        out = np.zeros(blk.n, dtype=bool)
        if m == 0:
            return out
        if type(self.gate) is PolygonGate:
            x, y = (blk.scaled(axis, idx) for axis in self.axes)
            inside = self.gate.contains_xy(x, y)
            if idx is None:
                return inside
            out[idx] = inside
            return out
        if type(self.gate) is MixtureRegion:  # siblings on the same events classify them once
            memo = (self.gate.mixture, self.parent, tuple(a.source for a in self.axes))
            found = blk.memo.get(memo)
            if found is None:
                found = blk.memo[memo] = self.gate.classify(self._values(blk, idx, m))
            inside = self.gate.contains_classified(*found)
        else:
            inside = np.asarray(self.gate.contains(self._values(blk, idx, m)))
        if inside.dtype != bool or inside.shape != (m,):
            raise GatingError(
                f"gate {type(self.gate).__name__} returned {inside.dtype} {inside.shape}, "
                f"expected a bool array of {m} events"
            )
        if idx is None:
            return inside
        out[idx] = inside
        return out

    def _values(self, blk: _Block, idx: np.ndarray | None, m: int) -> np.ndarray:
        values = np.empty((m, len(self.axes)), dtype=np.float64)
        for k, axis in enumerate(self.axes):
            values[:, k] = blk.scaled(axis, idx)
        return values


def _bounding_box(gate: Gate) -> tuple[np.ndarray, np.ndarray] | None:
    """(mins, maxs) on the scale outside which no event can be in the gate, or None (for
    subclasses too: FlowJo's polygons move events onto their display grid first)."""
    if type(gate) is PolygonGate:
        verts = np.asarray(gate.vertices, dtype=np.float64)
        return verts.min(axis=0), verts.max(axis=0)
    if type(gate) is EllipsoidGate:
        cov = np.asarray(gate.covariance, dtype=np.float64)
        if gate.distance_square < 0 or not np.all(np.isfinite(cov)):
            return None
        try:
            np.linalg.cholesky(cov)  # positive definite: a bounded ellipsoid
        except np.linalg.LinAlgError:
            return None
        if np.linalg.cond(cov) > 1e8:  # rounding in contains() could outgrow the margin below
            return None
        # The extent along axis k is sqrt(d2 * cov_kk); widen generously against rounding.
        half = np.sqrt(gate.distance_square * np.diag(cov)) * (1 + 1e-4) + 1e-9
        mean = np.asarray(gate.mean, dtype=np.float64)
        return mean - half, mean + half
    return None


class _BooleanPlan(_Plan):
    """and / or / not over the block's part of other populations' masks."""

    def evaluate(
        self, blk: _Block, parent: np.ndarray | None, masks: dict[str, np.ndarray]
    ) -> np.ndarray:
        gate = self.gate
        assert isinstance(gate, BooleanGate)
        return gate.combine([masks[r][blk.start : blk.stop] for r in gate.references()])


class _Segment:
    """Consecutive populations with pointwise gates, evaluated together block by block."""

    def __init__(self, ev: Evaluator, pops: list[Any], row_mode: str):
        self.ev = ev
        self.row_mode = row_mode  # how a block gets its linear values (see _row_mode)
        self._buffers: dict[Any, np.ndarray] = {}
        self._view: Any = None
        params = getattr(type(ev.sample), "__dataclass_params__", None)
        self._frozen = bool(getattr(params, "frozen", False))
        self._sources: dict[_Source, None] = {}  # every source the plans use
        self.plans: list[_Plan] = []
        for pop in pops:
            if type(pop.gate) is RectangleGate:
                self.plans.append(_RectanglePlan(pop, self))
            elif isinstance(pop.gate, BooleanGate):
                self.plans.append(_BooleanPlan(pop))
            else:
                self.plans.append(_RegionPlan(pop, self))
        used: dict[str, None] = {}  # compensation ids, in order of first use
        columns: set[int] = set()

        def collect(src: _Source) -> None:
            if src.kind == "comp":
                used[src.comp_id] = None
            elif src.kind == "raw":
                columns.add(src.column)
            for part in src.parts:
                collect(part)

        for src in self._sources:
            collect(src)
        self.comps: dict[str, _CompPlan] = {}
        for comp_id in used:
            comp = ev.compensation(comp_id)
            assert comp is not None
            plan = _CompPlan([ev.column(d) for d in comp.detectors], comp.unmixing())
            self.comps[comp_id] = plan
            columns.update(plan.columns)
        self.columns = sorted(columns)
        # Rows of the linear values: the first compensation's detectors first, in its order, so
        # that its matrix product reads them in place.
        order: list[int] = []
        first = next(iter(self.comps.values()), None)
        if first is not None and len(set(first.columns)) == len(first.columns):
            order = list(first.columns)
            first.rows = slice(0, len(order))
        order += [j for j in self.columns if j not in set(order)]
        self.slots = {j: r for r, j in enumerate(order)}

    def axis(self, dim: Dimension) -> _Axis:
        """``dim`` resolved for the sample; its source is computed for every block."""
        axis = _resolve_axis(self.ev, dim)
        self._sources[axis.source] = None
        return axis

    def view(self, events: np.ndarray) -> Any:
        """The sample with only ``events`` (a block's, as float64) for its ``linear_values``: one
        copy of the sample per segment (so what it derives from its keywords, such as the
        parameter scales, is derived once), whose events each block replaces."""
        if self._view is None or self._frozen:
            self._view = dataclasses.replace(self.ev.sample, events=events)
        else:
            self._view.events = events
        return self._view

    def buffer(self, key: Any, rows: int, n: int, dtype: Any = np.float64) -> np.ndarray:
        """A (rows x n) work array, the same for every block of the segment (see
        :class:`_Workspace`)."""
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = _WORKSPACE.take(rows, np.dtype(dtype))
        return buf[:, :n]

    def run(self, masks: dict[str, np.ndarray], applied: dict[str, Gate]) -> None:
        try:
            self._run(masks, applied)
        finally:
            _WORKSPACE.give_back(self._buffers.values())
            self._buffers.clear()

    def _run(self, masks: dict[str, np.ndarray], applied: dict[str, Gate]) -> None:
        n = self.ev.n
        for plan in self.plans:
            masks[plan.name] = np.empty(n, dtype=bool)
            applied[plan.name] = plan.gate
        for start in range(0, n, _BLOCK):
            blk = _Block(self, start, min(n, start + _BLOCK))
            for plan in self.plans:
                out = masks[plan.name][blk.start : blk.stop]
                parent = None
                if plan.parent is not None:
                    parent = masks[plan.parent][blk.start : blk.stop]
                    if not parent.any():
                        out[:] = False
                        continue
                inside = plan.evaluate(blk, parent, masks)
                if parent is None:
                    out[:] = inside
                else:
                    np.logical_and(inside, parent, out=out)

"""Apply a Strategy to events: compensate, transform each channel at most once per event and only
for the events that need it, evaluate each gate on its parent's events.

Range and rectangle gates on a monotonic scale are evaluated on raw values: their bounds are
mapped back through the transform's inverse, and only events within rounding distance of a bound
are transformed to decide exactly (so results match transforming every event). Polygon and
ellipsoid gates transform only the events in (a slightly widened preimage of) their bounding box.

Gates that decide each event from its own values (rectangles, polygons, ellipsoids, booleans) are
evaluated block by block: :data:`_BLOCK` events at a time, every such population in turn, so the
linear values, compensated values and transforms of a block are computed once, stay in the CPU
cache, and never exist for the whole sample at once. Data-driven and custom gates see all their
parent's events at once (:class:`Evaluator`, whose whole-sample values are computed on first use).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import warnings
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import GatingError, GatingWarning
from .gates import BooleanGate, Dimension, EllipsoidGate, Gate, PolygonGate, RectangleGate
from .markers import MarkerIndex
from .result import GatingResult
from .strategy import Strategy
from .transforms import Ratio, Transform

_NEAR = 1e-9  # relative distance to a mapped-back bound within which events are checked exactly
_BLOCK = 1 << 15  # events per block of the block-wise evaluation
_WORKSPACE_BYTES = 64 << 20  # work arrays kept per thread between calls (see _Workspace)
_GEMM_SIZE = 240_000  # multiply-adds per matrix product of the compensation (see _compensate)
_POINTWISE = (RectangleGate, PolygonGate, EllipsoidGate, BooleanGate)


def _transform_once(
    tr: Any, base: np.ndarray, cache: tuple[np.ndarray, np.ndarray], idx: np.ndarray | None
) -> np.ndarray:
    """tr(base) for events ``idx`` (all if None), transforming only those not done before.

    cache: (values, done mask), both full length, updated in place.
    """
    full, done = cache
    todo = np.flatnonzero(~done) if idx is None else idx[~done[idx]]
    if todo.size == done.size:
        full[:] = tr.apply(base)
    elif todo.size:
        full[todo] = tr.apply(base[todo])
    done[todo] = True
    return full if idx is None else full[idx]


def _is_data_driven(gate: Gate) -> bool:
    return type(gate).resolve is not Gate.resolve


def _is_pointwise(gate: Gate) -> bool:
    """Whether the gate decides each event from that event's values alone: the built-in geometric
    and boolean gates (exactly those types: a subclass may override ``contains``)."""
    return type(gate) in _POINTWISE


class Evaluator:
    """Values of gate dimensions for one sample, computed once and cached.

    ``markers``: strategy name -> the sample's marker or channel (see :mod:`gating.markers`)."""

    def __init__(self, strategy: Strategy, sample: Any, markers: dict[str, str] | None = None):
        events = np.asarray(sample.events)
        if events.ndim != 2:
            raise GatingError(
                f"events must be a 2-D array (events x parameters), got {events.shape}"
            )
        self.strategy = strategy
        self.sample = sample
        self.events = events
        self.n = events.shape[0]
        self.channels = [str(c) for c in sample.channels]
        labels = getattr(sample, "markers", None) or [""] * len(self.channels)
        self.markers = [str(m or "") for m in labels]
        self.sample_name = getattr(sample, "path", None)
        self.names = MarkerIndex(
            self.channels,
            self.markers,
            markers,
            where=strategy.source or "the strategy",
            sample=str(self.sample_name or "the sample"),
        )
        #: strategy dimension name -> the channel ($PnN) it was found as (by check_dimensions)
        self.resolved: dict[str, str] = {}
        self.notes: list[str] = []
        self._raw: dict[int, np.ndarray] = {}
        self._comp: dict[str, dict[str, np.ndarray]] = {}
        self._ratio: dict[tuple[str, str], np.ndarray] = {}
        self._scaled: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._comp_objects: dict[str, Compensation | None] = {}
        self._row_mode = _row_mode(sample)

    # --- names -----------------------------------------------------------------------------

    def column(self, name: str) -> int:
        """Column of a channel ($PnN) or marker ($PnS) name, as :class:`MarkerIndex` finds it
        (marker labels as instruments write them, the explicit mapping), found once."""
        return self.names.column(name)

    def inventory(self) -> str:
        """'channel (marker), ...' of the sample, for error messages."""
        return self.names.inventory()

    def check_dimensions(self) -> None:
        """Every channel or marker the strategy needs is in the sample; else one error naming all
        the missing ones (and the populations that need them). Records :attr:`resolved`."""
        needed: dict[str, list[str]] = {}
        dims: dict[str, None] = {}  # names the gates use (not only a compensation's detectors)
        for pop in self.strategy.populations:
            for d in pop.gate.dimensions:
                comp = self.strategy.compensations.get(d.compensation)
                if d.ratio:
                    r = self.strategy.transforms[d.name]
                    names = [r.numerator, r.denominator]  # type: ignore[union-attr]
                else:
                    names = [d.name]
                for name in names:
                    if (
                        comp is not None
                        and name in comp.fluorochromes
                        and name not in comp.detectors
                    ):
                        continue  # an unmixed fluorochrome (Gating-ML spectrum matrix)
                    needed.setdefault(name, []).append(pop.name)
                    dims[name] = None
        for comp in self.strategy.compensations.values():
            for det in comp.detectors:
                needed.setdefault(det, []).append(f"compensation {comp.id}")
        self.names.require(needed)
        self.resolved = {name: self.channels[self.column(name)] for name in dims}

    def raw(self, j: int) -> np.ndarray:
        """Linear values of column j (float64): the sample's ``linear_values(j)`` where it has
        one (FCS samples decode $PnE/$PnG/$TIMESTEP there), else the events as they are."""
        col = self._raw.get(j)
        if col is None:
            linear = getattr(self.sample, "linear_values", None)
            if linear is not None:
                col = np.ascontiguousarray(linear(j), dtype=np.float64)
            else:
                col = np.ascontiguousarray(self.events[:, j], dtype=np.float64)
            self._raw[j] = col
        return col

    # --- compensation ----------------------------------------------------------------------

    def compensation(self, comp_id: str) -> Compensation | None:
        """The compensation a dimension names (None: nothing to compensate), built once."""
        if comp_id not in self._comp_objects:
            self._comp_objects[comp_id] = self._make_compensation(comp_id)
        return self._comp_objects[comp_id]

    def _make_compensation(self, comp_id: str) -> Compensation | None:
        if comp_id == UNCOMPENSATED:
            return None
        if comp_id == FROM_FILE:
            spill = getattr(self.sample, "spillover", None)
            if spill is None:
                # Gating-ML: no spillover in the file means nothing to compensate. Say so once.
                note = (
                    f"{self.strategy.source or 'the strategy'} asks for the file's compensation but "
                    f"{self.sample_name or 'the sample'} has no spillover matrix: gated uncompensated"
                )
                if note not in self.notes:
                    self.notes.append(note)
                    warnings.warn(note, GatingWarning, stacklevel=5)
                return None
            return Compensation.from_spillover(spill)
        return self.strategy.compensations[comp_id]

    def compensated(self, comp_id: str) -> dict[str, np.ndarray]:
        """Compensated columns by fluorochrome name, computed once for all events (empty when
        there is nothing to compensate)."""
        done = self._comp.get(comp_id)
        if done is None:
            comp = self.compensation(comp_id)
            if comp is None:
                self._comp[comp_id] = {}
                return {}
            idx = [self.column(d) for d in comp.detectors]
            raw = np.empty((self.n, len(idx)), dtype=np.float64)
            for k, j in enumerate(idx):
                raw[:, k] = self.raw(j)
            out = np.asfortranarray(raw @ comp.unmixing())
            done = self._comp[comp_id] = {f: out[:, k] for k, f in enumerate(comp.fluorochromes)}
        return done

    def base(self, name: str, comp_id: str) -> np.ndarray:
        """Full-length values of a channel/marker under a compensation (before any transform)."""
        if comp_id != UNCOMPENSATED:
            comp = self.compensated(comp_id)
            if name in comp:
                return comp[name]
            channel = self.channels[self.column(name)]
            if channel in comp:
                return comp[channel]
        return self.raw(self.column(name))

    def dimension_base(self, dim: Dimension) -> np.ndarray:
        if not dim.ratio:
            return self.base(dim.name, dim.compensation)
        key = (dim.name, dim.compensation)
        values = self._ratio.get(key)
        if values is None:
            r = self.strategy.transforms[dim.name]
            assert isinstance(r, Ratio)
            values = self._ratio[key] = r.apply2(
                self.base(r.numerator, dim.compensation), self.base(r.denominator, dim.compensation)
            )
        return values

    # --- scaled values -----------------------------------------------------------------------

    def values(self, dim: Dimension, idx: np.ndarray | None) -> np.ndarray:
        """Values of ``dim`` on its scale for events ``idx`` (all if None), transforming only events
        not transformed before."""
        base = self.dimension_base(dim)
        if dim.transform is None:
            return base if idx is None else base[idx]
        tr = self.strategy.transforms[dim.transform]
        key = (dim.name, dim.compensation, dim.transform, dim.ratio)
        entry = self._scaled.get(key)
        if entry is None:
            entry = self._scaled[key] = (np.empty(self.n), np.zeros(self.n, dtype=bool))
        return _transform_once(tr, base, entry, idx)

    def matrix(self, dims: tuple[Dimension, ...], idx: np.ndarray | None) -> np.ndarray:
        m = np.empty((self.n if idx is None else idx.size, len(dims)), dtype=np.float64)
        for k, d in enumerate(dims):
            m[:, k] = self.values(d, idx)
        return m

    # --- gates ---------------------------------------------------------------------------------

    def rectangle(self, gate: RectangleGate, idx: np.ndarray | None) -> np.ndarray:
        inside: np.ndarray | None = None
        for dim, lo, hi in zip(gate.dimensions, gate.mins, gate.maxs):
            tr = self.strategy.transforms.get(dim.transform) if dim.transform else None
            if tr is None or (isinstance(tr, Transform) and tr.monotonic):
                base = self.dimension_base(dim)
                x = base if idx is None else base[idx]
                cond = self._range_on_raw(x, lo, hi, tr)
            else:
                y = self.values(dim, idx)
                cond = np.ones(y.shape[0], dtype=bool)
                if lo is not None:
                    cond &= y >= lo
                if hi is not None:
                    cond &= y < hi
            inside = cond if inside is None else (inside & cond)
        assert inside is not None
        return inside

    @staticmethod
    def _range_on_raw(x: np.ndarray, lo: float | None, hi: float | None, tr) -> np.ndarray:
        cond = np.ones(x.shape[0], dtype=bool)
        for bound, is_lo in ((lo, True), (hi, False)):
            if bound is None:
                continue
            if tr is None:
                cond &= (x >= bound) if is_lo else (x < bound)
                continue
            xb = float(tr.inverse(np.array([bound]))[0])
            if np.isnan(xb):  # bound outside the transform's range
                y_all = tr.apply(x)
                cond &= (y_all >= bound) if is_lo else (y_all < bound)
                continue
            side = (x >= xb) if is_lo else (x < xb)
            near = np.flatnonzero(np.abs(x - xb) <= _NEAR * max(1.0, abs(xb)))
            if near.size:
                y = tr.apply(x[near])
                side[near] = (y >= bound) if is_lo else (y < bound)
            cond &= side
        return cond

    def inside(self, gate: Gate, idx: np.ndarray | None) -> np.ndarray:
        if isinstance(gate, RectangleGate):
            return self.rectangle(gate, idx)
        values = self.matrix(gate.dimensions, idx)
        out = np.asarray(gate.contains(values))
        if out.dtype != bool or out.shape != (values.shape[0],):
            raise GatingError(
                f"gate {type(gate).__name__} returned {out.dtype} {out.shape}, expected a bool "
                f"array of {values.shape[0]} events"
            )
        return out


# --- block-wise evaluation ----------------------------------------------------------------------


def _row_mode(sample: Any) -> str:
    """How a block gets its linear values: 'view' (the sample's own ``linear_values`` on a copy of
    the sample holding only the block's events: a dataclass such as :class:`cytowhim.Sample`),
    'events' (no ``linear_values``: the events as they are) or 'whole' (``linear_values`` of whole
    columns, computed once and sliced)."""
    if getattr(sample, "linear_values", None) is None:
        return "events"
    fields = (
        {f.name for f in dataclasses.fields(sample)} if dataclasses.is_dataclass(sample) else ()
    )
    if (
        not isinstance(sample, type)
        and "events" in fields
        and isinstance(sample.events, np.ndarray)
        and sample.events.ndim == 2
    ):
        try:  # a copy with no events must be possible (it validates like the sample)
            dataclasses.replace(sample, events=np.empty((0, sample.events.shape[1])))
        except Exception:  # noqa: BLE001 - any refusal: use whole columns
            return "whole"
        return "view"
    return "whole"


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where a dimension's values (before any transform) come from: column ``column`` of the
    linear values, fluorochrome ``index`` of compensation ``comp_id``, or a ratio of two sources."""

    kind: str  # 'raw', 'comp' or 'ratio'
    column: int = -1
    comp_id: str = ""
    index: int = -1
    ratio: Ratio | None = None
    parts: tuple[_Source, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Axis:
    """One gate dimension, resolved for this sample: its source and its transform."""

    key: tuple  # identifies the transformed values (shared by gates on the same axis)
    source: _Source
    transform: Any  # Transform, or None for values as they are

    @property
    def monotonic(self) -> bool:
        return self.transform is None or (
            isinstance(self.transform, Transform) and self.transform.monotonic
        )


def _resolve_source(ev: Evaluator, name: str, comp_id: str) -> _Source:
    """The source of channel/marker ``name`` under ``comp_id``, found as :meth:`Evaluator.base`
    finds it (a fluorochrome of the compensation by name, else by channel, else uncompensated)."""
    if comp_id != UNCOMPENSATED:
        comp = ev.compensation(comp_id)
        if comp is not None:
            index = {f: k for k, f in enumerate(comp.fluorochromes)}  # as compensated(): last wins
            for d in comp.detectors:  # compensated() needs every detector: fail as it fails
                ev.column(d)
            if name in index:
                return _Source("comp", comp_id=comp_id, index=index[name])
            channel = ev.channels[ev.column(name)]
            if channel in index:
                return _Source("comp", comp_id=comp_id, index=index[channel])
    return _Source("raw", column=ev.column(name))


def _resolve_axis(ev: Evaluator, dim: Dimension) -> _Axis:
    """A gate dimension resolved for this sample (channel, compensation, ratio, transform)."""
    if dim.ratio:
        r = ev.strategy.transforms[dim.name]
        assert isinstance(r, Ratio)
        parts = (
            _resolve_source(ev, r.numerator, dim.compensation),
            _resolve_source(ev, r.denominator, dim.compensation),
        )
        source = _Source("ratio", ratio=r, parts=parts)
    else:
        source = _resolve_source(ev, dim.name, dim.compensation)
    tr = ev.strategy.transforms[dim.transform] if dim.transform else None
    return _Axis((dim.name, dim.compensation, dim.transform, dim.ratio), source, tr)


def _raw_bound(tr: Any, bound: float) -> float:
    """``bound`` on the scale mapped back to raw values (NaN where the inverse is undefined)."""
    if tr is None:
        return bound
    with np.errstate(all="ignore"):
        return float(tr.inverse(np.array([bound], dtype=np.float64))[0])


def _widen(xb: float) -> float:
    """Half-width of the raw window around a mapped-back bound within which events are decided on
    the scale: twice :data:`_NEAR`, so that it holds every event the whole-sample path checks."""
    return 2.0 * _NEAR * max(1.0, abs(xb))


class _Block:
    """Values of events ``start:stop`` of the sample, computed on first use, kept for the block."""

    def __init__(self, seg: _Segment, start: int, stop: int):
        self.seg = seg
        self.ev = seg.ev
        self.start = start
        self.stop = stop
        self.n = stop - start
        self._block: np.ndarray | None = None
        self._raw: dict[int, np.ndarray] = {}
        self._comp: dict[str, np.ndarray] = {}
        self._ratio: dict[_Source, np.ndarray] = {}
        self._scaled: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def _events(self) -> np.ndarray:
        """The block's events as stored (same dtype), column-major: each column contiguous, so
        that casting a column to float64 reads memory in order; only the columns the segment
        uses are copied."""
        if self._block is None:
            events = self.ev.events[self.start : self.stop]
            t = self.seg.buffer("events", events.shape[1], self.n, events.dtype)
            cols = self.seg.columns
            if 2 * len(cols) >= events.shape[1]:  # most columns: one transposing copy
                np.copyto(t, events.T)
            else:
                for j in cols:
                    np.copyto(t[j], events[:, j])
            self._block = t.T
        return self._block

    def raw(self, j: int) -> np.ndarray:
        """Linear values (float64) of column j, as :meth:`Evaluator.raw` has them; kept in the
        segment's row for column j (so the next block's values go to the same memory)."""
        col = self._raw.get(j)
        if col is None:
            ev, mode = self.ev, self.ev._row_mode
            col = self.seg.buffer("linear", len(self.seg.slots), self.n)[self.seg.slots[j]]
            if mode == "view":
                # The sample's own linear_values, on a copy of the sample holding the block's
                # events (elementwise, so the same values as for the whole sample).
                view = self.seg.view(self._events())
                col[:] = view.linear_values(j)
            elif mode == "events":
                col[:] = self._events()[:, j]
            else:
                col[:] = ev.raw(j)[self.start : self.stop]
            self._raw[j] = col
        return col

    def compensated(self, comp_id: str, index: int) -> np.ndarray:
        """Compensated values of fluorochrome ``index`` (one matrix product per block and
        compensation; see :func:`_compensate`)."""
        rows = self._comp.get(comp_id)
        plan = self.seg.comps[comp_id]
        if rows is None:
            if plan.rows is not None:  # the detectors' rows of the linear values, in order
                for j in plan.columns:
                    self.raw(j)
                raw = self.seg.buffer("linear", len(self.seg.slots), self.n)[plan.rows]
            else:
                raw = self.seg.buffer(("detectors", comp_id), len(plan.columns), self.n)
                for k, j in enumerate(plan.columns):
                    raw[k] = self.raw(j)
            rows = self.seg.buffer(("compensated", comp_id), plan.unmixing.shape[1], self.n)
            _compensate(raw, plan.unmixing, rows)
            self._comp[comp_id] = rows
        return rows[index]

    def base(self, src: _Source) -> np.ndarray:
        """Values of a source for every event of the block (before any transform)."""
        if src.kind == "raw":
            return self.raw(src.column)
        if src.kind == "comp":
            return self.compensated(src.comp_id, src.index)
        values = self._ratio.get(src)
        if values is None:
            assert src.ratio is not None
            values = self._ratio[src] = src.ratio.apply2(
                self.base(src.parts[0]), self.base(src.parts[1])
            )
        return values

    def scaled(self, axis: _Axis, idx: np.ndarray | None) -> np.ndarray:
        """Values of ``axis`` on its scale for block events ``idx`` (all if None), transforming
        only events not transformed before (in this block)."""
        base = self.base(axis.source)
        tr = axis.transform
        if tr is None:
            return base if idx is None else base[idx]
        entry = self._scaled.get(axis.key)
        if entry is None:
            if idx is None:
                full = tr.apply(base)
                self._scaled[axis.key] = (full, np.ones(self.n, dtype=bool))
                return full
            entry = self._scaled[axis.key] = (np.empty(self.n), np.zeros(self.n, dtype=bool))
        return _transform_once(tr, base, entry, idx)


class _Workspace(threading.local):
    """Work arrays of :data:`_BLOCK` columns, kept between calls in each thread.

    Memory fresh from the system costs a page fault per 4 KiB on first touch (about as much as
    gating a small sample); arrays reused from the previous call are mapped and often cached.
    A segment takes its arrays at its start and gives them back at its end, so a call nested in
    another (a transform that gates) gets arrays of its own. At most :data:`_WORKSPACE_BYTES`
    are kept per thread.
    """

    def __init__(self) -> None:
        self.free: list[np.ndarray] = []

    def take(self, rows: int, dtype: np.dtype) -> np.ndarray:
        for i, buf in enumerate(self.free):
            if buf.shape[0] == rows and buf.dtype == dtype:
                return self.free.pop(i)
        return np.empty((rows, _BLOCK), dtype=dtype)

    def give_back(self, bufs: Any) -> None:
        for buf in bufs:
            if buf.shape[1] != _BLOCK:
                continue
            self.free.insert(0, buf)
        kept, keep = 0, []
        for buf in self.free:  # most recent first
            if kept + buf.nbytes <= _WORKSPACE_BYTES:
                keep.append(buf)
                kept += buf.nbytes
        self.free = keep


_WORKSPACE = _Workspace()


def _compensate(raw_t: np.ndarray, unmixing: np.ndarray, out_t: np.ndarray) -> None:
    """``out_t.T = raw_t.T @ unmixing``: compensated values (fluorochromes x events) of detector
    values (detectors x events), in products of at most :data:`_GEMM_SIZE` multiply-adds.

    The product has the orientation and operands of the whole-sample one (events x detectors
    times the whole unmixing matrix), which gives the same values bit for bit (checked with
    OpenBLAS; a one-column product is a matrix-vector product, whose summation order also depends
    on the layout: it gets the row-major events of the whole-sample product). Small products run
    in the calling thread: they gain nothing from BLAS threads, and a threaded product stalls
    whenever another process keeps a core busy (20x slower, measured with OpenBLAS on 2 cores).
    """
    size = unmixing.shape[0] * unmixing.shape[1]
    step = max(256, (_GEMM_SIZE // max(1, size)) // 256 * 256)
    for s in range(0, raw_t.shape[1], step):
        x = raw_t[:, s : s + step].T
        if unmixing.shape[1] == 1:
            x = np.ascontiguousarray(x)
        np.matmul(x, unmixing, out=out_t[:, s : s + step].T)


@dataclasses.dataclass
class _CompPlan:
    """One compensation in a segment: the detectors' columns and the unmixing matrix."""

    columns: list[int]
    unmixing: np.ndarray  # detectors x fluorochromes
    rows: slice | None = None  # the detectors' rows in the segment's linear values, if in order


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
        values = np.empty((m, len(self.axes)), dtype=np.float64)
        for k, axis in enumerate(self.axes):
            values[:, k] = blk.scaled(axis, idx)
        inside = np.asarray(self.gate.contains(values))
        if inside.dtype != bool or inside.shape != (m,):
            raise GatingError(
                f"gate {type(self.gate).__name__} returned {inside.dtype} {inside.shape}, "
                f"expected a bool array of {m} events"
            )
        if idx is None:
            return inside
        out[idx] = inside
        return out


def _bounding_box(gate: Gate) -> tuple[np.ndarray, np.ndarray] | None:
    """(mins, maxs) on the scale outside which no event can be in the gate, or None."""
    if isinstance(gate, PolygonGate):
        verts = np.asarray(gate.vertices, dtype=np.float64)
        return verts.min(axis=0), verts.max(axis=0)
    if isinstance(gate, EllipsoidGate):
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

    def __init__(self, ev: Evaluator, pops: list[Any]):
        self.ev = ev
        self._buffers: dict[Any, np.ndarray] = {}
        self._view: Any = None
        params = getattr(type(ev.sample), "__dataclass_params__", None)
        self._frozen = bool(getattr(params, "frozen", False))
        self._sources: dict[_Source, None] = {}  # every source the plans use
        self.plans: list[_Plan] = []
        for pop in pops:
            if isinstance(pop.gate, RectangleGate):
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


class _NotPlaced(GatingError):
    """A data-driven gate could not place itself on this sample: its population fails, the rest
    of the strategy is gated. (Errors in the gates themselves still end the evaluation.)"""


def _note(ev: Evaluator, pop: Any, message: object) -> None:
    """A GatingWarning about one population, kept in the result's notes."""
    note = f"population {pop.name!r}: {message}"
    ev.notes.append(note)
    warnings.warn(f"{ev.sample_name or 'sample'}: {note}", GatingWarning, stacklevel=5)


def _whole(ev: Evaluator, pop: Any, masks: dict[str, np.ndarray]) -> Gate:
    """Evaluate one population on whole columns (data-driven and custom gates). A data-driven
    gate that cannot place itself on this sample raises _NotPlaced (its population fails)."""
    parent = masks[pop.parent] if pop.parent is not None else None
    gate = pop.gate
    idx = None if parent is None else np.flatnonzero(parent)
    if _is_data_driven(gate):
        failure: GatingError | None = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GatingWarning)
            try:
                gate = gate.resolve(ev.matrix(gate.dimensions, idx))
            except GatingError as exc:
                failure = exc
        for w in caught:  # re-issued outside the recording context
            if issubclass(w.category, GatingWarning):
                _note(ev, pop, w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if failure is not None:
            raise _NotPlaced(str(failure)) from None
    inside = ev.inside(gate, idx)
    if idx is None:
        mask = inside.copy()
    else:
        mask = np.zeros(ev.n, dtype=bool)
        mask[idx[inside]] = True
    masks[pop.name] = mask
    return gate


def apply_strategy(
    strategy: Strategy, sample: Any, markers: dict[str, str] | None = None
) -> GatingResult:
    """Evaluate every population of ``strategy`` on ``sample``; see :class:`GatingResult`.
    ``markers``: strategy name -> the sample's marker or channel (see :mod:`gating.markers`)."""
    ev = Evaluator(strategy, sample, markers)
    ev.check_dimensions()
    masks: dict[str, np.ndarray] = {}
    applied: dict[str, Gate] = {}
    failed: dict[str, str] = {}
    pops = list(strategy.populations)
    i = 0
    while i < len(pops):
        if not _is_pointwise(pops[i].gate):
            pop = pops[i]
            upstream = _failed_upstream(pop, failed)
            if upstream is not None:
                failed[pop.name] = upstream
            else:
                try:
                    applied[pop.name] = _whole(ev, pop, masks)
                except _NotPlaced as exc:
                    failed[pop.name] = str(exc)
                    where = f" ({strategy.source})" if strategy.source else ""
                    _note(ev, pop, f"not gated{where}: {exc}")
            if pop.name in failed:  # empty, so that what follows runs; never reported
                masks[pop.name] = np.zeros(ev.n, dtype=bool)
                applied.setdefault(pop.name, pop.gate)
            i += 1
            continue
        j = i
        while j < len(pops) and _is_pointwise(pops[j].gate):
            j += 1
        _Segment(ev, pops[i:j]).run(masks, applied)
        for pop in pops[i:j]:
            upstream = _failed_upstream(pop, failed)
            if upstream is not None:
                failed[pop.name] = upstream
        i = j
    return GatingResult(strategy=strategy, masks=masks, gates=applied, evaluator=ev, failed=failed)


def _failed_upstream(pop: Any, failed: dict[str, str]) -> str | None:
    """Why a population cannot be reported: its parent or an operand was not gated."""
    for ref in (pop.parent, *pop.gate.references()):
        if ref is not None and ref in failed:
            return f"{'its parent' if ref == pop.parent else 'population'} {ref!r} was not gated"
    return None

"""Block-wise values: a sample's events :data:`_BLOCK` at a time, for the gates that decide each
event from its own values (evaluated by :mod:`gating.plans`).

A :class:`_Block` computes the linear values, compensated values and transforms of its events on
first use and keeps them for that block only, so they stay in the CPU cache and never exist for
the whole sample at once. Each gate dimension is resolved for the sample once (:class:`_Axis`: a
:class:`_Source` and a transform), as :class:`gating.evaluator.Evaluator` resolves it, and a
block's values are those the evaluator would compute for the same events (linear values
elementwise, compensation by a product of the same orientation: :func:`_compensate`). The work
arrays of the blocks are kept between blocks and calls (:class:`_Workspace`).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from .compensation import UNCOMPENSATED
from .evaluator import _NEAR, _transform_once
from .gates import Dimension
from .transforms import Ratio, Transform

if TYPE_CHECKING:
    from .evaluator import Evaluator
    from .plans import _Segment

_BLOCK = 1 << 15  # events per block of the block-wise evaluation
_WORKSPACE_BYTES = 64 << 20  # work arrays kept per thread between calls (see _Workspace)
_GEMM_SIZE = 240_000  # multiply-adds per matrix product of the compensation (see _compensate)


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
        self.memo: dict[tuple, Any] = {}  # what plans share within the block (mixtures)

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
            ev, mode = self.ev, self.seg.row_mode
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

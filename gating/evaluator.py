"""The whole-sample values of a strategy's gate dimensions in one sample (:class:`Evaluator`).

The evaluator finds each channel or marker the strategy names (:mod:`gating.markers`), reads its
linear values, compensates and transforms them, each for the whole sample, computed on first use
and cached: a channel is transformed at most once per event and only for the events that need it
(a gate's parent's). Data-driven and custom gates are evaluated on these values (see
:mod:`gating.engine`), and tools that need a sample's names resolved use it too
(:mod:`gating.freeze`, :mod:`gating.flowjo_export`).

Range and rectangle gates on a monotonic scale are evaluated on raw values: their bounds are
mapped back through the transform's inverse, and only events within rounding distance
(:data:`_NEAR`) of a bound are transformed to decide exactly (so results match transforming every
event).
"""

from __future__ import annotations

import dataclasses
import warnings
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import GatingError, GatingWarning
from .gates import Dimension, Gate, RectangleGate
from .markers import MarkerIndex
from .transforms import Ratio, Transform

if TYPE_CHECKING:
    from .strategy import Strategy

_NEAR = 1e-9  # relative distance to a mapped-back bound within which events are checked exactly


#: Data-driven gates are fitted on at most this many events (a random draw). A 256-bin density,
#: quantiles and robust spreads of 200,000 events vary between draws by well under a bin (the
#: standard error of a quantile of 200,000 events is < 0.002 of the spread), far less than the
#: instrument's own variation; the geometry a gate resolves to is then applied to every event.
FIT_EVENTS = 200_000
#: A parent with fewer events than this in the shared draw is fitted on its own events instead.
MIN_FIT_EVENTS = 20_000


def _draw(n: int, key: str) -> np.ndarray:
    """FIT_EVENTS of range(n), sorted, the same every time for the same n and key."""
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    return np.sort(rng.choice(n, FIT_EVENTS, replace=False))


class _Rows:
    """Some events of a sample that has no ``linear_values``: its events as they are."""

    def __init__(self, events: np.ndarray, channels: list[str], markers: list[str], sample: Any):
        self.events = events
        self.channels = channels
        self.markers = markers
        self.spillover = getattr(sample, "spillover", None)
        self.path = getattr(sample, "path", None)


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
        self.marker_map = markers
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
        self._shared: tuple[np.ndarray, Evaluator] | None = None  # see fit_values
        self._own: tuple[str, Evaluator] | None = None

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
            col = self._raw[j] = self._linear(j)
        return col

    def _linear(self, j: int) -> np.ndarray:
        linear = getattr(self.sample, "linear_values", None)
        if linear is not None:
            return np.ascontiguousarray(linear(j), dtype=np.float64)
        return np.ascontiguousarray(self.events[:, j], dtype=np.float64)

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
            raw = np.empty((self.n, len(idx)), dtype=np.float64, order="F")
            for k, j in enumerate(idx):  # a detector's raw values are not kept as well
                cached = self._raw.get(j)
                raw[:, k] = cached if cached is not None else self._linear(j)
            unmixing = comp.unmixing()
            # column-major in and out, written in place: no transposed copy of the whole sample
            out = np.empty((self.n, unmixing.shape[1]), dtype=np.float64, order="F")
            np.matmul(raw, unmixing, out=out)
            del raw
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

    def fit_draw(self, row_mode: str) -> tuple[np.ndarray, Evaluator] | None:
        """(rows, evaluator of those rows only) of the one random draw of :data:`FIT_EVENTS`
        events that data-driven gates are fitted on (seeded: a file always gets the same gates);
        None when the sample is not larger than that, or its linear values come whole."""
        if self.n <= FIT_EVENTS or row_mode == "whole":
            return None
        if self._shared is None:
            for comp_id in {
                d.compensation for p in self.strategy.populations for d in p.gate.dimensions
            }:
                self.compensation(comp_id)  # built here, so notes land in this evaluator
            rows = _draw(self.n, "")
            self._shared = (rows, self._part(rows, row_mode))
        return self._shared

    def fit_values(
        self,
        dims: tuple[Dimension, ...],
        parent: np.ndarray | None,
        row_mode: str,
        key: str = "",
    ) -> np.ndarray:
        """Values of ``dims`` on their scales for (at most :data:`FIT_EVENTS` of) the events of
        ``parent`` (bool mask over all events, None for all), computed for those events only and
        shared by sibling gates (``key``: the parent's name): how a data-driven gate is fitted
        when the shared draw (:meth:`fit_draw`) holds too few of its parent's events, or the
        sample is small. Shape (events, dims)."""
        if self.n <= FIT_EVENTS or row_mode == "whole":  # whole columns, computed once, cached
            if self.n <= FIT_EVENTS:
                return self.matrix(dims, None if parent is None else np.flatnonzero(parent))
            rows = _draw(self.n, "")  # the draw the other row modes share, and the same rule
            local = rows if parent is None else rows[parent[rows]]
            if local.size < MIN_FIT_EVENTS:
                local = np.flatnonzero(parent)
                if local.size > FIT_EVENTS:
                    local = local[_draw(local.size, key)]
            return self.matrix(dims, local)
        for d in dims:  # build any compensation here, so its notes land in this evaluator
            self.compensation(d.compensation)
        if self._own is None or self._own[0] != key:
            self._own = None  # the previous parent's events go before this one's are copied
            own = np.arange(self.n) if parent is None else np.flatnonzero(parent)
            if own.size > FIT_EVENTS:
                own = own[_draw(own.size, key)]
            self._own = (key, self._part(own, row_mode))
        return self._own[1].matrix(dims, None)

    def drop_fit_values(self) -> None:
        """Free what :meth:`fit_draw` and :meth:`fit_values` kept (once every gate is placed)."""
        self._shared = self._own = None

    def _part(self, rows: np.ndarray, row_mode: str) -> Evaluator:
        """An evaluator of the events ``rows`` only (a copy of the sample holding just them)."""
        events = self.events[rows]
        if row_mode == "view":
            part: Any = dataclasses.replace(self.sample, events=events)
        else:
            part = _Rows(events, self.channels, self.markers, self.sample)
        sub = Evaluator(self.strategy, part, self.marker_map)
        sub._comp_objects = self._comp_objects  # the same matrices, notes said once here
        return sub

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

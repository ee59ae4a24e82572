"""Apply a Strategy to events: compensate once, transform each channel at most once and only for
the events that need it, evaluate each gate on its parent's events.

Range and rectangle gates on a monotonic scale are evaluated on raw values: their bounds are
mapped back through the transform's inverse, and only events within rounding distance of a bound
are transformed to decide exactly (so results match transforming every event).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import GatingError, GatingWarning, MissingDimensionError
from .gates import BooleanGate, Dimension, Gate, RectangleGate
from .result import GatingResult
from .strategy import Strategy
from .transforms import Ratio, Transform

_NEAR = 1e-9  # relative distance to a mapped-back bound within which events are checked exactly


def _is_data_driven(gate: Gate) -> bool:
    return type(gate).resolve is not Gate.resolve


class Evaluator:
    """Values of gate dimensions for one sample, computed once and cached."""

    def __init__(self, strategy: Strategy, sample: Any):
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
        markers = getattr(sample, "markers", None) or [""] * len(self.channels)
        self.markers = [str(m or "") for m in markers]
        self.sample_name = getattr(sample, "path", None)
        self.notes: list[str] = []
        self._raw: dict[int, np.ndarray] = {}
        self._comp: dict[str, dict[str, np.ndarray]] = {}
        self._ratio: dict[tuple[str, str], np.ndarray] = {}
        self._scaled: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    # --- names -----------------------------------------------------------------------------

    def column(self, name: str) -> int:
        """Column of a channel ($PnN) or, failing that, a marker ($PnS) name."""
        if name in self.channels:
            return self.channels.index(name)
        hits = [i for i, m in enumerate(self.markers) if m == name]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            folded = name.casefold()
            hits = [i for i, m in enumerate(self.markers) if m.casefold() == folded]
            if len(hits) == 1:
                return hits[0]
        where = self.strategy.source or "the strategy"
        sample = self.sample_name or "the sample"
        if hits:
            raise MissingDimensionError(
                f"{where}: marker {name!r} labels several channels of {sample}: "
                f"{[self.channels[i] for i in hits]}; name the channel instead"
            )
        labelled = [f"{c} ({m})" if m else c for c, m in zip(self.channels, self.markers)]
        raise MissingDimensionError(
            f"{where}: {sample} has no channel or marker {name!r}; it has: {', '.join(labelled)}"
        )

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
                    warnings.warn(note, GatingWarning, stacklevel=4)
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
        full, done = entry
        if idx is None:
            todo = np.flatnonzero(~done)
            if todo.size == self.n:
                full[:] = tr.apply(base)
            elif todo.size:
                full[todo] = tr.apply(base[todo])
            done[:] = True
            return full
        todo = idx[~done[idx]]
        if todo.size:
            full[todo] = tr.apply(base[todo])
            done[todo] = True
        return full[idx]

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


def apply_strategy(strategy: Strategy, sample: Any) -> GatingResult:
    """Evaluate every population of ``strategy`` on ``sample``; see :class:`GatingResult`."""
    ev = Evaluator(strategy, sample)
    masks: dict[str, np.ndarray] = {}
    applied: dict[str, Gate] = {}
    for pop in strategy.populations:
        parent = masks[pop.parent] if pop.parent is not None else None
        gate = pop.gate
        if isinstance(gate, BooleanGate):
            mask = gate.combine([masks[r] for r in gate.references()])
            if parent is not None:
                mask &= parent
        else:
            idx = None if parent is None else np.flatnonzero(parent)
            if _is_data_driven(gate):
                gate = gate.resolve(ev.matrix(gate.dimensions, idx))
            inside = ev.inside(gate, idx)
            if idx is None:
                mask = inside.copy()
            else:
                mask = np.zeros(ev.n, dtype=bool)
                mask[idx[inside]] = True
        masks[pop.name] = mask
        applied[pop.name] = gate
    return GatingResult(strategy=strategy, masks=masks, gates=applied, evaluator=ev)

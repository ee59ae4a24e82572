"""Apply a Strategy to events: compensate, transform each channel at most once per event and only
for the events that need it, evaluate each gate on its parent's events.

Runs of consecutive populations whose gates decide each event from its own values (rectangles,
polygons, ellipsoids, booleans) are evaluated block by block (:mod:`gating.plans`):
:data:`gating.blocks._BLOCK` events at a time, every population of the run in turn, so the linear
values, compensated values and transforms of a block are computed once, stay in the CPU cache, and
never exist for the whole sample at once (:mod:`gating.blocks`). Data-driven and custom gates see all their parent's
events at once (:class:`Evaluator`, whose whole-sample values are computed on first use:
:mod:`gating.evaluator`). A data-driven gate that cannot place itself on the sample fails its
population and those that depend on it; the rest of the strategy is gated.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .blocks import _row_mode
from .errors import GatingError, GatingWarning
from .evaluator import Evaluator  # also gating.engine.Evaluator, as before the split
from .gates import BooleanGate, EllipsoidGate, Gate, PolygonGate, RectangleGate
from .plans import _Segment
from .result import GatingResult
from .strategy import Strategy

_POINTWISE = (RectangleGate, PolygonGate, EllipsoidGate, BooleanGate)


def _is_data_driven(gate: Gate) -> bool:
    return type(gate).resolve is not Gate.resolve


def _is_pointwise(gate: Gate) -> bool:
    """Whether the gate decides each event from that event's values alone: the built-in geometric
    and boolean gates (exactly those types: a subclass may override ``contains``)."""
    return type(gate) in _POINTWISE


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
    row_mode = _row_mode(sample)
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
        _Segment(ev, pops[i:j], row_mode).run(masks, applied)
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

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

import dataclasses
import warnings
from typing import Any

import numpy as np

from .blocks import _row_mode
from .errors import GatingError, GatingWarning
from .evaluator import Evaluator  # also gating.engine.Evaluator, as before the split
from .gates import Gate
from .plans import _Segment
from .result import GatingResult
from .strategy import Population, Strategy


def _is_data_driven(gate: Gate) -> bool:
    return type(gate).resolve is not Gate.resolve


def _is_pointwise(gate: Gate) -> bool:
    """Whether the gate decides each event from that event's values alone (``Gate.pointwise``),
    as declared by its class or by the class it inherits ``contains`` from."""
    cls = type(gate)
    for klass in cls.__mro__:
        if "contains" in vars(klass) or "pointwise" in vars(klass):
            return bool(vars(klass).get("pointwise", False))
    return False


class _NotPlaced(GatingError):
    """A data-driven gate could not place itself on this sample: its population fails, the rest
    of the strategy is gated. (Errors in the gates themselves still end the evaluation.)"""


def _note(ev: Evaluator, pop: Any, message: object) -> None:
    """A GatingWarning about one population, kept in the result's notes."""
    note = f"population {pop.name!r}: {message}"
    ev.notes.append(note)
    warnings.warn(f"{ev.sample_name or 'sample'}: {note}", GatingWarning, stacklevel=5)


def _resolve(ev: Evaluator, pop: Any, masks: dict[str, np.ndarray], row_mode: str) -> Gate:
    """The geometry a data-driven gate takes on this sample, fitted on (at most
    :data:`gating.evaluator.FIT_EVENTS` of) its parent's events. Raises _NotPlaced when it
    cannot place itself."""
    parent = masks[pop.parent] if pop.parent is not None else None
    failure: GatingError | None = None
    gate = pop.gate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GatingWarning)
        try:
            gate = gate.resolve(ev.fit_values(gate.dimensions, parent, row_mode, pop.parent or ""))
        except GatingError as exc:
            failure = exc
    for w in caught:  # re-issued outside the recording context
        if issubclass(w.category, GatingWarning):
            _note(ev, pop, w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if failure is not None:
        raise _NotPlaced(str(failure)) from None
    return gate


def _whole(ev: Evaluator, pop: Any, gate: Gate, masks: dict[str, np.ndarray]) -> None:
    """Evaluate a gate that is not pointwise (a custom gate) on all its parent's events at once."""
    parent = masks[pop.parent] if pop.parent is not None else None
    idx = None if parent is None else np.flatnonzero(parent)
    inside = ev.inside(gate, idx)
    if idx is None:
        mask = inside.copy()
    else:
        mask = np.zeros(ev.n, dtype=bool)
        mask[idx[inside]] = True
    masks[pop.name] = mask


def apply_strategy(
    strategy: Strategy, sample: Any, markers: dict[str, str] | None = None
) -> GatingResult:
    """Evaluate every population of ``strategy`` on ``sample``; see :class:`GatingResult`.
    ``markers``: strategy name -> the sample's marker or channel (see :mod:`gating.markers`).

    Populations are taken in order. A data-driven gate is resolved as soon as its parent's events
    are known (fitted on at most :data:`gating.evaluator.FIT_EVENTS` of them); the geometry it
    takes, like every fixed gate, joins the run of pointwise populations that is evaluated block
    by block, so no gate needs whole-sample compensated or transformed columns."""
    ev = Evaluator(strategy, sample, markers)
    row_mode = _row_mode(sample)
    ev.check_dimensions()
    masks: dict[str, np.ndarray] = {}
    applied: dict[str, Gate] = {}
    failed: dict[str, str] = {}
    pending: list[Population] = []  # pointwise populations not evaluated yet
    waiting: set[str] = set()

    def flush() -> None:
        if pending:
            _Segment(ev, pending, row_mode).run(masks, applied)
            pending.clear()
            waiting.clear()

    for pop in strategy.populations:
        upstream = _failed_upstream(pop, failed)
        if upstream is not None:
            failed[pop.name] = upstream
            masks[pop.name] = np.zeros(ev.n, dtype=bool)  # never reported
            applied[pop.name] = pop.gate
            continue
        gate = pop.gate
        if _is_data_driven(gate):
            if pop.parent in waiting:
                flush()  # its parent's events are needed now
            try:
                gate = _resolve(ev, pop, masks, row_mode)
            except _NotPlaced as exc:
                failed[pop.name] = str(exc)
                where = f" ({strategy.source})" if strategy.source else ""
                _note(ev, pop, f"not gated{where}: {exc}")
                masks[pop.name] = np.zeros(ev.n, dtype=bool)  # never reported
                applied[pop.name] = pop.gate
                continue
        if _is_pointwise(gate):
            pending.append(pop if gate is pop.gate else dataclasses.replace(pop, gate=gate))
            waiting.add(pop.name)
            continue
        flush()
        _whole(ev, pop, gate, masks)
        applied[pop.name] = gate
    flush()
    ev.drop_fit_values()
    return GatingResult(strategy=strategy, masks=masks, gates=applied, evaluator=ev, failed=failed)


def _failed_upstream(pop: Any, failed: dict[str, str]) -> str | None:
    """Why a population cannot be reported: its parent or an operand was not gated."""
    for ref in (pop.parent, *pop.gate.references()):
        if ref is not None and ref in failed:
            return f"{'its parent' if ref == pop.parent else 'population'} {ref!r} was not gated"
    return None

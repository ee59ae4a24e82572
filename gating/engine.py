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
from .evaluator import MIN_FIT_EVENTS, Evaluator  # also gating.engine.Evaluator, as before
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


def _resolve(ev: Evaluator, pop: Any, values: np.ndarray) -> Gate:
    """The geometry a data-driven gate takes on this sample, fitted on ``values`` (its parent's
    events, or a draw of them). Raises _NotPlaced when it cannot place itself."""
    failure: GatingError | None = None
    gate = pop.gate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GatingWarning)
        try:
            gate = gate.resolve(values)
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


class _Pass:
    """Pointwise populations waiting to be evaluated, block by block, on a set of events: all of
    the sample's, or the draw data-driven gates are fitted on."""

    def __init__(self, ev: Evaluator, row_mode: str):
        self.ev, self.row_mode = ev, row_mode
        self.masks: dict[str, np.ndarray] = {}
        self.applied: dict[str, Gate] = {}
        self.pending: list[Population] = []

    def add(self, pop: Population) -> None:
        self.pending.append(pop)

    def need(self, name: str | None) -> np.ndarray | None:
        """The mask of ``name`` (None: all events), evaluating what waits if it is among it."""
        if name is None:
            return None
        if name not in self.masks:
            self.flush()
        return self.masks[name]

    def flush(self) -> None:
        if self.pending:
            _Segment(self.ev, self.pending, self.row_mode).run(self.masks, self.applied)
            self.pending = []


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
    full = _Pass(ev, row_mode)  # every event: what the result reports
    failed: dict[str, str] = {}
    fitting = any(_is_data_driven(p.gate) for p in strategy.populations)
    drawn = ev.fit_draw(row_mode) if fitting else None
    draw = None if drawn is None else _Pass(drawn[1], row_mode)  # where gates are fitted

    def skip(pop: Population) -> None:  # not gated: empty, so that what follows runs
        full.masks[pop.name] = np.zeros(ev.n, dtype=bool)
        full.applied[pop.name] = pop.gate
        if draw is not None:
            draw.masks[pop.name] = np.zeros(draw.ev.n, dtype=bool)

    for pop in strategy.populations:
        upstream = _failed_upstream(pop, failed)
        if upstream is not None:
            failed[pop.name] = upstream
            skip(pop)
            continue
        gate = pop.gate
        if _is_data_driven(gate):
            values, on_draw = None, False
            if draw is not None:  # on the draw, when it holds enough of the parent's events
                parent = draw.need(pop.parent)
                local = None if parent is None else np.flatnonzero(parent)
                if local is None or local.size >= MIN_FIT_EVENTS:
                    values = draw.ev.matrix(gate.dimensions, local)
                    on_draw = True
            if values is None:  # else on the parent's own events
                parent = full.need(pop.parent)
                values = ev.fit_values(gate.dimensions, parent, row_mode, pop.parent or "")
            try:
                gate = _resolve(ev, pop, values)
            except _NotPlaced as exc:
                if on_draw:  # its event count is the draw's, not the file's
                    exc = _NotPlaced(
                        f"{exc} (the parent's events in a random draw of {draw.ev.n:,} of the "
                        f"file's {ev.n:,} events)"
                    )
                failed[pop.name] = str(exc)
                where = f" ({strategy.source})" if strategy.source else ""
                _note(ev, pop, f"not gated{where}: {exc}")
                skip(pop)
                continue
        if _is_pointwise(gate):
            resolved = pop if gate is pop.gate else dataclasses.replace(pop, gate=gate)
            full.add(resolved)
            if draw is not None:
                draw.add(resolved)
            continue
        full.flush()  # a custom gate: on all its parent's events at once
        _whole(ev, pop, gate, full.masks)
        full.applied[pop.name] = gate
        if draw is not None:
            draw.flush()
            draw.masks[pop.name] = full.masks[pop.name][drawn[0]]  # type: ignore[index]
    full.flush()
    ev.drop_fit_values()
    return GatingResult(
        strategy=strategy, masks=full.masks, gates=full.applied, evaluator=ev, failed=failed
    )


def _failed_upstream(pop: Any, failed: dict[str, str]) -> str | None:
    """Why a population cannot be reported: its parent or an operand was not gated."""
    for ref in (pop.parent, *pop.gate.references()):
        if ref is not None and ref in failed:
            return f"{'its parent' if ref == pop.parent else 'population'} {ref!r} was not gated"
    return None

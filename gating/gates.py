"""Gates: geometric regions over one or more dimensions, and boolean combinations of gates.

A gate sees only values (events x dimensions, on the gate's scale) and answers which events are
inside: ``gate.contains(values) -> bool array``. Which events it is given (its parent's), which
columns, compensation and transforms, is the engine's job (:mod:`gating.engine`, with the values
of :mod:`gating.evaluator` and :mod:`gating.blocks`).

Data-driven gates place themselves per sample: ``gate.resolve(values)`` returns a concrete gate
(geometry) from the parent's events; plain geometric gates resolve to themselves.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from .compensation import UNCOMPENSATED
from .errors import GatingError
from .limits import MAX_POLYGON_VERTICES, excerpt


@dataclass(frozen=True)
class Dimension:
    """One axis of a gate.

    name: a channel ($PnN) or marker ($PnS) name, resolved per sample; for a ratio dimension the
    id of the :class:`~gating.transforms.Ratio` in the strategy.
    compensation: ``'uncompensated'``, ``'FCS'`` (the sample's own spillover) or a compensation id.
    transform: id of a transform in the strategy (None: the compensated raw values).
    """

    name: str
    compensation: str = UNCOMPENSATED
    transform: str | None = None
    ratio: bool = False

    def label(self) -> str:
        return self.name


class Gate(ABC):
    """Base class of every gate. Subclass it (and :func:`register_gate` it) for a custom gate."""

    kind: ClassVar[str] = "gate"
    #: True when ``contains`` decides each event from that event's values alone, so the engine
    #: may evaluate the gate block by block; a subclass that overrides ``contains`` must say so
    #: again (else it is evaluated on its parent's events at once).
    pointwise: ClassVar[bool] = False
    dimensions: tuple[Dimension, ...]  # each subclass declares it (a dataclass field)

    @abstractmethod
    def contains(self, values: np.ndarray) -> np.ndarray:
        """Bool array (events,) for ``values`` (events x dimensions, on the gate's scale)."""
        ...

    def resolve(self, values: np.ndarray) -> Gate:
        """The concrete gate for this sample (data-driven gates compute their geometry here)."""
        return self

    def geometry(self) -> dict[str, Any]:
        """Plain-data description of the region (for results, reports and audit)."""
        return {}

    def references(self) -> tuple[str, ...]:
        """Populations this gate's membership depends on besides its parent (boolean gates)."""
        return ()


class DataDrivenGate(Gate):
    """Base of gates that place themselves on each sample: ``resolve(values)`` (the parent's
    events) gives the concrete gate; membership is that gate's."""

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)


_GRID = 64  # cells per side of a polygon's membership grid (see PolygonGate._grid)


def _number(v: Any, what: str) -> float:
    """``v`` as a float (numbers written as text too, e.g. YAML's '3e4'); GatingError saying
    ``what`` it is when it is not a number, or NaN."""
    if v is None or isinstance(v, bool) or (isinstance(v, str) and len(v) > 100):
        raise GatingError(f"{what} must be a number, got {excerpt(v)}")
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        raise GatingError(f"{what} must be a number, got {excerpt(v)}") from None
    if math.isnan(x):
        raise GatingError(f"{what} is NaN (not a number); a gate needs numbers")
    return x


def _finite(v: Any, what: str) -> float:
    x = _number(v, what)
    if math.isinf(x):
        raise GatingError(f"{what} is {x}; a gate needs finite numbers")
    return x


def _bound(v: Any, which: str, dim: str) -> float | None:
    """A rectangle bound: None (open), or a number that is not NaN. Infinity means open where it
    can (min -inf, max +inf: None); min +inf or max -inf would leave no event, and are refused."""
    if v is None:
        return None
    x = _number(v, f"rectangle gate: {which} of {dim!r}")
    if math.isinf(x):
        if (x < 0) == (which == "min"):
            return None  # -inf as min, +inf as max: an open end
        raise GatingError(
            f"rectangle gate: {which} of {dim!r} is {x}: no event can be inside; leave it out "
            "(null) for an open end"
        )
    return x


@dataclass(frozen=True)
class RectangleGate(Gate):
    """min <= x < max on every dimension (Gating-ML); a None bound is open. One dimension: a range."""

    kind: ClassVar[str] = "rectangle"
    pointwise: ClassVar[bool] = True
    dimensions: tuple[Dimension, ...]
    mins: tuple[float | None, ...]
    maxs: tuple[float | None, ...]

    def __post_init__(self) -> None:
        n = len(self.dimensions)
        if n == 0 or len(self.mins) != n or len(self.maxs) != n:
            raise GatingError(
                f"rectangle gate needs one (min, max) per dimension: {n} dimensions, "
                f"{len(self.mins)} mins, {len(self.maxs)} maxs"
            )
        names = [d.name for d in self.dimensions]
        object.__setattr__(self, "mins", tuple(map(_bound, self.mins, ["min"] * n, names)))
        object.__setattr__(self, "maxs", tuple(map(_bound, self.maxs, ["max"] * n, names)))
        for d, lo, hi in zip(self.dimensions, self.mins, self.maxs):
            if lo is None and hi is None:
                raise GatingError(f"rectangle gate: dimension {d.name!r} has neither min nor max")
            if lo is not None and hi is not None and lo > hi:
                raise GatingError(
                    f"rectangle gate: on {d.name!r} min {lo:g} is above max {hi:g} (min <= x < "
                    "max): no event can be inside"
                )

    @classmethod
    def beyond(cls, dimensions: tuple[Dimension, ...], cut: float, above: bool) -> RectangleGate:
        """The range of one dimension above ``cut`` (inclusive), or below it."""
        return cls(dimensions, (cut,), (None,)) if above else cls(dimensions, (None,), (cut,))

    def contains(self, values: np.ndarray) -> np.ndarray:
        inside = np.ones(values.shape[0], dtype=bool)
        for j, (lo, hi) in enumerate(zip(self.mins, self.maxs)):
            col = values[:, j]
            if lo is not None:
                inside &= col >= lo
            if hi is not None:
                inside &= col < hi
        return inside

    def geometry(self) -> dict[str, Any]:
        return {"min": list(self.mins), "max": list(self.maxs)}


@dataclass(frozen=True)
class PolygonGate(Gate):
    """A polygon in two dimensions, with the winding rule of Gating-ML's reference code (flowutils,
    as FlowKit uses): a point is inside where the boundary winds around it an odd number of times
    (so a self-crossing polygon has holes), and edges are half-open (for the unit square,
    (0.5, 0) is inside, (0.5, 1) and (1, 0.5) are not)."""

    kind: ClassVar[str] = "polygon"
    pointwise: ClassVar[bool] = True
    dimensions: tuple[Dimension, ...]
    vertices: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.dimensions) != 2:
            raise GatingError(f"polygon gate needs 2 dimensions, got {len(self.dimensions)}")
        try:
            n = len(self.vertices)
        except TypeError:
            raise GatingError(
                f"polygon vertices must be a list of [x, y] pairs, got {excerpt(self.vertices)}"
            ) from None
        if n > MAX_POLYGON_VERTICES:
            raise GatingError(
                f"polygon gate has {n:,} vertices, more than the {MAX_POLYGON_VERTICES:,} a "
                "polygon may have"
            )
        try:  # the usual case at numpy speed (FlowJo's grid polygons are built per block)
            arr = np.asarray(self.vertices, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.shape == (n, 2) and n >= 3 and np.isfinite(arr).all():
            object.__setattr__(self, "vertices", tuple(map(tuple, arr.tolist())))
            return
        verts = []
        for k, v in enumerate(self.vertices, start=1):
            if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != 2:
                raise GatingError(f"polygon vertex {k} must be an [x, y] pair, got {excerpt(v)}")
            verts.append(tuple(_finite(c, f"polygon vertex {k} {xy}") for c, xy in zip(v, "xy")))
        if len(verts) < 3:
            raise GatingError(f"polygon gate needs at least 3 vertices, got {len(verts)}")
        object.__setattr__(self, "vertices", tuple(verts))

    @cached_property
    def _verts(self) -> np.ndarray:
        return np.ascontiguousarray(self.vertices, dtype=np.float64)

    @cached_property
    def _box(self) -> tuple[float, float, float, float]:
        lo, hi = self._verts.min(axis=0), self._verts.max(axis=0)
        return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])

    @cached_property
    def _grid(self) -> tuple[float, float, float, float, np.ndarray] | None:
        """A :data:`_GRID` x :data:`_GRID` grid over the bounding box: (x0, y0, cells per unit x,
        cells per unit y, state per cell: 0 outside, 1 inside, 2 near an edge).

        A cell that no edge comes within a small margin of has one winding number throughout
        (it changes only across an edge), and the winding count computes it exactly there
        (rounding could only matter within ~1e-15 of the extent from an edge, the margin is
        1e-7): the count at the cell's centre holds for every event in it. Events in cells near
        an edge get the winding count each. None when the box is degenerate or not finite.
        """
        x0, x1, y0, y1 = self._box
        if not all(np.isfinite((x0, x1, y0, y1))) or not (x1 > x0 and y1 > y0):
            return None
        g = _GRID
        ext = max(x1 - x0, y1 - y0)
        margin = 1e-7 * ext
        k = np.arange(g, dtype=np.float64)
        dx, dy = (x1 - x0) / g, (y1 - y0) / g
        cx0, cx1 = (x0 + k * dx - margin)[:, None], (x0 + (k + 1) * dx + margin)[:, None]
        cy0, cy1 = (y0 + k * dy - margin)[None, :], (y0 + (k + 1) * dy + margin)[None, :]
        near = np.zeros((g, g), dtype=bool)
        verts = self._verts
        for (ax, ay), (bx, by) in zip(verts, np.roll(verts, -1, axis=0)):
            ex, ey = bx - ax, by - ay
            # cells whose (widened) box meets the edge's box ...
            meets = (cx1 >= min(ax, bx)) & (cx0 <= max(ax, bx)) & (cy1 >= min(ay, by))
            meets &= cy0 <= max(ay, by)
            # ... unless all four corners lie clearly on one side of the edge's line
            tol = 1e-9 * (abs(ex) + abs(ey)) * ext
            sides = [ex * (cy - ay) - (cx - ax) * ey for cx in (cx0, cx1) for cy in (cy0, cy1)]
            above = np.logical_and.reduce([s > tol for s in sides])
            below = np.logical_and.reduce([s < -tol for s in sides])
            near |= meets & ~(above | below)
        centres = np.empty((g * g, 2), dtype=np.float64)
        centres[:, 0] = np.repeat(x0 + (k + 0.5) * dx, g)
        centres[:, 1] = np.tile(y0 + (k + 0.5) * dy, g)
        state = (self._winding_inside(centres)).astype(np.int8)
        state[near.ravel()] = 2
        return x0, y0, g / (x1 - x0), g / (y1 - y0), state

    def _winding_inside(self, pts: np.ndarray) -> np.ndarray:
        """The reference winding count (flowutils' C code) for points (n x 2, float64): odd is
        inside."""
        from flowutils import gating_c  # C winding-count, the Gating-ML reference code

        pts = np.ascontiguousarray(pts, dtype=np.float64)
        verts = self._verts
        return np.asarray(gating_c.points_in_polygon(verts, len(verts), pts, len(pts))) % 2 != 0

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.contains_xy(values[:, 0], values[:, 1])

    def contains_xy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """:meth:`contains` for the two coordinates as separate arrays (no n x 2 copy needed)."""
        n = x.shape[0]
        inside = np.zeros(n, dtype=bool)
        if n == 0:
            return inside
        x0, x1, y0, y1 = self._box
        # Only events in the bounding box can be inside: test those.
        box = x >= x0
        box &= x <= x1
        box &= y >= y0
        box &= y <= y1
        idx = np.flatnonzero(box)
        if idx.size == 0:
            return inside
        xs, ys = x[idx], y[idx]
        grid = self._grid
        if grid is None or idx.size < 64:
            inside[idx] = self._winding_inside(np.column_stack([xs, ys]))
            return inside
        gx0, gy0, sx, sy, state = grid
        u = xs - gx0  # >= 0 in the box
        u *= sx
        cell = u.astype(np.intp)
        np.minimum(cell, _GRID - 1, out=cell)
        cell *= _GRID
        u = ys - gy0
        u *= sy
        j = u.astype(np.intp)
        np.minimum(j, _GRID - 1, out=j)
        cell += j
        st = state[cell]
        result = st == 1
        hard = np.flatnonzero(st == 2)
        if hard.size:
            result[hard] = self._winding_inside(np.column_stack([xs[hard], ys[hard]]))
        inside[idx] = result
        return inside

    def geometry(self) -> dict[str, Any]:
        return {"vertices": [list(v) for v in self.vertices]}


@dataclass(frozen=True)
class EllipsoidGate(Gate):
    """(x - mean)' inv(covariance) (x - mean) <= distance_square; boundary inclusive."""

    kind: ClassVar[str] = "ellipsoid"
    pointwise: ClassVar[bool] = True
    dimensions: tuple[Dimension, ...]
    mean: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    distance_square: float

    def __post_init__(self) -> None:
        n = len(self.dimensions)
        try:
            cov = np.asarray(self.covariance, dtype=np.float64)
            mean = [_finite(v, "ellipsoid mean") for v in self.mean]
        except (TypeError, ValueError) as exc:
            if isinstance(exc, GatingError):
                raise
            raise GatingError(
                f"ellipsoid gate: mean and covariance must be numbers ({exc})"
            ) from None
        if n == 0 or len(mean) != n or cov.shape != (n, n):
            raise GatingError(
                f"ellipsoid gate over {n} dimensions needs a {n}-vector mean and {n} x {n} "
                f"covariance, got {len(mean)} and {cov.shape}"
            )
        if not np.all(np.isfinite(cov)):
            raise GatingError("ellipsoid covariance holds NaN or infinity; it needs finite numbers")
        d2 = _finite(self.distance_square, "ellipsoid distance_square")
        if d2 <= 0:
            raise GatingError(f"ellipsoid distance_square must be above 0, got {d2:g}")
        if np.linalg.matrix_rank(cov) < n:
            raise GatingError(
                f"ellipsoid covariance {cov.tolist()} is singular: it describes no ellipse"
            )
        object.__setattr__(self, "mean", tuple(mean))
        object.__setattr__(self, "covariance", tuple(tuple(map(float, r)) for r in cov))
        object.__setattr__(self, "distance_square", d2)

    @cached_property
    def _inverse(self) -> np.ndarray:
        return np.linalg.inv(np.asarray(self.covariance))

    def contains(self, values: np.ndarray) -> np.ndarray:
        d = np.asarray(values, dtype=np.float64) - np.asarray(self.mean)
        return np.einsum("ij,jk,ik->i", d, self._inverse, d) <= self.distance_square

    def geometry(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean),
            "covariance": [list(r) for r in self.covariance],
            "distance_square": self.distance_square,
        }


@dataclass(frozen=True)
class BooleanGate(Gate):
    """and / or / not over other populations' memberships; each operand may be complemented."""

    kind: ClassVar[str] = "boolean"
    pointwise: ClassVar[bool] = True
    op: str
    operands: tuple[tuple[str, bool], ...]  # (population id, use as complement)
    dimensions: tuple[Dimension, ...] = ()

    def __post_init__(self) -> None:
        if self.op not in ("and", "or", "not"):
            raise GatingError(f"boolean gate operator must be and, or or not; got {self.op!r}")
        ops = tuple((str(r), bool(c)) for r, c in self.operands)
        if self.op == "not" and len(ops) != 1:
            raise GatingError(f"a 'not' gate takes exactly one operand, got {len(ops)}")
        if self.op != "not" and len(ops) < 2:
            raise GatingError(f"an '{self.op}' gate takes at least two operands, got {len(ops)}")
        object.__setattr__(self, "operands", ops)

    def combine(self, masks: list[np.ndarray]) -> np.ndarray:
        """Membership from the operands' full-length masks (in ``operands`` order)."""
        terms = [~m if comp else m for m, (_, comp) in zip(masks, self.operands)]
        if self.op == "not":
            return ~terms[0]
        out = terms[0].copy()
        for t in terms[1:]:
            if self.op == "and":
                out &= t
            else:
                out |= t
        return out

    def contains(self, values: np.ndarray) -> np.ndarray:
        raise GatingError("a boolean gate is evaluated from other populations, not from values")

    def references(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.operands)

    def geometry(self) -> dict[str, Any]:
        return {"op": self.op, "operands": [[r, c] for r, c in self.operands]}


def quadrant_rectangles(
    dividers: dict[str, tuple[Dimension, tuple[float, ...]]],
    quadrants: dict[str, dict[str, float]],
) -> dict[str, RectangleGate]:
    """Gating-ML quadrants as rectangles.

    dividers: divider id -> (dimension, sorted cut values); quadrants: quadrant id -> {divider id:
    a location inside the quadrant}. Each quadrant becomes the rectangle between the cuts around
    its location on each divider it names (open at the ends).
    """
    out = {}
    for qid, positions in quadrants.items():
        dims, mins, maxs = [], [], []
        for did, location in positions.items():
            if did not in dividers:
                raise GatingError(f"quadrant {qid!r} refers to unknown divider {did!r}")
            dim, cuts = dividers[did]
            cuts = tuple(sorted(cuts))
            k = int(np.searchsorted(cuts, location, side="right"))
            dims.append(dim)
            mins.append(cuts[k - 1] if k > 0 else None)
            maxs.append(cuts[k] if k < len(cuts) else None)
        out[qid] = RectangleGate(tuple(dims), tuple(mins), tuple(maxs))
    return out


# --- custom gates -------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_gate(name: str) -> Callable[[Any], Any]:
    """Register a custom gate under ``name`` so strategy files can use it by that name only.

    Decorate either a function ``f(values, **params) -> bool array`` (values: events x dimensions)
    or a :class:`Gate` subclass whose constructor takes ``dimensions`` and the params::

        @register_gate("upper_tail")
        def upper_tail(values, quantile=0.99):
            return values[:, 0] >= np.quantile(values[:, 0], quantile)
    """

    def decorate(obj: Any) -> Any:
        if not callable(obj):
            raise TypeError(f"register_gate({name!r}) needs a function or a Gate subclass")
        _REGISTRY[name] = obj
        return obj

    return decorate


def registered_gates() -> list[str]:
    return sorted(_REGISTRY)


def make_registered(name: str, dimensions: tuple[Dimension, ...], params: dict[str, Any]) -> Gate:
    """A gate from the registry by name (GatingError listing the known names if absent)."""
    try:
        obj = _REGISTRY[name]
    except KeyError:
        raise GatingError(
            f"no custom gate registered as {name!r}; registered: {registered_gates() or 'none'}"
        ) from None
    if isinstance(obj, type) and issubclass(obj, Gate):
        return obj(dimensions=dimensions, **params)
    return FunctionGate(dimensions=dimensions, function=name, params=tuple(sorted(params.items())))


@dataclass(frozen=True)
class FunctionGate(Gate):
    """A gate computed by a registered function ``f(values, **params) -> bool array``."""

    kind: ClassVar[str] = "custom"
    dimensions: tuple[Dimension, ...]
    function: str
    params: tuple[tuple[str, Any], ...] = field(default=())

    def contains(self, values: np.ndarray) -> np.ndarray:
        if self.function not in _REGISTRY:
            raise GatingError(f"custom gate function {self.function!r} is not registered")
        out = np.asarray(_REGISTRY[self.function](values, **dict(self.params)))
        if out.shape != (values.shape[0],) or out.dtype != bool:
            raise GatingError(
                f"custom gate {self.function!r} must return a bool array of shape "
                f"({values.shape[0]},), got {out.dtype} {out.shape}"
            )
        return out

    def geometry(self) -> dict[str, Any]:
        return {"function": self.function, "params": dict(self.params)}

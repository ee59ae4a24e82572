"""The project's declarative strategy format (YAML).

A strategy names markers (CD3, CD4 ...) or channels, so one file works across instruments whose
channel names differ::

    name: TBNK
    compensation: FCS            # the file's spillover (default) | uncompensated | matrix.csv
    transforms:
      fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}
    populations:
      - name: lymphocytes
        gate: {polygon: {x: FSC-A, y: SSC-A, vertices: [[2e4, 0], [9e4, 0], [9e4, 5e4], [2e4, 5e4]]}}
      - name: T cells
        parent: lymphocytes
        gate: {range: {dimension: CD3, transform: fluor, min: 0.35}}
      - quadrant: {parent: T cells, x: CD4, y: CD8, transform: fluor, at: [0.4, 0.4],
                   populations: {CD4+: "+-", CD8+: "-+", CD4+CD8+: "++", CD4-CD8-: "--"}}
      - name: NK cells
        parent: lymphocytes
        gate: {and: [CD56+, {not: T cells}]}

Gates: range, rectangle, polygon, ellipse, quadrant (several populations at once), and / or / not,
custom (a function or Gate subclass registered in Python with :func:`gating.register_gate`; strategy
files name it, they never import code). A dimension is a name, or a mapping with ``name``,
``transform`` and ``compensation``; ``transform`` on a gate applies to all its dimensions.

Data-driven gates place themselves on each sample and resolve to one of the gates above; their
options, with defaults (unknown keys are an error)::

    threshold:   {dimension, sign: "+", search: [0.2, 0.8], depth: 0.5, bandwidth: null,
                  peaks: null, prefer: deepest, fallback: null, no_valley: null}
    mixture_cut: {dimension, sign: "+", search: [0.2, 0.8], quantile: null, fallback: null}
    tail:        {dimension, side: upper, k: 3, quantile: null, keep: tail}
    quantile:    {dimension, lower: 0.0, upper: null}
    cluster:     {x, y, at: [x, y], quantile: 0.95, components: 4, max_offset: null}
    corner:      {x, y, signs: "++", search: [[0.2, 0.8], [0.2, 0.8]], fallback: [null, null],
                  + the threshold's valley options}
    singlets:    {area, height, width: 4}
    quadrant:    {..., at: auto, search, fallback, per_half: false, + valley options}
    scatter:     {parent, x, y, components: 6, max_offset: 0.35, max_distance2: 16,
                  shape: mixture,  # or polygon: the region traced as a polygon
                  populations: {name: [x, y] | {at: [x, y], required: false}}}

(:mod:`gating.adaptive` and :mod:`gating.clusters` say what each does; the README's gate
reference explains every option.)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import GatingError, StrategyError
from .gates import (
    BooleanGate,
    Dimension,
    EllipsoidGate,
    Gate,
    PolygonGate,
    RectangleGate,
    make_registered,
)
from .limits import MAX_POLYGON_VERTICES, excerpt, read_yaml
from .strategy import Population, Strategy, name_problem
from .transforms import TRANSFORMS, Ratio, Transform, make_transform

_GATE_KEYS = (
    "range",
    "rectangle",
    "polygon",
    "ellipse",
    "and",
    "or",
    "not",
    "custom",
    "threshold",
    "singlets",
    "scatter_cluster",
    "quantile",
    "tail",
    "mixture_cut",
    "cluster",
    "corner",
)

# the keys each data-driven gate takes (a typo is an error, not a silent default)
_VALLEY_KEYS = {"depth", "bandwidth", "peaks", "prefer", "no_valley"}
_ADAPTIVE_KEYS = {
    "threshold": {"dimension", "transform", "sign", "search", "fallback"} | _VALLEY_KEYS,
    "singlets": {"area", "height", "transform", "width"},
    "scatter_cluster": {
        "x",
        "y",
        "transform",
        "target",
        "components",
        "max_distance2",
        "max_offset",
    },
    "quantile": {"dimension", "transform", "lower", "upper"},
    "tail": {"dimension", "transform", "k", "side", "quantile", "keep"},
    "mixture_cut": {"dimension", "transform", "sign", "search", "quantile", "fallback"},
    "cluster": {"x", "y", "transform", "at", "quantile", "components", "max_offset"},
    "corner": {"x", "y", "transform", "signs", "search", "fallback"} | _VALLEY_KEYS,
}


class _Loader:
    def __init__(self, path: Path, doc: dict[str, Any]):
        self.path = path
        self.doc = doc
        self.transforms: dict[str, Transform | Ratio] = {}
        self.compensations: dict[str, Compensation] = {}
        self.default_comp = FROM_FILE

    def fail(self, where: str, message: str) -> StrategyError:
        return StrategyError(f"{self.path}: {where}: {message}")

    def load(self) -> Strategy:
        doc = self.doc
        unknown = set(doc) - {"name", "description", "compensation", "transforms", "populations"}
        if unknown:
            raise self.fail(
                "top level",
                f"unknown keys {sorted(unknown)}; expected name, "
                "description, compensation, transforms, populations",
            )
        self._compensation(doc.get("compensation", FROM_FILE))
        transforms = doc.get("transforms") or {}
        if not isinstance(transforms, dict):
            raise self.fail("transforms", "expected a mapping of names to transforms")
        for tid, spec in transforms.items():
            self.transforms[str(tid)] = self._transform(str(tid), spec)
        pops_doc = doc.get("populations")
        if not isinstance(pops_doc, list) or not pops_doc:
            raise self.fail("populations", "expected a list of populations")
        populations: list[Population] = []
        for k, entry in enumerate(pops_doc, start=1):
            populations.extend(self._entry(k, entry))
        try:
            return Strategy(
                populations,
                self.transforms,
                self.compensations,
                name=str(doc.get("name", self.path.stem)),
                source=str(self.path),
            )
        except GatingError as exc:
            if str(exc).startswith(str(self.path)):
                raise
            raise StrategyError(f"{self.path}: {exc}") from None

    def _compensation(self, spec: Any) -> None:
        if isinstance(spec, (dict, list)):
            raise self.fail(
                "compensation", f"expected FCS, uncompensated or a CSV file, got {excerpt(spec)}"
            )
        text = str(spec).strip()
        if text.lower() in ("fcs", "file", "spillover"):
            self.default_comp = FROM_FILE
        elif text.lower() in ("none", "uncompensated", "false"):
            self.default_comp = UNCOMPENSATED
        else:
            csv_path = (self.path.parent / text).resolve()
            if not csv_path.is_file():
                raise self.fail(
                    "compensation",
                    f"{text!r} is neither FCS, uncompensated nor an "
                    f"existing CSV matrix ({csv_path} not found)",
                )
            try:
                comp = Compensation.from_csv(csv_path)
            except Exception as exc:  # a damaged matrix file, whatever the parser says
                raise self.fail(
                    "compensation",
                    f"{csv_path} is not a spillover matrix ({excerpt(str(exc), 200)})",
                ) from None
            self.compensations[comp.id] = comp
            self.default_comp = comp.id

    def _transform(self, tid: str, spec: Any) -> Transform | Ratio:
        where = f"transform {tid!r}"
        if not isinstance(spec, dict) or len(spec) != 1:
            raise self.fail(
                where,
                f"expected one of {sorted(TRANSFORMS)} or ratio with its "
                "parameters, e.g. {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}",
            )
        ((kind, params),) = spec.items()
        params = params or {}
        if not isinstance(params, dict):
            raise self.fail(where, f"{kind} takes a mapping of parameters, got {excerpt(params)}")
        params = dict(params)
        try:
            if kind == "ratio":
                return Ratio(
                    str(params.pop("numerator")),
                    str(params.pop("denominator")),
                    **{k: float(v) for k, v in params.items()},
                )
            return make_transform(str(kind), **params)
        except GatingError as exc:  # parameters outside the transform's rules (it names them)
            raise self.fail(where, str(exc)) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.fail(where, f"bad parameters {excerpt(params)} ({exc})") from None

    def _dimension(self, where: str, spec: Any, transform: Any) -> Dimension:
        transform = self._scalar(where, "transform", transform)
        if isinstance(spec, (str, int, float)) and not isinstance(spec, bool):
            return Dimension(str(spec), self.default_comp, transform)
        if isinstance(spec, dict) and "name" in spec:
            name = self._scalar(where, "dimension name", spec["name"])
            comp = self._scalar(where, "compensation", spec.get("compensation", self.default_comp))
            comp = {"none": UNCOMPENSATED, "fcs": FROM_FILE}.get(str(comp).lower(), str(comp))
            tr = self._scalar(where, "transform", spec.get("transform", transform))
            ratio = name in self.transforms and isinstance(self.transforms[name], Ratio)
            return Dimension(str(name), comp, tr, ratio)
        raise self.fail(
            where,
            f"a dimension is a marker/channel name or {{name: ..., transform: "
            f"..., compensation: ...}}, got {excerpt(spec)}",
        )

    def _scalar(self, where: str, what: str, value: Any) -> str | None:
        """A name given as text or a number (None stays None); StrategyError for anything else."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(where, f"{what} must be a name, got {excerpt(value)}")
        return str(value)

    def _entry(self, k: int, entry: Any) -> list[Population]:
        if isinstance(entry, dict) and "quadrant" in entry:
            return self._quadrant(k, entry["quadrant"])
        if isinstance(entry, dict) and "scatter" in entry:
            return self._scatter(k, entry["scatter"])
        if not isinstance(entry, dict) or "name" not in entry or "gate" not in entry:
            raise self.fail(
                f"population {k}", "expected a mapping with name, gate (and parent), or a quadrant"
            )
        name = self._name(f"population {k}", entry["name"])
        where = f"population {name!r}"
        unknown = set(entry) - {"name", "gate", "parent", "label", "description"}
        if unknown:
            raise self.fail(where, f"unknown keys {sorted(unknown)}")
        parent = self._reference(where, "parent", entry.get("parent"))
        gate = self._gate(where, entry["gate"])
        label = entry.get("label")
        if label is not None:
            label = self._name(where + " label", label)
        return [
            Population(
                name,
                gate,
                None if parent is None else str(parent),
                None if label is None else str(label),
            )
        ]

    def _name(self, where: str, value: Any) -> str:
        """A population name as written: text (or a number), no '/' (it separates the parts of
        population paths), no control characters, not empty."""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(where, f"a name is text, got {excerpt(value)}")
        name = str(value)
        problem = name_problem(name, slash=False)
        if problem is not None:
            raise self.fail(where, f"name {excerpt(name)} {problem}")
        return name

    def _reference(self, where: str, what: str, value: Any) -> str | None:
        """A population named as parent or boolean operand (None for no parent)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(where, f"{what} must be a population name, got {excerpt(value)}")
        return str(value)

    def _gate(self, where: str, spec: Any) -> Gate:
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in _GATE_KEYS:
            raise self.fail(
                where,
                f"gate must be one of {list(_GATE_KEYS)}, e.g. "
                "{range: {dimension: CD3, min: 0.35}}",
            )
        ((kind, body),) = spec.items()
        _check_numbers(self, where, kind, body, open_ends=kind in ("range", "rectangle"))
        try:
            if kind in ("and", "or"):
                if not isinstance(body, list):
                    raise self.fail(where, f"{kind} takes a list of population names")
                return BooleanGate(kind, tuple(self._operand(where, o) for o in body))
            if kind == "not":
                return BooleanGate("not", ((self._reference(where, "not", body), False),))
            if not isinstance(body, dict):
                raise self.fail(where, f"{kind} gate needs a mapping of its parameters")
            tr = self._scalar(where, "transform", body.get("transform"))
            if kind == "range":
                dim = self._dimension(where, body["dimension"], tr)
                return RectangleGate((dim,), (body.get("min"),), (body.get("max"),))
            if kind == "rectangle":
                dims = tuple(self._dimension(where, d, tr) for d in body["dimensions"])
                mins = body.get("min") or [None] * len(dims)
                maxs = body.get("max") or [None] * len(dims)
                return RectangleGate(dims, tuple(mins), tuple(maxs))
            if kind == "polygon":
                dims = (
                    self._dimension(where, body["x"], tr),
                    self._dimension(where, body["y"], tr),
                )
                return PolygonGate(dims, _vertices(body["vertices"]))
            if kind in _ADAPTIVE_KEYS:
                unknown = set(body) - _ADAPTIVE_KEYS[kind]
                if unknown:
                    raise self.fail(
                        where,
                        f"{kind} gate: unknown keys {sorted(unknown)} "
                        f"(it takes {', '.join(sorted(_ADAPTIVE_KEYS[kind]))})",
                    )
                return self._adaptive(where, kind, body, tr)
            if kind == "ellipse":
                dims = tuple(self._dimension(where, d, tr) for d in body["dimensions"])
                return EllipsoidGate(
                    dims,
                    tuple(body["mean"]),
                    tuple(map(tuple, body["covariance"])),
                    body.get("distance_square", 1.0),
                )
            dims = tuple(self._dimension(where, d, tr) for d in body.get("dimensions", []))
            params = dict(body.get("params") or {})
            return make_registered(str(body["function"]), dims, params)
        except StrategyError:
            raise
        except KeyError as exc:
            raise self.fail(where, f"{kind} gate lacks {exc.args[0]!r}") from None
        except (GatingError, TypeError, ValueError) as exc:
            raise self.fail(where, str(exc)) from None

    def _adaptive(self, where: str, kind: str, body: dict[str, Any], tr: str | None) -> Gate:
        from . import adaptive as ad

        def dims(*keys: str) -> tuple[Dimension, ...]:
            return tuple(self._dimension(where, body[k], tr) for k in keys)

        def sign(default: str = "+") -> bool:
            value = str(body.get("sign", default))
            if value not in ("+", "-"):
                raise self.fail(where, f"{kind} sign must be '+' or '-', got {value!r}")
            return value == "+"

        def pair(key: str, default: tuple[float, float]) -> tuple[float, float]:
            value = body.get(key, default)
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise self.fail(where, f"{kind} {key} must be [low, high], got {value!r}")
            return (float(value[0]), float(value[1]))

        if kind == "threshold":
            return ad.ThresholdGate(
                dims("dimension"),
                sign(),
                pair("search", (0.2, 0.8)),
                _opt_float(body.get("fallback")),
                **_valley(body),
            )
        if kind == "corner":
            signs = str(body.get("signs", "++"))
            if len(signs) != 2 or set(signs) - {"+", "-"}:
                raise self.fail(where, f"corner signs must be two of '+'/'-', got {signs!r}")
            search = body.get("search", [[0.2, 0.8], [0.2, 0.8]])
            fallback = body.get("fallback", [None, None])
            return ad.QuadrantThresholds(
                dims("x", "y"),
                signs,
                tuple(tuple(float(v) for v in p) for p in search),
                tuple(_opt_float(v) for v in fallback),
                per_half=True,
                valley=tuple(sorted(_valley(body).items())),
            )
        if kind == "singlets":
            return ad.SingletGate(dims("area", "height"), float(body.get("width", 4.0)))
        if kind == "scatter_cluster":
            return ad.ScatterClusterGate(
                dims("x", "y"),
                (tuple(float(v) for v in body["target"]),),
                components=_count(body, "components", 5, 1, MAX_COMPONENTS),
                max_distance2=float(body.get("max_distance2", 16.0)),
                max_offset=float(body.get("max_offset", 0.5)),
                shape=str(body.get("shape", "mixture")),
            )
        if kind == "quantile":
            return ad.QuantileGate(
                dims("dimension"), float(body.get("lower", 0.0)), _opt_float(body.get("upper"))
            )
        if kind == "mixture_cut":
            return ad.MixtureCutGate(
                dims("dimension"),
                sign(),
                pair("search", (0.2, 0.8)),
                _opt_float(body.get("quantile")),
                _opt_float(body.get("fallback")),
            )
        if kind == "cluster":
            at = body["at"]
            return ad.ClusterGate(
                dims("x", "y"),
                (float(at[0]), float(at[1])),
                float(body.get("quantile", 0.95)),
                _count(body, "components", 4, 1, MAX_COMPONENTS),
                _opt_float(body.get("max_offset")),
            )
        return ad.TailGate(
            dims("dimension"),
            float(body.get("k", 3.0)),
            str(body.get("side", "upper")),
            _opt_float(body.get("quantile")),
            str(body.get("keep", "tail")),
        )

    def _operand(self, where: str, op: Any) -> tuple[str, bool]:
        if isinstance(op, dict) and set(op) == {"not"}:
            return self._reference(where, "not", op["not"]), True
        if isinstance(op, (str, int)) and not isinstance(op, bool):
            return str(op), False
        raise self.fail(
            where, f"boolean operands are population names or {{not: name}}, got {excerpt(op)}"
        )

    def _scatter(self, k: int, body: Any) -> list[Population]:
        """Sibling scatter populations from one mixture fit: {name: expected [x, y] centre}."""
        from .adaptive import ScatterClusterGate

        where = f"scatter {k}"
        _check_numbers(self, where, "scatter", body)
        try:
            tr = body.get("transform")
            dims = (self._dimension(where, body["x"], tr), self._dimension(where, body["y"], tr))
            parent = self._reference(where, "parent", body.get("parent"))
            names, targets, required = [], [], []
            for name, spec in body["populations"].items():
                names.append(self._name(where, name))
                if isinstance(spec, dict):  # {at: [x, y], required: false}
                    targets.append(tuple(float(v) for v in spec["at"]))
                    required.append(bool(spec.get("required", True)))
                else:
                    targets.append(tuple(float(v) for v in spec))
                    required.append(True)
            return [
                Population(
                    name,
                    ScatterClusterGate(
                        dims,
                        tuple(targets),
                        i,
                        _count(body, "components", 6, 1, MAX_COMPONENTS),
                        float(body.get("max_distance2", 16.0)),
                        float(body.get("max_offset", 0.35)),
                        required[i],
                        shape=str(body.get("shape", "mixture")),
                    ),
                    None if parent is None else str(parent),
                )
                for i, name in enumerate(names)
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.fail(
                where,
                "needs x, y and populations: {name: [x, y] expected centre, "
                f"...}} ({type(exc).__name__}: {exc})",
            ) from None

    def _quadrant(self, k: int, body: Any) -> list[Population]:
        where = f"quadrant {k}"
        _check_numbers(self, where, "quadrant", body)
        try:
            tr = body.get("transform")
            x = self._dimension(where, body["x"], tr)
            y = self._dimension(where, body["y"], tr)
            auto = body["at"] == "auto"
            if not auto:
                cx, cy = (float(v) for v in body["at"])
            parent = self._reference(where, "parent", body.get("parent"))
            out = []
            for name, signs in body["populations"].items():
                name = self._name(where, name)
                signs = str(signs)
                if len(signs) != 2 or set(signs) - {"+", "-"}:
                    raise self.fail(
                        where,
                        f"population {name!r}: position {signs!r} must be two of "
                        "'+'/'-' (x then y), e.g. '+-'",
                    )
                if auto:
                    from .adaptive import QuadrantThresholds

                    search = body.get("search", [[0.2, 0.8], [0.2, 0.8]])
                    fallback = body.get("fallback", [None, None])
                    gate: Gate = QuadrantThresholds(
                        (x, y),
                        signs,
                        tuple(tuple(float(v) for v in pair) for pair in search),
                        tuple(_opt_float(v) for v in fallback),
                        per_half=bool(body.get("per_half", False)),
                        valley=tuple(sorted(_valley(body).items())),
                    )
                else:
                    lo_hi = [(c, None) if s == "+" else (None, c) for s, c in zip(signs, (cx, cy))]
                    gate = RectangleGate(
                        (x, y), (lo_hi[0][0], lo_hi[1][0]), (lo_hi[0][1], lo_hi[1][1])
                    )
                out.append(Population(name, gate, parent))
            return out
        except StrategyError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.fail(
                where,
                f"needs x, y, at: [x cut, y cut] or auto, and populations: {{name: '+-', "
                f"...}} ({type(exc).__name__}: {exc})",
            ) from None


def _valley(body: dict[str, Any]) -> dict[str, Any]:
    """The valley options of a threshold, corner or automatic quadrant (defaults left out)."""
    out: dict[str, Any] = {}
    if "depth" in body:
        out["depth"] = float(body["depth"])
    if body.get("bandwidth") is not None:
        out["bandwidth"] = float(body["bandwidth"])
    if body.get("peaks") is not None:
        out["peaks"] = _count(body, "peaks", 2, 2, MAX_PEAKS)
    if "prefer" in body:
        out["prefer"] = str(body["prefer"])
    if body.get("no_valley") is not None:
        out["no_valley"] = str(body["no_valley"])
    return out


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


#: mixture components a cluster or scatter gate may ask for; peaks a valley search may expect
MAX_COMPONENTS = 50
MAX_PEAKS = 20


def _count(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """A whole number option from ``low`` to ``high`` (ValueError saying so otherwise)."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{key} must be a whole number, got {excerpt(value)}")
    if not low <= value <= high:
        raise ValueError(f"{key} must be from {low} to {high}, got {value}")
    return int(value)


def _vertices(value: Any) -> tuple:
    """Polygon vertices as written ([[x, y], ...]); the polygon gate checks them."""
    if not isinstance(value, list):
        raise ValueError(f"polygon vertices must be a list of [x, y] pairs, got {excerpt(value)}")
    if len(value) > MAX_POLYGON_VERTICES:
        raise ValueError(
            f"polygon has {len(value):,} vertices, more than the {MAX_POLYGON_VERTICES:,} a "
            "polygon may have"
        )
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)


def _check_numbers(
    loader: _Loader, where: str, kind: str, body: Any, open_ends: bool = False
) -> None:
    """StrategyError for a NaN or infinite number anywhere in a gate's options (which would
    otherwise gate nothing, silently). Infinity is allowed only as a range or rectangle bound
    (min -inf / max +inf: an open end, the gate decides)."""
    todo: list[tuple[str, Any]] = [(kind, body)]
    while todo:
        key, value = todo.pop()
        if isinstance(value, dict):
            todo.extend((f"{key}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            todo.extend((f"{key}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            leaf = key.split(".")[-1].split("[")[0]
            if math.isinf(value) and open_ends and leaf in ("min", "max"):
                continue
            raise loader.fail(
                where,
                f"{key} is {value}; gates need finite numbers"
                + (" (leave a bound out for an open end)" if leaf in ("min", "max") else ""),
            )


def load_yaml(path: str | os.PathLike) -> Strategy:
    """Read a strategy file; StrategyError naming the file and the population at fault."""
    path = Path(path)
    doc = read_yaml(path, "strategy file")
    if not isinstance(doc, dict):
        raise StrategyError(f"{path}: a strategy file is a mapping with populations")
    return _Loader(path, doc).load()


# Writing: strategy_to_dict and dump_yaml live in gating.yaml_dump (re-exported here).
from .yaml_dump import dump_yaml, strategy_to_dict  # noqa: E402

__all__ = ["dump_yaml", "load_yaml", "read_yaml", "strategy_to_dict"]

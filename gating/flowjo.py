"""FlowJo workspace import: the gates FlowJo applied to one sample, as a :class:`Strategy`.

Two dialects are read:

* FlowJo 10 (``.wsp``): Gating-ML 2.0 gate elements inside FlowJo's own XML, the sample's
  transforms (FlowJo's ``linear``, ``log``, ``biex``, ``logicle``, ``fasinh``, ``hyperlog``), its
  spillover matrix (compensated parameters carry the matrix prefix, e.g. ``Comp-FITC-A``), and the
  population tree (``Population``, boolean ``AndNode`` / ``OrNode`` / ``NotNode``).
* FlowJo 9 (Mac XML workspace, version 2.0): its own gate elements (``Polygon``, ``PolyRect``,
  ``Range``, ``Ellipse``) with coordinates in raw values, compensation matrices with a prefix and
  suffix (``<FITC-A>``), and calibration tables that give each parameter's display scale.

Each sample's tree holds every gate FlowJo applied to it, group gates and the sample's own
overrides alike, so only the chosen sample's tree is read. Gates keep FlowJo's geometry on
FlowJo's display scale: each dimension carries the sample's transform, so a polygon is straight
where FlowJo drew it straight, and events beyond the ends of a biex, log or table scale sit on the
axis as FlowJo draws them. Polygons are evaluated as FlowJo does, on its 256 x 256 display grid
(:class:`FlowJoPolygonGate`); rectangles, ranges and ellipses on exact values.

Population names are paths (``'Cells/CD4+'``): FlowJo repeats names under different parents.
FlowJo writes ``/`` in parameter names as ``_``; names are mapped back to the sample's channel
names, given as ``channels`` or read from the sample's FCS file when it is found (at its DataSet
URI or next to the workspace).
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import GatingError, StrategyError
from .gates import (
    BooleanGate,
    Dimension,
    EllipsoidGate,
    Gate,
    PolygonGate,
    RectangleGate,
    quadrant_rectangles,
)
from .gatingml import NS, _attr, _float, parse_xml
from .strategy import Population, Strategy
from .transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLog,
    Hyperlog,
    Linear,
    Logicle,
    TableTransform,
    Transform,
)

_G, _T, _D = (f"{{{NS[k]}}}" for k in ("gating", "transforms", "data-type"))
_BOOLEAN_NODES = {"AndNode": "and", "OrNode": "or", "NotNode": "not"}
_FJ10_TRANSFORMS = ("linear", "log", "biex", "logicle", "fasinh", "hyperlog")
_FJ9_SHAPES = ("Polygon", "PolyRect", "Range", "Ellipse")


# --- public API ----------------------------------------------------------------------------------


def read_flowjo(
    path: str | os.PathLike, sample: str, channels: Sequence[str] | None = None
) -> Strategy:
    """The gates a FlowJo workspace (FlowJo 10 ``.wsp`` or FlowJo 9 ``.xml``) applied to ``sample``.

    sample: the sample's FCS file name (``'Donor1.fcs'``) or its FlowJo name.
    channels: the sample's channel ($PnN) names, to map FlowJo's renamed parameters back (read
    from the FCS file when it is found and ``channels`` is None).
    """
    workspace = _open_workspace(path)
    info = workspace.pick(sample)
    if channels is None:
        channels = _fcs_channels(Path(path), info)
    return workspace.strategy(info, _Names(channels))


def list_samples(path: str | os.PathLike) -> list[str]:
    """The samples of a workspace, as :func:`read_flowjo` takes them: their FCS file names (their
    FlowJo names where the file name is unknown)."""
    return [s.key for s in _open_workspace(path).samples]


# --- gates FlowJo needs beyond the geometric ones ------------------------------------------------


@dataclass(frozen=True)
class OutsideGate(Gate):
    """The events outside another gate (FlowJo's ``eventsInside="0"``, FlowJo 9's ``negated``)."""

    kind: ClassVar[str] = "outside"
    gate: Gate
    dimensions: tuple[Dimension, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", self.gate.dimensions)

    def contains(self, values: np.ndarray) -> np.ndarray:
        return ~np.asarray(self.gate.contains(values), dtype=bool)

    def geometry(self) -> dict[str, Any]:
        return {"outside": type(self.gate).kind, **self.gate.geometry()}


def _on_boundary(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Which points lie on the polygon's outline (exact for the integer grid FlowJo uses)."""
    on = np.zeros(points.shape[0], dtype=bool)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    idx = np.flatnonzero(np.all((points >= lo) & (points <= hi), axis=1))
    rel_all = points[idx]
    hit = np.zeros(idx.size, dtype=bool)
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0)):
        d = b - a
        if not d.any():
            continue
        rel = rel_all - a
        along = rel @ d
        hit |= (rel[:, 0] * d[1] == rel[:, 1] * d[0]) & (along >= 0) & (along <= d @ d)
    on[idx] = hit
    return on


@dataclass(frozen=True)
class FlowJoPolygonGate(PolygonGate):
    """A polygon evaluated as FlowJo does, on its display grid: events and vertices are rounded to
    the nearest of ``resolution`` steps across each axis's display range (0..``tops[k]`` on the
    dimension's scale); events on the rounded outline are inside. Events near an edge can thereby
    fall the other way than on exact values, as they do in FlowJo."""

    kind: ClassVar[str] = "flowjo_polygon"
    tops: tuple[float, float] = (1.0, 1.0)
    resolution: int = 256

    def _grid(self, values: np.ndarray) -> np.ndarray:
        return np.floor(values * (self.resolution / np.asarray(self.tops, dtype=np.float64)) + 0.5)

    def contains(self, values: np.ndarray) -> np.ndarray:
        verts = self._grid(np.asarray(self.vertices, dtype=np.float64))
        points = self._grid(np.asarray(values, dtype=np.float64)[:, :2])
        inside = PolygonGate(self.dimensions, tuple(map(tuple, verts))).contains(points)
        return inside | _on_boundary(points, verts)

    def geometry(self) -> dict[str, Any]:
        return {**super().geometry(), "grid": [self.resolution, list(self.tops)]}


# --- samples and names ----------------------------------------------------------------------------


@dataclass
class _SampleInfo:
    element: ET.Element
    name: str  # FlowJo's sample name
    files: tuple[str, ...]  # FCS file names: the DataSet URI's, $FIL
    uri: str | None = None

    @property
    def key(self) -> str:
        """What names the sample best: its FCS file name, else its FlowJo name."""
        return self.files[0] if self.files else self.name

    def describe(self) -> str:
        return self.key if self.key == self.name else f"{self.key} ({self.name})"

    @classmethod
    def of(cls, el: ET.Element, uri: str | None = None) -> _SampleInfo | None:
        node = el.find("SampleNode")
        if node is None:
            return None
        files = tuple(dict.fromkeys(f for f in (_file_name(uri), _keyword(el, "$FIL")) if f))
        return cls(el, node.get("name") or (files[0] if files else "?"), files, uri)


class _Names:
    """Maps FlowJo's parameter names to the sample's channel names (FlowJo writes '/' as '_')."""

    def __init__(self, channels: Sequence[str] | None):
        self.channels = list(channels) if channels is not None else None

    def __call__(self, name: str) -> str:
        if self.channels is None or name in self.channels:
            return name
        hits = [c for c in self.channels if c.replace("/", "_") == name]
        return hits[0] if len(hits) == 1 else name


def _file_name(uri: str | None) -> str | None:
    if not uri:
        return None
    name = PurePosixPath(unquote(urlparse(uri).path).replace("\\", "/")).name
    return name or None


def _keyword(sample_el: ET.Element, name: str) -> str | None:
    for kw in sample_el.iterfind("Keywords/Keyword"):
        if kw.get("name") == name:
            return kw.get("value")
    return None


def _fcs_channels(ws_path: Path, info: _SampleInfo) -> list[str] | None:
    """$PnN names from the sample's FCS file, if it is at its URI or next to the workspace."""
    candidates = []
    if info.uri:
        candidates.append(ws_path.parent / unquote(urlparse(info.uri).path))  # relative or not
    candidates += [ws_path.parent / name for name in info.files]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            from cytowhim.fcs import read_fcs_metadata

            with warnings.catch_warnings():  # the file's quirks are reported when it is read
                warnings.simplefilter("ignore")
                kw = read_fcs_metadata(candidate)
            return [kw.get(f"$P{i}N", "").strip() for i in range(1, int(kw["$PAR"]) + 1)]
        except (ImportError, KeyError, ValueError, OSError):
            continue
    return None


def _open_workspace(path: str | os.PathLike) -> _Workspace:
    root = parse_xml(path)
    if root.tag != "Workspace":
        raise StrategyError(f"{path}: not a FlowJo workspace (root element {root.tag!r})")
    version = root.get("flowJoVersion") or ""
    major = version.split(".")[0]
    if major.isdigit() and int(major) >= 10:
        return _Workspace10(path, root)
    if root.find(".//Population/PolygonGate") is not None or major == "9":
        return _Workspace9(path, root)
    if root.find(f".//Gate/{_G}*") is not None:
        return _Workspace10(path, root)
    raise StrategyError(
        f"{path}: FlowJo workspace version {version or root.get('version') or 'unknown'} is not "
        "supported (FlowJo 10 .wsp and FlowJo 9 XML workspaces are)"
    )


# --- building a strategy --------------------------------------------------------------------------


def _scale_ends(tr: Transform | None) -> tuple[float | None, float | None]:
    """Where a scale stops: FlowJo draws events beyond the ends of its biex, log and calibration
    table scales on the axis (None: the scale goes on)."""
    if isinstance(tr, FlowJoBiex):
        return 0.0, tr.channel_range
    if isinstance(tr, TableTransform):
        return tr.scaled[0], tr.scaled[-1]
    if isinstance(tr, FlowJoLog):
        return 0.0, None
    return None, None


def _display_top(tr: Transform | None) -> float | None:
    """Top of FlowJo's display for a scale (its grid spans 0..top; None: no display scale)."""
    if tr is None:
        return None
    top = _scale_ends(tr)[1]
    return 1.0 if top is None else top


def _scaled_bounds(
    tr: Transform | None, lo: float | None, hi: float | None
) -> tuple[float | None, float | None]:
    """Range bounds on the display scale; a bound at or past the end of a scale that stops is
    open, so that the events drawn on the axis there stay inside."""
    y_lo, y_hi = (None if b is None else _scaled(tr, [b])[0] for b in (lo, hi))
    end_lo, end_hi = _scale_ends(tr)
    if y_lo is not None and end_lo is not None and y_lo <= end_lo:
        y_lo = None
    if y_hi is not None and end_hi is not None and y_hi >= end_hi:
        y_hi = None
    return y_lo, y_hi


def _scaled(tr: Transform | None, values: Sequence[float]) -> list[float]:
    if tr is None:
        return [float(v) for v in values]
    return [float(v) for v in tr.apply(np.asarray(values, dtype=np.float64))]


def _grid_polygon(dims, trs, cols: list[list[float]], resolution: int) -> PolygonGate:
    """FlowJo's polygon on its display grid (exact geometry where a dimension has no scale)."""
    vertices = tuple(zip(*_scaled_columns(trs, cols)))
    tops = [_display_top(tr) for tr in trs]
    if None in tops or len(tops) != 2:
        return PolygonGate(dims, vertices)
    return FlowJoPolygonGate(dims, vertices, (tops[0], tops[1]), resolution)


def _scaled_columns(trs, cols) -> list[list[float]]:
    return [_scaled(tr, c) for tr, c in zip(trs, cols)]


def _ellipse(
    center: np.ndarray, major: np.ndarray, a: float, b: float, scale: np.ndarray
) -> tuple[list[float], list[list[float]]]:
    """Mean and covariance (distance 1) of an ellipse with semi-axes a (along unit ``major``) and
    b, rescaled per axis by ``scale``."""
    minor = np.array([-major[1], major[0]])
    cov = a * a * np.outer(major, major) + b * b * np.outer(minor, minor)
    cov = cov * np.outer(scale, scale)
    return list(center * scale), cov.tolist()


@dataclass(frozen=True)
class _Matrix:
    """How a sample names and compensates its compensated parameters: FlowJo writes them as
    ``prefix + detector + suffix`` ('Comp-FITC-A', '<FITC-A>')."""

    comp_id: str | None = None  # None: not compensated; 'FCS': the file's own matrix
    name: str = ""  # FlowJo's matrix name (FlowJo 9 names calibration tables after it)
    prefix: str = ""
    suffix: str = ""
    detectors: frozenset[str] = frozenset()  # FlowJo's names; empty: any prefixed name

    def split(self, fj_name: str) -> tuple[str, str]:
        """(parameter name without prefix and suffix, compensation id) of a FlowJo name."""
        p, s = self.prefix, self.suffix
        if not (fj_name.startswith(p) and fj_name.endswith(s) and len(fj_name) > len(p + s)):
            return fj_name, UNCOMPENSATED
        bare = fj_name[len(p) : len(fj_name) - len(s)]
        if self.comp_id is None or (self.detectors and bare not in self.detectors):
            return (bare if p or s else fj_name), UNCOMPENSATED
        return bare, self.comp_id


def _spillover(
    ident: str, rows: list[tuple[str | None, list[tuple[str | None, float | None]]]], where: str
) -> Compensation:
    """A spillover matrix from FlowJo's rows: (fluorochrome, [(detector, coefficient), ...])."""
    cols = [c for c, _ in rows[0][1]] if rows else []
    if not rows or any([c for c, _ in r] != cols for _, r in rows):
        raise StrategyError(f"{where}: rows name different detectors (or there are none)")
    if None in cols or any(n is None or None in [v for _, v in r] for n, r in rows):
        raise StrategyError(f"{where}: incomplete matrix")
    try:
        return Compensation(
            ident,
            tuple(str(n) for n, _ in rows),
            tuple(str(c) for c in cols),
            np.array([[v for _, v in r] for _, r in rows], dtype=np.float64),
        )
    except GatingError as exc:
        raise StrategyError(f"{where}: {exc}") from None


class _Tree:
    """Populations under construction, named by path."""

    def __init__(self, where: str):
        self.where = where
        self.populations: list[Population] = []
        self.labels: dict[str, tuple[str, ...]] = {}

    @staticmethod
    def name(parts: tuple[str, ...]) -> str:
        return "/".join(parts)

    def add(self, parts: tuple[str, ...], gate: Gate) -> None:
        name = self.name(parts)
        if name in self.labels:
            raise StrategyError(f"{self.where}: population {name!r} is defined twice")
        parent = self.name(parts[:-1]) if len(parts) > 1 else None
        self.populations.append(Population(name, gate, parent, parts[-1]))
        self.labels[name] = parts

    def resolve(self, dependent: str, parent: tuple[str, ...]) -> str:
        """A FlowJo boolean operand: a path from the sample's root. A path outside the boolean's
        parent is a boolean gate copied from elsewhere: FlowJo re-anchors it on the same-named
        population under the new parent."""
        dependent = dependent.strip("/")
        prefix = self.name(parent) + "/" if parent else ""
        if dependent in self.labels and dependent.startswith(prefix):
            return dependent
        siblings = [
            n
            for n, parts in self.labels.items()
            if parts[:-1] == parent
            and (dependent == parts[-1] or dependent.endswith("/" + parts[-1]))
        ]
        if siblings:
            return max(siblings, key=len)
        if dependent in self.labels:
            return dependent
        raise StrategyError(
            f"{self.where}: boolean gate under {self.name(parent) or 'the root'!r} refers to "
            f"{dependent!r}, which is not a population of this sample"
        )


class _Workspace(ABC):
    """What both dialects share: samples, sample choice, dimensions and the strategy."""

    def __init__(self, path: str | os.PathLike, root: ET.Element):
        self.path = os.fspath(path)
        self.root = root
        self.samples = self._samples()
        self._start(_Names(None), self.path)

    def _start(self, names: _Names, where: str) -> None:
        """Fresh state for building one sample's strategy."""
        self.names = names
        self.transforms: dict[str, Transform] = {}
        self.compensations: dict[str, Compensation] = {}
        self.matrix = _Matrix()
        self.tree = _Tree(where)

    @abstractmethod
    def _samples(self) -> list[_SampleInfo]: ...

    def pick(self, wanted: str) -> _SampleInfo:
        key = str(wanted)
        base = PurePosixPath(key.replace("\\", "/")).name
        rules = (
            lambda s: key in s.files or base in s.files,
            lambda s: s.name in (key, base),
            lambda s: base.casefold() in {f.casefold() for f in s.files},
            lambda s: s.name.casefold() == base.casefold(),
        )
        for rule in rules:
            hits = [s for s in self.samples if rule(s)]
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise StrategyError(
                    f"{self.path}: {key!r} names {len(hits)} samples "
                    f"({', '.join(s.describe() for s in hits)}); give the FCS file name"
                )
        listing = ", ".join(s.describe() for s in self.samples) or "none"
        raise StrategyError(f"{self.path}: no sample {key!r} in this workspace; samples: {listing}")

    def strategy(self, info: _SampleInfo, names: _Names) -> Strategy:
        self._start(names, f"{self.path}: sample {info.describe()!r}")
        self._read_sample(info)
        try:
            return Strategy(
                self.tree.populations,
                self.transforms,
                self.compensations,
                name=f"{Path(self.path).stem}: {info.describe()}",
                source=self.path,
            )
        except StrategyError:
            raise
        except GatingError as exc:
            raise StrategyError(f"{self.tree.where}: {exc}") from None

    @abstractmethod
    def _read_sample(self, info: _SampleInfo) -> None: ...

    def where(self, parts: tuple[str, ...]) -> str:
        return f"{self.tree.where}, population {_Tree.name(parts)!r}"

    def _add_transform(self, ident: str, tr: Transform | None) -> str | None:
        if tr is None:
            return None
        self.transforms.setdefault(ident, tr)
        return ident

    def _use_matrix(self, el: ET.Element, rows, prefix: str, suffix: str) -> None:
        """The sample's spillover matrix (FlowJo's name as its id) and how FlowJo names the
        parameters it compensates."""
        name = (el.get("name") or "").strip()
        ident = name if name not in ("", UNCOMPENSATED, FROM_FILE) else f"FlowJo {name}".strip()
        where = f"{self.tree.where}, compensation matrix {name!r}"
        comp = _spillover(ident, rows, where)
        self.compensations[ident] = Compensation(
            ident,
            tuple(self.names(n) for n in comp.fluorochromes),
            tuple(self.names(n) for n in comp.detectors),
            comp.matrix,
        )
        self.matrix = _Matrix(ident, name, prefix, suffix, frozenset(comp.fluorochromes))

    def _add(self, parts: tuple[str, ...], build) -> None:
        try:
            self.tree.add(parts, build())
        except StrategyError:
            raise
        except (GatingError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            raise StrategyError(f"{self.where(parts)}: {exc}") from None


# --- FlowJo 10 ------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _Workspace10(_Workspace):
    """FlowJo 10 ``.wsp``: Gating-ML 2.0 gates in FlowJo's XML."""

    def _samples(self) -> list[_SampleInfo]:
        out = []
        for el in self.root.iterfind("SampleList/Sample"):
            ds = el.find("DataSet")
            info = _SampleInfo.of(el, ds.get("uri") if ds is not None else None)
            if info is not None:
                out.append(info)
        return out

    def _read_sample(self, info: _SampleInfo) -> None:
        where = self.tree.where
        self._compensation(info.element)
        self.param_transforms = self._transforms(info.element, where)
        self.booleans: list[tuple[tuple[str, ...], str, list[str]]] = []
        self._walk(info.element.find("SampleNode/Subpopulations"), ())
        for parts, op, deps in self.booleans:
            refs = tuple((self.tree.resolve(d, parts[:-1]), False) for d in deps)
            self._add(parts, lambda op=op, refs=refs: BooleanGate(op, refs))

    # --- compensation and transforms ------------------------------------------------------------

    def _compensation(self, sample_el: ET.Element) -> None:
        mats = sample_el.findall(_T + "spilloverMatrix")
        if len(mats) > 1:
            raise StrategyError(f"{self.tree.where}: more than one spillover matrix")
        for el in mats:
            where = f"{self.tree.where}, spillover matrix {el.get('name')!r}"
            rows = [
                (
                    _attr(sp, "parameter", _D),
                    [
                        (_attr(c, "parameter", _D), _float(c, "value", where, _T))
                        for c in sp.iterfind(_T + "coefficient")
                    ],
                )
                for sp in el.iterfind(_T + "spillover")
            ]
            self._use_matrix(el, rows, el.get("prefix", "Comp-"), el.get("suffix", ""))

    def _transforms(self, sample_el: ET.Element, where: str) -> dict[str, Transform]:
        out = {}
        for el in sample_el.iterfind("Transformations/*"):
            param = el.find(_D + "parameter")
            name = _attr(param, "name", _D) if param is not None else None
            if not name:
                raise StrategyError(f"{where}: a transform names no parameter")
            try:
                out[name] = self._transform(el, f"{where}, transform of {name!r}")
            except ValueError as exc:
                raise StrategyError(f"{where}, transform of {name!r}: {exc}") from None
        return out

    @staticmethod
    def _transform(el: ET.Element, where: str) -> Transform:
        kind = _local(el.tag)

        def get(name: str, default: float | None = None) -> float:
            value = _float(el, name, where, _T)
            if value is None:
                if default is None:
                    raise StrategyError(f"{where}: {kind} lacks {name}")
                return default
            return value

        if kind == "linear":
            lo, hi = get("minRange", 0.0), get("maxRange")
            return Linear(T=hi, A=-lo)  # (x - min) / (max - min): FlowJo's axis min..max
        if kind == "log":
            return FlowJoLog(offset=get("offset"), decades=get("decades"))
        if kind == "biex":
            return FlowJoBiex(
                negative=get("neg", 0.0),
                width=get("width", -10.0),
                positive=get("pos", 4.41854),
                max_value=get("maxRange", 262144.0),
            )
        if kind == "logicle":
            return Logicle(T=get("T"), W=get("W"), M=get("M"), A=get("A", 0.0))
        if kind == "fasinh":
            return Asinh(T=get("T"), M=get("M"), A=get("A", 0.0))
        if kind == "hyperlog":
            return Hyperlog(T=get("T"), W=get("W"), M=get("M"), A=get("A", 0.0))
        raise StrategyError(
            f"{where}: FlowJo transform {kind!r} is not supported (supported: "
            f"{', '.join(_FJ10_TRANSFORMS)})"
        )

    def dimension(self, fj_name: str) -> tuple[Dimension, Transform | None]:
        """Gate dimension (channel, compensation, transform) of a FlowJo parameter name."""
        name, comp = self.matrix.split(fj_name)
        ident = fj_name if fj_name in self.param_transforms else name
        tr = self.param_transforms.get(ident)
        return Dimension(self.names(name), comp, self._add_transform(ident, tr)), tr

    # --- populations --------------------------------------------------------------------------

    def _walk(self, subpops: ET.Element | None, parent: tuple[str, ...]) -> None:
        if subpops is None:
            return
        for el in subpops:
            if el.tag != "Population" and el.tag not in _BOOLEAN_NODES:
                continue  # statistics and other annotations
            parts = (*parent, el.get("name") or "")
            if el.tag == "Population":
                self._add(parts, lambda el=el, parts=parts: self._gate(el, parts))
            else:
                self._boolean(el, parts)
            self._walk(el.find("Subpopulations"), parts)

    def _boolean(self, el: ET.Element, parts: tuple[str, ...]) -> None:
        deps = [d.get("name") or "" for d in el.iterfind("Dependents/Dependent")]
        if deps:
            self.booleans.append((parts, _BOOLEAN_NODES[el.tag], deps))
        elif el.tag == "NotNode" and el.find("Gate") is not None:
            self._add(parts, lambda: OutsideGate(self._gate(el, parts)))
        else:
            raise StrategyError(f"{self.where(parts)}: boolean gate without dependents")

    def _gate(self, pop: ET.Element, parts: tuple[str, ...]) -> Gate:
        where = self.where(parts)
        holder = pop.find("Gate")
        shapes = [c for c in (holder if holder is not None else ()) if c.tag.startswith(_G)]
        if len(shapes) != 1:
            raise StrategyError(f"{where}: expected one gate element, found {len(shapes)}")
        el = shapes[0]
        kind = _local(el.tag)
        readers = {
            "RectangleGate": self._rectangle,
            "PolygonGate": self._polygon,
            "EllipsoidGate": self._ellipse,
            "QuadrantGate": self._quadrant,
        }
        if kind not in readers:
            raise StrategyError(f"{where}: FlowJo gate {kind!r} is not supported")
        gate = readers[kind](el, where, parts[-1])
        return OutsideGate(gate) if el.get("eventsInside", "1") == "0" else gate

    def _fcs_name(self, el: ET.Element, where: str) -> str:
        fcs = el.find(_D + "fcs-dimension")
        name = _attr(fcs, "name", _D) if fcs is not None else None
        if not name:
            raise StrategyError(f"{where}: a gate dimension names no parameter")
        return name

    def _rectangle(self, el: ET.Element, where: str, label: str) -> RectangleGate:
        dims, mins, maxs = [], [], []
        for d in el.iterfind(_G + "dimension"):
            dim, tr = self.dimension(self._fcs_name(d, where))
            lo, hi = _scaled_bounds(tr, _float(d, "min", where), _float(d, "max", where))
            if lo is None and hi is None:
                continue  # no bound on this axis (or both past its ends)
            dims.append(dim)
            mins.append(lo)
            maxs.append(hi)
        if not dims:
            raise StrategyError(f"{where}: rectangle gate without bounds")
        return RectangleGate(tuple(dims), tuple(mins), tuple(maxs))

    def _polygon(self, el: ET.Element, where: str, label: str) -> PolygonGate:
        dims, trs = self._dimensions(el, where)
        cols = [list(c) for c in zip(*self._vertices(el.iterfind(_G + "vertex"), where))]
        if len(cols) != 2 or len(dims) != 2:
            raise StrategyError(f"{where}: a polygon needs 2 dimensions and 2 coordinates a vertex")
        resolution = _float(el, "gateResolution", where) or 256
        return _grid_polygon(dims, trs, cols, int(resolution))

    def _dimensions(self, el: ET.Element, where: str):
        pairs = [self.dimension(self._fcs_name(d, where)) for d in el.iterfind(_G + "dimension")]
        return tuple(p[0] for p in pairs), [p[1] for p in pairs]

    @staticmethod
    def _vertices(vertices, where: str) -> list[list[float]]:
        out = []
        for v in vertices:
            coords = [_float(c, "value", where, _D) for c in v.iterfind(_G + "coordinate")]
            if any(c is None for c in coords):
                raise StrategyError(f"{where}: a vertex coordinate has no value")
            out.append(coords)
        return out

    def _ellipse(self, el: ET.Element, where: str, label: str) -> EllipsoidGate:
        """FlowJo's ellipse: two foci and four edge points (major axis ends, then minor axis ends)
        on the 256 x 256 display; the semi-major axis from the edge points, the semi-minor one
        from it and the foci (FlowJo's minor edge points are not reliable)."""
        dims, trs = self._dimensions(el, where)
        foci = np.array(self._vertices(el.iterfind(f"{_G}foci/{_G}vertex"), where), dtype=float)
        edge = np.array(self._vertices(el.iterfind(f"{_G}edge/{_G}vertex"), where), dtype=float)
        if len(dims) != 2 or foci.shape != (2, 2) or edge.shape != (4, 2):
            raise StrategyError(f"{where}: a FlowJo ellipse needs 2 dimensions, 2 foci, 4 edges")
        center = foci.mean(axis=0)
        axis = foci[1] - foci[0]
        c = float(np.hypot(*axis)) / 2
        if c == 0:  # a circle: any direction
            axis = edge[0] - center
        major = axis / np.hypot(*axis)
        a = float(np.max(np.abs((edge - center) @ major)))
        b = float(np.sqrt(abs(a * a - c * c)))
        tops = [_display_top(tr) for tr in trs]
        if None in tops:
            raise StrategyError(f"{where}: an ellipse needs a display scale on both dimensions")
        scale = np.array(tops, dtype=np.float64) / 256.0
        mean, cov = _ellipse(center, major, a, b, scale)
        return EllipsoidGate(dims, tuple(mean), tuple(map(tuple, cov)), 1.0)

    def _quadrant(self, el: ET.Element, where: str, label: str) -> RectangleGate:
        """One quadrant of a Gating-ML quadrant gate: the one named like the population (or the
        only one), with dividers and positions on the display scale."""
        dividers, scales = {}, {}
        for d in el.iterfind(_G + "divider"):
            dim, tr = self.dimension(self._fcs_name(d, where))
            try:
                values = [float((v.text or "").strip()) for v in d.iterfind(_G + "value")]
            except ValueError:
                raise StrategyError(f"{where}: a quadrant divider value is not a number") from None
            ident = _attr(d, "id")
            dividers[ident], scales[ident] = (dim, tuple(_scaled(tr, values))), tr
        quadrants = {}
        for q in el.iterfind(_G + "Quadrant"):
            positions = {}
            for p in q.iterfind(_G + "position"):
                ref = _attr(p, "divider_ref")
                if ref not in scales:
                    raise StrategyError(f"{where}: quadrant refers to unknown divider {ref!r}")
                positions[ref] = _scaled(scales[ref], [_float(p, "location", where)])[0]
            quadrants[_attr(q, "id")] = positions
        rects = quadrant_rectangles(dividers, quadrants)
        if label in rects:
            return rects[label]
        if len(rects) == 1:
            return next(iter(rects.values()))
        raise StrategyError(f"{where}: quadrant gate has no quadrant named {label!r}")


# --- FlowJo 9 -------------------------------------------------------------------------------------


def _table_pairs(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A FlowJo 9 calibration table 'channel,value,channel,value,...' as (values, channels)."""
    try:
        flat = np.array([float(t) for t in text.replace("\n", "").split(",") if t.strip()])
    except ValueError:
        raise StrategyError(f"{where}: calibration table holds a non-number") from None
    if flat.size < 4 or flat.size % 2:
        raise StrategyError(f"{where}: calibration table needs channel, value pairs")
    return flat[1::2], flat[0::2]


class _Workspace9(_Workspace):
    """FlowJo 9 Mac XML workspace (version 2.0)."""

    def _samples(self) -> list[_SampleInfo]:
        infos = (_SampleInfo.of(el) for el in self.root.iterfind("SampleList/Sample"))
        return [info for info in infos if info is not None]

    def _read_sample(self, info: _SampleInfo) -> None:
        self.params = {p.get("name"): p for p in info.element.iterfind("Parameter")}
        self._compensation(info.element)
        self._walk(info.element.find("SampleNode"), ())

    def _compensation(self, sample_el: ET.Element) -> None:
        """The matrix of the sample's compensationID: '' none; -2 none (names still bracketed);
        -1 the file's own matrix; n the n-th CompensationMatrix."""
        cid = (sample_el.get("compensationID") or "").strip()
        if cid in ("", "0"):
            return
        if cid in ("-1", "-2"):
            self.matrix = _Matrix(FROM_FILE if cid == "-1" else None, "", "<", ">")
            return
        mats = self.root.findall("CompensationMatrices/CompensationMatrix")
        if not cid.isdigit() or not 1 <= int(cid) <= len(mats):
            raise StrategyError(f"{self.tree.where}: no compensation matrix {cid}")
        el = mats[int(cid) - 1]
        where = f"{self.tree.where}, compensation matrix {el.get('name')!r}"
        rows = [
            (
                ch.get("name"),
                [(v.get("name"), _float(v, "value", where)) for v in ch.iterfind("ChannelValue")],
            )
            for ch in el.iterfind("Channel")
        ]
        self._use_matrix(el, rows, el.get("prefix", "<"), el.get("suffix", ">"))

    def _tables(self) -> list[ET.Element]:
        return self.root.findall("CalibrationTables/Table")

    def _table(self, el: ET.Element) -> tuple[str, Transform]:
        """(id, transform) of a calibration table, read once per strategy."""
        ident = el.get("name") or f"calibration table {self._tables().index(el) + 1}"
        if ident in self.transforms:
            return ident, self.transforms[ident]
        where = f"{self.path}: calibration table {ident!r}"
        values, channels = _table_pairs(el.text or "", where)
        try:
            return ident, TableTransform(raw=tuple(values), scaled=tuple(channels))
        except ValueError as exc:
            raise StrategyError(f"{where}: {exc}") from None

    def dimension(self, fj_name: str, where: str) -> tuple[Dimension, Transform | None]:
        """Dimension of a FlowJo 9 parameter name (``<FITC-A>`` when compensated) and its scale."""
        name, comp = self.matrix.split(fj_name)
        ident, tr = self._scale(fj_name, self.params.get(name), comp != UNCOMPENSATED, where)
        return Dimension(self.names(name), comp, self._add_transform(ident, tr)), tr

    def _scale(
        self, fj_name: str, param: ET.Element | None, compensated: bool, where: str
    ) -> tuple[str, Transform | None]:
        """(id, transform) of a parameter's display scale. Log parameters: the matrix's calibration
        table for the parameter, else the table of its calibrationIndex, else FlowJo's default
        biex; linear ones: lowValue..highValue."""
        if param is None:
            return fj_name, None
        if param.get("log") != "1":
            lo, hi = (_float(param, k, where) for k in ("lowValue", "highValue"))
            ok = lo is not None and hi is not None and hi > lo
            return fj_name, Linear(T=hi, A=-lo) if ok else None
        tables = self._tables()
        if compensated and self.matrix.name:
            for table in tables:
                if table.get("name") == f"{self.matrix.name} {fj_name}":
                    return self._table(table)
        index = param.get("calibrationIndex") or ""
        if index.isdigit() and 1 <= int(index) <= len(tables):
            return self._table(tables[int(index) - 1])
        return "FlowJo biex", FlowJoBiex(negative=0.0, width=-10.0, positive=4.5)

    def _walk(self, node: ET.Element | None, parent: tuple[str, ...]) -> None:
        if node is None:
            return
        for el in node.iterfind("Population"):
            parts = (*parent, el.get("name") or "")
            self._add(parts, lambda el=el, parts=parts: self._gate(el, parts))
            self._walk(el, parts)

    def _gate(self, pop: ET.Element, parts: tuple[str, ...]) -> Gate:
        where = self.where(parts)
        if pop.find("BooleanGate") is not None:
            raise StrategyError(f"{where}: FlowJo 9 boolean gates are not supported")
        holder = pop.find("PolygonGate")
        shapes = [c for c in (holder if holder is not None else ()) if c.tag in _FJ9_SHAPES]
        if len(shapes) != 1:
            raise StrategyError(f"{where}: expected one of {', '.join(_FJ9_SHAPES)}")
        shape = shapes[0]
        axes = [shape.get("xAxisName") or ""]
        if shape.tag != "Range":
            axes.append(shape.get("yAxisName") or "")
        if not all(axes):
            axes = [s.text or "" for s in holder.iterfind("ParameterNames/StringArray/String")]
        pairs = [self.dimension(a, where) for a in axes if a]
        dims, trs = tuple(p[0] for p in pairs), [p[1] for p in pairs]
        verts = np.array(
            [
                [_float(v, "x", where), _float(v, "y", where)]
                for v in shape.iterfind("Polygon/Vertex")
            ],
            dtype=float,
        )
        if verts.ndim != 2 or len(verts) < 2 or np.isnan(verts[:, : len(dims)]).any():
            raise StrategyError(f"{where}: gate vertices without coordinates")
        gate = self._shape(shape.tag, dims, trs, verts, where)
        negated = (shape.get("negated") or "0").strip().lower() not in ("0", "false", "")
        return OutsideGate(gate) if negated else gate

    @staticmethod
    def _shape(tag: str, dims, trs, verts: np.ndarray, where: str) -> Gate:
        if tag == "Range":
            lo, hi = _scaled_bounds(trs[0], verts[:, 0].min(), verts[:, 0].max())
            return RectangleGate(dims[:1], (lo,), (hi,))
        cols = [list(verts[:, k]) for k in range(len(trs))]
        if tag in ("Polygon", "PolyRect"):  # FlowJo 9 keeps rectangles as 4-vertex polygons
            return _grid_polygon(dims, trs, cols, 256)
        return _Workspace9._antipodal_ellipse(dims, np.array(_scaled_columns(trs, cols)).T, where)

    @staticmethod
    def _antipodal_ellipse(dims, pts: np.ndarray, where: str) -> EllipsoidGate:
        """FlowJo 9's ellipse from its 4 antipodal points on the display scale: the two points
        farthest left and right end one axis, the other two the other axis."""
        if pts.shape != (4, 2):
            raise StrategyError(f"{where}: an ellipse needs 4 points in 2 dimensions")
        center = pts.mean(axis=0)
        order = np.argsort(pts[:, 0])
        left, right, others = pts[order[0]], pts[order[-1]], pts[order[1:3]]
        a = float(np.hypot(*(right - left))) / 2
        b = float(np.hypot(*(others[0] - others[1]))) / 2
        major = (left - center) / np.hypot(*(left - center))
        mean, cov = _ellipse(center, major, a, b, np.ones(2))
        return EllipsoidGate(dims, tuple(mean), tuple(map(tuple, cov)), 1.0)

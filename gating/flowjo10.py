"""FlowJo 10 workspaces (``.wsp``): Gating-ML 2.0 gate elements in FlowJo's XML, per-parameter
transforms, the sample's spillover matrix and its population tree."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .errors import StrategyError
from .flowjo_gates import (
    OutsideGate,
    _display_top,
    _ellipse,
    _grid_polygon,
    _scaled,
    _scaled_bounds,
)
from .flowjo_transforms import _local, read_transform
from .flowjo_workspace import _SampleInfo, _Workspace
from .gates import (
    BooleanGate,
    Dimension,
    EllipsoidGate,
    Gate,
    PolygonGate,
    RectangleGate,
    quadrant_rectangles,
)
from .gatingml import NS, _attr, _float
from .transforms import Transform

_G, _T, _D = (f"{{{NS[k]}}}" for k in ("gating", "transforms", "data-type"))
_BOOLEAN_NODES = {"AndNode": "and", "OrNode": "or", "NotNode": "not"}


# --- FlowJo 10 ------------------------------------------------------------------------------------


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
        return read_transform(el, where)

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
        if not 2 <= resolution <= 2**16:
            raise StrategyError(
                f"{where}: gateResolution={resolution:g}; FlowJo's display grids have 2 to "
                "65536 steps"
            )
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

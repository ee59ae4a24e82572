"""FlowJo 9 (Mac XML workspace, version 2.0): its own gate elements (``Polygon``, ``PolyRect``,
``Range``, ``Ellipse``) in raw values, compensation matrices with a prefix and suffix, and
calibration tables that give each parameter's display scale."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED
from .errors import StrategyError
from .flowjo_gates import (
    NEAREST,
    FlowJoCellGate,
    OutsideGate,
    _display_top,
    _ellipse,
    _grid_polygon,
    _scaled_bounds,
    _scaled_columns,
)
from .flowjo_transforms import _table_pairs
from .flowjo_workspace import _Matrix, _SampleInfo, _Workspace
from .gates import (
    BooleanGate,
    Dimension,
    EllipsoidGate,
    Gate,
    PolygonGate,
    RectangleGate,
)
from .gatingml import _float
from .transforms import (
    FlowJoBiex,
    FlowJoLog,
    Linear,
    TableTransform,
    Transform,
)

_FJ9_SHAPES = ("Polygon", "PolyRect", "Range", "Ellipse")
_TERM = re.compile(r"\s*(!?)\s*G(\d+)\s*")


def _boolean_terms(spec: str, n: int, where: str) -> tuple[str, list[tuple[int, bool]]]:
    """(and | or | not, [(gate index, negated)]) of a FlowJo 9 boolean ``specification``: terms
    ``G<i>`` or ``! G<i>`` joined by one operator (``&`` or ``|``), or ``! G<i>`` alone."""
    ops = set(re.findall(r"[&|]", spec))
    parts = re.split(r"[&|]", spec)
    matches = [_TERM.fullmatch(p) for p in parts]
    if len(ops) > 1 or not all(matches) or not spec.strip():
        raise StrategyError(
            f"{where}: boolean specification {spec!r} is not supported (expected terms 'G0' or "
            "'! G0' joined by one of '&' or '|')"
        )
    terms = [(int(m.group(2)), m.group(1) == "!") for m in matches if m]
    if any(i >= n for i, _ in terms):
        raise StrategyError(f"{where}: boolean specification {spec!r} names a gate beyond G{n - 1}")
    if not ops:
        if not terms[0][1]:
            raise StrategyError(f"{where}: boolean specification {spec!r} has no operator")
        return "not", terms
    return ("and" if ops == {"&"} else "or"), terms


# --- FlowJo 9 -------------------------------------------------------------------------------------


class _Workspace9(_Workspace):
    """FlowJo 9 Mac XML workspace (version 2.0)."""

    def _samples(self) -> list[_SampleInfo]:
        # FlowJo 9.2 (workspace 2.0) lists them under SampleList, FlowJo 9.7 (3.0) under Samples
        elements = self.root.findall("SampleList/Sample") + self.root.findall("Samples/Sample")
        infos = (_SampleInfo.of(el) for el in elements)
        return [info for info in infos if info is not None]

    def _read_sample(self, info: _SampleInfo) -> None:
        self.params = {p.get("name"): p for p in info.element.iterfind("Parameter")}
        self._compensation(info.element)
        self.booleans: list[tuple[tuple[str, ...], ET.Element]] = []
        self._walk(info.element.find("SampleNode"), ())
        for parts, _ in self.booleans:  # booleans may refer to booleans defined after them
            self.tree.reserve(parts)
        for parts, el in self.booleans:
            self._add(parts, lambda el=el, parts=parts: self._boolean(el, parts))

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
        low, decades = (_float(param, k, where) for k in ("lowValue", "decades"))
        if low is not None and decades is not None and low > 0 and decades > 0:
            # a plain log display: lowValue at its bottom, `decades` decades up (e.g. the
            # 3.84 decades from 0.2 of a log-amplified $PnE = "3.84, 0.2" parameter)
            return f"FlowJo log {low:g} {decades:g}", FlowJoLog(offset=low, decades=decades)
        return "FlowJo biex", FlowJoBiex(negative=0.0, width=-10.0, positive=4.5)

    def _walk(self, node: ET.Element | None, parent: tuple[str, ...]) -> None:
        if node is None:
            return
        for el in node.iterfind("Population"):
            parts = (*parent, el.get("name") or el.get("nodeName") or "")
            boolean = el.find("BooleanGate")
            if boolean is not None:
                self.booleans.append((parts, boolean))
            else:
                self._add(parts, lambda el=el, parts=parts: self._gate(el, parts))
            self._walk(el, parts)

    def _boolean(self, el: ET.Element, parts: tuple[str, ...]) -> Gate:
        """FlowJo 9's boolean gate: ``specification`` over the ``GatePaths`` (G0 the first), e.g.
        ``G1 & ! G0``; paths are sibling names or paths from the root (``/A``)."""
        where = self.where(parts)
        paths = [s.text or "" for s in el.iterfind("GatePaths/StringArray/String")]
        spec = el.get("specification") or ""
        refs = [self.tree.resolve(p, parts[:-1]) for p in paths]
        op, terms = _boolean_terms(spec, len(refs), where)
        if op == "not":
            return BooleanGate("not", ((refs[terms[0][0]], False),))
        return BooleanGate(op, tuple((refs[i], negated) for i, negated in terms))

    def _gate(self, pop: ET.Element, parts: tuple[str, ...]) -> Gate:
        where = self.where(parts)
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
        """The gate on the display scale, evaluated on FlowJo 9's 256 x 256 display cells where
        every dimension has a display scale (exact values otherwise)."""
        tops = tuple(_display_top(tr) for tr in trs)
        cols = _scaled_columns(trs, [list(verts[:, k]) for k in range(len(trs))])
        if None in tops:
            return _Workspace9._exact_shape(tag, dims, trs, verts, where)
        cell = np.asarray(tops, dtype=np.float64) / 256
        corners = [np.asarray(c, dtype=np.float64) / k for c, k in zip(cols, cell)]
        visible = [np.abs(c) <= 256 for c in corners]
        if not all(np.allclose(c[v], np.rint(c[v]), atol=1e-3) for c, v in zip(corners, visible)):
            # not drawn on 256 display cells (FlowJo 9.2 float data, larger plots)
            return _Workspace9._exact_shape(tag, dims, trs, verts, where)
        # drawn on the display cells' corners: snap the stored (float32) vertices back on them
        snapped = [list(np.rint(c) * k) for c, k in zip(corners, cell)]
        if tag == "Range":
            gate: Gate = RectangleGate(dims[:1], (min(snapped[0]),), (max(snapped[0]),))
        elif tag in ("Polygon", "PolyRect"):  # FlowJo 9 keeps rectangles as 4-vertex polygons
            gate = PolygonGate(dims, tuple(zip(*snapped)))
        else:
            gate = _Workspace9._antipodal_ellipse(dims, np.array(snapped).T, where)
        return FlowJoCellGate(gate, tops)

    @staticmethod
    def _exact_shape(tag: str, dims, trs, verts: np.ndarray, where: str) -> Gate:
        if tag == "Range":
            lo, hi = _scaled_bounds(trs[0], verts[:, 0].min(), verts[:, 0].max())
            return RectangleGate(dims[:1], (lo,), (hi,))
        cols = [list(verts[:, k]) for k in range(len(trs))]
        if tag in ("Polygon", "PolyRect"):
            # to the nearest bin on every axis: on the FlowJo 9.2 workspace (A2004) truncating
            # table axes as FlowJo 10 truncates biex ones moves 3 polygons' counts further off
            return _grid_polygon(dims, trs, cols, 256, NEAREST)
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

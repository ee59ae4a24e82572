"""Gating-ML 2.0 import and export (ISAC). XML is parsed with defusedxml: no external entities, no
entity-expansion bombs (workspaces and gate files come from collaborators)."""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from .compensation import UNCOMPENSATED, Compensation
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
from .limits import MAX_NUMBER_CHARACTERS, MAX_XML_BYTES, excerpt, read_document
from .strategy import Population, Strategy
from .transforms import Asinh, Hyperlog, Linear, Log, Logicle, Ratio, Transform

NS = {
    "gating": "http://www.isac-net.org/std/Gating-ML/v2.0/gating",
    "transforms": "http://www.isac-net.org/std/Gating-ML/v2.0/transformations",
    "data-type": "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes",
}
_G, _T, _D = (f"{{{NS[k]}}}" for k in ("gating", "transforms", "data-type"))
#: cytowhim's own attributes (Gating-ML allows any attribute on gates, transformations and
#: matrices): a name that is not a valid XML id (``cytowhim:name="CD4+ T cells"``), a label
CYTOWHIM_NS = "urn:cytowhim:gating"
_C = f"{{{CYTOWHIM_NS}}}"

_TRANSFORM_TAGS = {
    "flin": (Linear, ("T", "A")),
    "flog": (Log, ("T", "M")),
    "fasinh": (Asinh, ("T", "M", "A")),
    "logicle": (Logicle, ("T", "W", "M", "A")),
    "hyperlog": (Hyperlog, ("T", "W", "M", "A")),
}


def parse_xml(path: str | os.PathLike, what: str = "XML strategy file") -> ET.Element:
    """Root element of an untrusted XML file; StrategyError naming the file if it is missing,
    not a regular file, larger than :data:`~gating.limits.MAX_XML_BYTES`, unsafe (entities,
    external references) or not well-formed.

    The document is read whole and parsed in one pass: fed in pieces, expat scans a long
    attribute again for every piece (a 50 MB attribute took a minute)."""
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    data = read_document(path, what, MAX_XML_BYTES, StrategyError)
    try:
        return SafeET.fromstring(data)
    except DefusedXmlException as exc:
        raise StrategyError(
            f"{path}: refused unsafe XML ({type(exc).__name__}: {excerpt(str(exc), 200)})"
        ) from None
    except ET.ParseError as exc:
        raise StrategyError(f"{path}: not well-formed XML ({excerpt(str(exc), 200)})") from None
    except (LookupError, ValueError) as exc:  # e.g. <?xml encoding="..."?> naming no encoding
        raise StrategyError(f"{path}: cannot read the XML ({excerpt(str(exc), 200)})") from None


def _attr(el: ET.Element, name: str, ns: str = _G, default: str | None = None) -> str | None:
    value = el.get(ns + name)
    if value is None:
        value = el.get(name, default)
    return value


def _float(el: ET.Element, name: str, where: str, ns: str = _G) -> float | None:
    """A number attribute (None if absent); StrategyError quoting an excerpt when it is not a
    number or NaN. Infinity is returned (the gate decides where it may stand for an open end)."""
    raw = _attr(el, name, ns)
    if raw is None:
        return None
    if len(raw) > MAX_NUMBER_CHARACTERS:
        raise StrategyError(
            f"{where}: attribute {name}={excerpt(raw)} is not a number (a number has at most "
            f"{MAX_NUMBER_CHARACTERS} characters)"
        )
    try:
        value = float(raw)
    except ValueError:
        raise StrategyError(f"{where}: attribute {name}={excerpt(raw)} is not a number") from None
    if math.isnan(value):
        raise StrategyError(f"{where}: attribute {name}={excerpt(raw)} is NaN, not a number")
    return value


class _Reader:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.root = parse_xml(path, "Gating-ML document")
        self.transforms: dict[str, Transform | Ratio] = {}
        self.compensations: dict[str, Compensation] = {}
        self.populations: list[Population] = []
        #: XML id -> name, for ids that stand for another name (``cytowhim:name``)
        self.renamed: dict[str, str] = {}

    def where(self, el: ET.Element | None = None, what: str = "") -> str:
        ident = _attr(el, "id", _G) or _attr(el, "id", _T) if el is not None else None
        tag = el.tag.split("}")[-1] if el is not None else ""
        return (
            f"{self.path}: {tag} {excerpt(ident)}{' ' + what if what else ''}"
            if el is not None
            else self.path
        )

    def read(self) -> Strategy:
        for el in self.root.iter(_T + "spectrumMatrix"):
            self._matrix(el)
        for el in self.root.iter(_T + "transformation"):
            self._transform(el)
        for el in self.root.iter():  # gates may sit inside other (custom) elements
            if not el.tag.startswith(_G):
                continue
            tag = el.tag.split("}")[-1]
            if tag in ("RectangleGate", "PolygonGate", "EllipsoidGate", "BooleanGate"):
                self._gate(el, tag)
            elif tag == "QuadrantGate":
                self._quadrants(el)
        if not self.populations:
            raise StrategyError(
                f"{self.path}: no gates: a Gating-ML 2.0 document has gates in the namespace "
                f"{NS['gating']} (root element {excerpt(self.root.tag)})"
            )
        try:
            if self.renamed:
                self.populations = [self._renamed(p) for p in self.populations]
            return Strategy(
                self.populations,
                self.transforms,
                self.compensations,
                name=Path(self.path).stem,
                source=self.path,
            )
        except StrategyError:
            raise
        except Exception as exc:  # invalid geometry etc.
            raise StrategyError(f"{self.path}: {exc}") from None

    def _name(self, el: ET.Element, ident: str) -> str:
        """The name an element's id stands for (its ``cytowhim:name``, else the id)."""
        name = el.get(_C + "name")
        if name and name != ident:
            self.renamed[ident] = name
            return name
        return ident

    def _renamed(self, p: Population) -> Population:
        """A population with gate ids in its parent and boolean operands turned into names."""
        gate = p.gate
        if isinstance(gate, BooleanGate):
            ops = tuple((self.renamed.get(r, r), c) for r, c in gate.operands)
            gate = BooleanGate(gate.op, ops, gate.dimensions)
        parent = None if p.parent is None else self.renamed.get(p.parent, p.parent)
        return Population(p.name, gate, parent, p.label)

    # --- transforms and matrices ---------------------------------------------------------------

    def _matrix(self, el: ET.Element) -> None:
        ident = _attr(el, "id", _T)
        if ident:
            ident = self._name(el, ident)
        if not ident:
            raise StrategyError(f"{self.path}: spectrumMatrix without an id")
        fluor = [_attr(d, "name", _D) for d in el.findall(f"{_T}fluorochromes/{_D}fcs-dimension")]
        det = [_attr(d, "name", _D) for d in el.findall(f"{_T}detectors/{_D}fcs-dimension")]
        rows = []
        for spec in el.findall(_T + "spectrum"):
            rows.append(
                [_float(c, "value", self.where(el), _T) for c in spec.findall(_T + "coefficient")]
            )
        try:
            self.compensations[ident] = Compensation(
                ident, tuple(fluor), tuple(det), np.array(rows)
            )
        except Exception as exc:
            raise StrategyError(f"{self.where(el)}: {exc}") from None

    def _transform(self, el: ET.Element) -> None:
        ident = _attr(el, "id", _T)
        if ident:
            ident = self._name(el, ident)
        if not ident:
            raise StrategyError(f"{self.path}: transformation without an id")
        for child in el:
            tag = child.tag.split("}")[-1]
            if tag in _TRANSFORM_TAGS:
                cls, names = _TRANSFORM_TAGS[tag]
                params = {}
                for n in names:
                    v = _float(child, n, self.where(el), _T)
                    if v is None:
                        raise StrategyError(f"{self.where(el)}: {tag} lacks parameter {n}")
                    params[n] = v
                try:
                    self.transforms[ident] = cls(**params)
                except (GatingError, TypeError, ValueError) as exc:
                    raise StrategyError(f"{self.where(el)}: {exc}") from None
                return
            if tag == "fratio":
                dims = [_attr(d, "name", _D) for d in child.findall(_D + "fcs-dimension")]
                if len(dims) != 2:
                    raise StrategyError(f"{self.where(el)}: fratio needs two fcs-dimensions")
                p = {n: _float(child, n, self.where(el), _T) for n in ("A", "B", "C")}
                try:
                    self.transforms[ident] = Ratio(
                        dims[0], dims[1], **{k: v or 0.0 for k, v in p.items()}
                    )
                except (GatingError, TypeError, ValueError) as exc:
                    raise StrategyError(f"{self.where(el)}: {exc}") from None
                return
        raise StrategyError(f"{self.where(el)}: no transform this reader knows")

    # --- gates -------------------------------------------------------------------------------------

    def _dimension(self, el: ET.Element, gate_el: ET.Element) -> Dimension:
        comp = _attr(el, "compensation-ref", _G) or UNCOMPENSATED
        comp = self.renamed.get(comp, comp)
        tr = _attr(el, "transformation-ref", _G)
        tr = None if tr is None else self.renamed.get(tr, tr)
        fcs = el.find(_D + "fcs-dimension")
        if fcs is not None:
            return Dimension(_attr(fcs, "name", _D) or "", comp, tr)
        new = el.find(_D + "new-dimension")
        if new is not None:
            ratio = _attr(new, "transformation-ref", _D) or ""
            return Dimension(self.renamed.get(ratio, ratio), comp, tr, ratio=True)
        raise StrategyError(f"{self.where(gate_el)}: a dimension names no fcs-dimension")

    def _add(self, el: ET.Element, gate: Gate, ident: str | None = None) -> None:
        own = ident is None  # the element's own id (not one quadrant of a quadrant gate)
        ident = ident or _attr(el, "id", _G)
        if not ident:
            raise StrategyError(f"{self.path}: a {el.tag.split('}')[-1]} has no gating:id")
        name = self._name(el, ident) if own else ident
        label = el.get(_C + "label") if own else None
        self.populations.append(Population(name, gate, _attr(el, "parent_id", _G), label))

    def _gate(self, el: ET.Element, tag: str) -> None:
        where = self.where(el)
        try:
            if tag == "BooleanGate":
                self._add(el, self._boolean(el))
                return
            dim_els = el.findall(_G + "dimension")
            dims = tuple(self._dimension(d, el) for d in dim_els)
            if tag == "RectangleGate":
                mins = tuple(_float(d, "min", where) for d in dim_els)
                maxs = tuple(_float(d, "max", where) for d in dim_els)
                self._add(el, RectangleGate(dims, mins, maxs))
            elif tag == "PolygonGate":
                verts = [
                    tuple(_float(c, "value", where, _D) for c in v.findall(_G + "coordinate"))
                    for v in el.findall(_G + "vertex")
                ]
                self._add(el, PolygonGate(dims, tuple(verts)))
            else:
                mean = [
                    _float(c, "value", where, _D) for c in el.findall(f"{_G}mean/{_G}coordinate")
                ]
                cov = [
                    [_float(e, "value", where, _D) for e in row.findall(_G + "entry")]
                    for row in el.findall(f"{_G}covarianceMatrix/{_G}row")
                ]
                dist = el.find(_G + "distanceSquare")
                if dist is None:
                    raise StrategyError(f"{where}: ellipsoid without distanceSquare")
                self._add(
                    el,
                    EllipsoidGate(
                        dims, tuple(mean), tuple(map(tuple, cov)), _float(dist, "value", where, _D)
                    ),
                )
        except StrategyError:
            raise
        except Exception as exc:
            raise StrategyError(f"{where}: {exc}") from None

    def _boolean(self, el: ET.Element) -> BooleanGate:
        for op in ("and", "or", "not"):
            node = el.find(_G + op)
            if node is not None:
                refs = [
                    (
                        _attr(r, "ref", _G),
                        (_attr(r, "use-as-complement", _G) or "false").lower() == "true",
                    )
                    for r in node.findall(_G + "gateReference")
                ]
                return BooleanGate(op, tuple(refs))
        raise StrategyError(f"{self.where(el)}: boolean gate without and/or/not")

    def _quadrants(self, el: ET.Element) -> None:
        where = self.where(el)
        dividers = {}
        for d in el.findall(_G + "divider"):
            did = _attr(d, "id", _G)
            values = []
            for v in d.findall(_G + "value"):
                text = (v.text or "").strip()
                try:
                    if len(text) > MAX_NUMBER_CHARACTERS:
                        raise ValueError(text)
                    values.append(float(text))
                except ValueError:
                    raise StrategyError(
                        f"{where}: divider {excerpt(did)} value {excerpt(v.text)} is not a number"
                    ) from None
            dividers[did] = (self._dimension(d, el), tuple(values))
        quadrants = {}
        for q in el.findall(_G + "Quadrant"):
            quadrants[_attr(q, "id", _G)] = {
                _attr(p, "divider_ref", _G): _float(p, "location", where)
                for p in q.findall(_G + "position")
            }
        try:
            rects = quadrant_rectangles(dividers, quadrants)
        except Exception as exc:
            raise StrategyError(f"{where}: {exc}") from None
        for qid, rect in rects.items():
            self._add(el, rect, qid)


def read_gatingml(path: str | os.PathLike) -> Strategy:
    """A Strategy from a Gating-ML 2.0 document; population names are the gate ids."""
    return _Reader(path).read()


# --- export ----------------------------------------------------------------------------------------

_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")


def xml_id(name: str, taken: set[str]) -> str:
    """A valid XML id (an NCName, as Gating-ML's schema wants gate, transformation and matrix ids)
    for ``name``, unique among ``taken`` (and added to it): the name itself where it is one, else
    e.g. ``'CD4+ T cells'`` -> ``'CD4pos_T_cells'``."""
    ident = str(name)
    if not _NCNAME.match(ident):
        ident = ident.translate(_DASHES).replace("+", "pos")
        ident = re.sub(r"[^A-Za-z0-9._-]+", "_", ident).strip("_") or "id"
        if not _NCNAME.match(ident):
            ident = "_" + ident
    base, k = ident, 2
    while ident in taken:
        ident, k = f"{base}_{k}", k + 1
    taken.add(ident)
    return ident


_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2010": "-", "\u2011": "-"})


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _number(v: float) -> str:
    return repr(float(v))


class _Writer:
    """Gating-ML 2.0 of a strategy: names that are not XML ids get one, the name is kept in a
    ``cytowhim:name`` attribute (so :func:`read_gatingml` gives the names back)."""

    def __init__(self, strategy: Strategy):
        self.strategy = strategy
        taken: set[str] = set()
        self.comp_ids = {k: xml_id(k, taken) for k in strategy.compensations}
        self.transform_ids = {k: xml_id(k, taken) for k in strategy.transforms}
        self.gate_ids = {p.name: xml_id(p.name, taken) for p in strategy.populations}

    def _named(self, el: ET.Element, key: str, ident: str, id_attr: str) -> None:
        el.set(id_attr, ident)
        if ident != key:
            el.set(_C + "name", key)

    def document(self) -> ET.Element:
        st = self.strategy
        root = ET.Element(_q("gating", "Gating-ML"))
        for note in st.notes:
            # '--' may not appear in an XML comment
            root.append(ET.Comment(" " + note.replace("--", "- -") + " "))
        for comp in st.compensations.values():
            m = ET.SubElement(root, _q("transforms", "spectrumMatrix"))
            self._named(m, comp.id, self.comp_ids[comp.id], _q("transforms", "id"))
            for group, names in (
                ("fluorochromes", comp.fluorochromes),
                ("detectors", comp.detectors),
            ):
                g = ET.SubElement(m, _q("transforms", group))
                for n in names:
                    ET.SubElement(g, _q("data-type", "fcs-dimension")).set(
                        _q("data-type", "name"), n
                    )
            for row in comp.matrix:
                spectrum = ET.SubElement(m, _q("transforms", "spectrum"))
                for v in row:
                    ET.SubElement(spectrum, _q("transforms", "coefficient")).set(
                        _q("transforms", "value"), _number(v)
                    )
        tags = {cls: tag for tag, (cls, _) in _TRANSFORM_TAGS.items()}
        for key, tr in st.transforms.items():
            t = ET.SubElement(root, _q("transforms", "transformation"))
            self._named(t, key, self.transform_ids[key], _q("transforms", "id"))
            if isinstance(tr, Ratio):
                r = ET.SubElement(t, _q("transforms", "fratio"))
                for n, v in tr.params().items():
                    r.set(_q("transforms", n), _number(v))
                for n in (tr.numerator, tr.denominator):
                    ET.SubElement(r, _q("data-type", "fcs-dimension")).set(
                        _q("data-type", "name"), n
                    )
            else:
                tag = tags.get(type(tr))
                if tag is None:
                    raise StrategyError(
                        f"transform {key!r} ({type(tr).__name__}) has no Gating-ML form"
                    )
                x = ET.SubElement(t, _q("transforms", tag))
                for n, v in tr.params().items():
                    x.set(_q("transforms", n), _number(v))
        for pop in st.populations:
            self._gate(root, pop)
        return root

    def _dimension(
        self, parent: ET.Element, tag: str, dim: Dimension, extra: dict[str, Any]
    ) -> ET.Element:
        el = ET.SubElement(parent, _q("gating", tag))
        comp = self.comp_ids.get(dim.compensation, dim.compensation)
        el.set(_q("gating", "compensation-ref"), comp)
        if dim.transform:
            el.set(_q("gating", "transformation-ref"), self.transform_ids[dim.transform])
        for k, v in extra.items():
            if v is not None:
                el.set(_q("gating", k), _number(v))
        if dim.ratio:
            ET.SubElement(el, _q("data-type", "new-dimension")).set(
                _q("data-type", "transformation-ref"), self.transform_ids[dim.name]
            )
        else:
            ET.SubElement(el, _q("data-type", "fcs-dimension")).set(
                _q("data-type", "name"), dim.name
            )
        return el

    def _gate(self, root: ET.Element, pop: Population) -> None:
        gate = pop.gate
        if isinstance(gate, RectangleGate):
            el = ET.SubElement(root, _q("gating", "RectangleGate"))
            for d, lo, hi in zip(gate.dimensions, gate.mins, gate.maxs):
                self._dimension(el, "dimension", d, {"min": lo, "max": hi})
        elif isinstance(gate, PolygonGate):
            el = ET.SubElement(root, _q("gating", "PolygonGate"))
            for d in gate.dimensions:
                self._dimension(el, "dimension", d, {})
            for vx in gate.vertices:
                v = ET.SubElement(el, _q("gating", "vertex"))
                for c in vx:
                    ET.SubElement(v, _q("gating", "coordinate")).set(
                        _q("data-type", "value"), _number(c)
                    )
        elif isinstance(gate, EllipsoidGate):
            el = ET.SubElement(root, _q("gating", "EllipsoidGate"))
            for d in gate.dimensions:
                self._dimension(el, "dimension", d, {})
            mean = ET.SubElement(el, _q("gating", "mean"))
            for c in gate.mean:
                ET.SubElement(mean, _q("gating", "coordinate")).set(
                    _q("data-type", "value"), _number(c)
                )
            cov = ET.SubElement(el, _q("gating", "covarianceMatrix"))
            for row in gate.covariance:
                r = ET.SubElement(cov, _q("gating", "row"))
                for c in row:
                    ET.SubElement(r, _q("gating", "entry")).set(
                        _q("data-type", "value"), _number(c)
                    )
            ET.SubElement(el, _q("gating", "distanceSquare")).set(
                _q("data-type", "value"), _number(gate.distance_square)
            )
        elif isinstance(gate, BooleanGate):
            el = ET.SubElement(root, _q("gating", "BooleanGate"))
            op = ET.SubElement(el, _q("gating", gate.op))
            for ref, comp in gate.operands:
                r = ET.SubElement(op, _q("gating", "gateReference"))
                r.set(_q("gating", "ref"), self.gate_ids[ref])
                if comp:
                    r.set(_q("gating", "use-as-complement"), "true")
        else:
            raise StrategyError(
                f"population {pop.name!r}: {type(gate).__name__} has no Gating-ML form (custom "
                "and data-driven gates can be exported once applied: "
                "strategy.apply(sample).frozen().to_gatingml(path))"
            )
        self._named(el, pop.name, self.gate_ids[pop.name], _q("gating", "id"))
        if pop.label is not None and pop.label != pop.name:
            el.set(_C + "label", pop.label)
        if pop.parent is not None:
            el.set(_q("gating", "parent_id"), self.gate_ids[pop.parent])


def write_gatingml(strategy: Strategy, path: str | os.PathLike) -> dict[str, str]:
    """Write ``strategy`` as Gating-ML 2.0 (quadrants become one rectangle per quadrant); returns
    population name -> gate id (the names themselves where they are valid XML ids; other names
    get one, and :func:`read_gatingml` restores them from ``cytowhim:name``)."""
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    ET.register_namespace("cytowhim", CYTOWHIM_NS)
    writer = _Writer(strategy)
    root = writer.document()
    ET.indent(root)
    ET.ElementTree(root).write(os.fspath(path), encoding="UTF-8", xml_declaration=True)
    return dict(writer.gate_ids)

"""FlowJo 10 workspace export: one sample and a strategy of fixed gates as a ``.wsp``.

The workspace holds what FlowJo needs to open the sample with the gates as cytowhim applied them:
the FCS file's URI and keywords, its spillover matrix (``Comp-`` parameters), one display
transform per gated parameter, and the population tree with the gates as Gating-ML 2.0 elements in
FlowJo's gating namespace, coordinates in raw (compensated) values as FlowJo stores them.

FlowJo has one display scale per parameter, and draws a polygon straight on it: a parameter that a
polygon uses gets that polygon's scale (the strategy's transform; linear 0..$PnR where the gate has
none, as FlowJo shows scatter); ranges and rectangles are exact on any monotonic scale, so the
other parameters take their first gate's transform. Two polygons on one parameter with different
scales cannot be written. Gates without a FlowJo form (data-driven ones: freeze the result first,
ellipsoids, ratio dimensions, custom gates) are refused with the population named.

FlowJo gates polygons on its 256 x 256 display grid; its own importer
(:func:`gating.flowjo.read_flowjo`) does too, so counts read back can differ from the exact
polygon by the events next to a polygon's edge (rectangles and ranges are exact).
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import StrategyError
from .gates import BooleanGate, Dimension, Gate, PolygonGate, RectangleGate
from .gatingml import NS
from .strategy import Population, Strategy
from .transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLog,
    Hyperlog,
    Linear,
    Log,
    Logicle,
    Transform,
)

FLOWJO_VERSION = "10.8.1"
_G, _T, _D = (f"{{{NS[k]}}}" for k in ("gating", "transforms", "data-type"))
_ACQUISITION = "Acquisition-defined"  # FlowJo's name for the file's own spillover matrix
_PREFIX = "Comp-"
_BOOLEAN_NODES = {"and": "AndNode", "or": "OrNode", "not": "NotNode"}


def write_flowjo(
    strategy: Strategy, path: str | os.PathLike, sample: Any, uri: str | None = None
) -> None:
    """Write a FlowJo 10 workspace with ``sample`` and ``strategy``'s gates (fixed gates only:
    ``strategy.apply(sample).frozen()`` fixes data-driven ones).

    sample: a :class:`cytowhim.Sample` (or anything with ``channels``, ``markers``, ``keywords``,
    ``spillover`` and ``path``); its FCS file is referred to by ``uri`` (default: the absolute
    ``file:`` URI of ``sample.path``). The workspace can be read back by
    :func:`gating.flowjo.read_flowjo` and by FlowKit's ``Workspace``.
    """
    writer = _Writer(strategy, sample)
    root = writer.document(uri)
    for prefix, ns in NS.items():
        ET.register_namespace(prefix, ns)
    ET.indent(root)
    ET.ElementTree(root).write(os.fspath(path), encoding="UTF-8", xml_declaration=True)


def fj_name(channel: str) -> str:
    """A channel name as FlowJo writes it ('/' becomes '_')."""
    return channel.replace("/", "_")


def transform_element(tr: Transform | None, top: float) -> tuple[str, dict[str, str]]:
    """(tag, attributes) of FlowJo's transform element for a scale; None: linear 0..``top``."""

    def num(v: float) -> str:
        return repr(float(v))

    if tr is None:
        return "linear", {"minRange": "0", "maxRange": num(top), "gain": "1"}
    if isinstance(tr, Linear):  # (x + A) / (T + A): FlowJo's axis from -A to T
        return "linear", {"minRange": num(-tr.A), "maxRange": num(tr.T), "gain": "1"}
    if isinstance(tr, Logicle):
        attrs = {"length": "256", "T": num(tr.T), "W": num(tr.W), "M": num(tr.M), "A": num(tr.A)}
        return "logicle", attrs
    if isinstance(tr, Asinh):
        attrs = {"length": "256", "maxRange": num(tr.T), "T": num(tr.T), "M": num(tr.M)}
        return "fasinh", {**attrs, "A": num(tr.A), "W": "0"}
    if isinstance(tr, Hyperlog):
        attrs = {"length": "256", "T": num(tr.T), "W": num(tr.W), "M": num(tr.M), "A": num(tr.A)}
        return "hyperlog", attrs
    if isinstance(tr, FlowJoLog):
        return "log", {"offset": num(tr.offset), "decades": num(tr.decades)}
    if isinstance(tr, Log):  # log10(x / T) / M + 1 = (log10 x - log10(T / 10**M)) / M
        return "log", {"offset": num(tr.T / 10.0**tr.M), "decades": num(tr.M)}
    if isinstance(tr, FlowJoBiex):
        attrs = {"length": "256", "maxRange": num(tr.max_value), "neg": num(tr.negative)}
        return "biex", {**attrs, "width": num(tr.width), "pos": num(tr.positive)}
    raise StrategyError(f"{type(tr).__name__} has no FlowJo 10 form")


def _clean(text: str) -> str:
    """Text without the control characters XML 1.0 cannot hold."""
    return "".join(c for c in str(text) if c in "\t\n\r" or ord(c) >= 0x20)


class _Writer:
    def __init__(self, strategy: Strategy, sample: Any):
        self.strategy = strategy
        self.sample = sample
        self.channels = [str(c) for c in sample.channels]
        self.where = f"FlowJo export of {strategy.name or 'the strategy'}"
        self._evaluator: Any = None
        self.comp = self._compensation()
        self.scales = self._scales()

    # --- names, compensation, scales ---------------------------------------------------------------

    def channel(self, name: str) -> str:
        """The sample's channel for a dimension name (a channel, or a marker as the engine finds
        it)."""
        if name in self.channels:
            return name
        if self._evaluator is None:
            from .evaluator import Evaluator

            self._evaluator = Evaluator(self.strategy, self.sample)
        return self.channels[self._evaluator.column(name)]

    def _dimensions(self) -> list[tuple[Population, Dimension]]:
        out = []
        for pop in self.strategy.populations:
            gate = _inner(pop.gate)
            for d in gate.dimensions:
                if d.ratio:
                    raise StrategyError(
                        f"{self.where}: population {pop.name!r} gates on ratio {d.name!r}; FlowJo "
                        "workspaces hold derived parameters this writer does not make"
                    )
                out.append((pop, d))
        return out

    def _compensation(self) -> Compensation | None:
        """The one spillover matrix the gates use (FlowJo has one per sample), or None."""
        ids = {d.compensation for _, d in self._dimensions()} - {UNCOMPENSATED}
        if not ids:
            return None
        if len(ids) > 1:
            raise StrategyError(
                f"{self.where}: the gates use {len(ids)} compensations ({sorted(ids)}); a FlowJo "
                "sample has one spillover matrix"
            )
        (ident,) = ids
        if ident == FROM_FILE:
            spill = getattr(self.sample, "spillover", None)
            if spill is None:
                return None  # gated uncompensated, as the engine does
            comp = Compensation.from_spillover(spill)
        else:
            comp = self.strategy.compensations[ident]
        if comp.fluorochromes != comp.detectors:
            raise StrategyError(
                f"{self.where}: compensation {ident!r} unmixes into fluorochromes "
                f"{list(comp.fluorochromes)} other than its detectors; FlowJo's spillover matrix "
                "is square over the detectors"
            )
        names = tuple(self.channel(n) for n in comp.detectors)
        name = _ACQUISITION if ident == FROM_FILE or self._own(names, comp.matrix) else ident
        return Compensation(name, names, names, comp.matrix)

    def _own(self, names: tuple[str, ...], matrix: np.ndarray) -> bool:
        """Whether a matrix is the sample's own spillover (FlowJo: 'Acquisition-defined')."""
        spill = getattr(self.sample, "spillover", None)
        return (
            spill is not None
            and tuple(str(c) for c in spill.columns) == names
            and np.array_equal(np.asarray(spill, dtype=np.float64), matrix)
        )

    def compensated(self, d: Dimension) -> bool:
        return (
            self.comp is not None
            and d.compensation != UNCOMPENSATED
            and self.channel(d.name) in self.comp.detectors
        )

    def parameter(self, d: Dimension) -> str:
        """FlowJo's name of a gate dimension: 'Comp-FITC-A' when compensated."""
        name = fj_name(self.channel(d.name))
        return _PREFIX + name if self.compensated(d) else name

    def _scales(self) -> dict[str, Transform | None]:
        """Channel -> its display scale (see the module docstring)."""
        polygon: dict[str, tuple[Transform | None, str]] = {}
        other: dict[str, Transform | None] = {}
        for pop, d in self._dimensions():
            ch = self.channel(d.name)
            tr = self.transform(d)
            if isinstance(_inner(pop.gate), PolygonGate):
                seen = polygon.setdefault(ch, (tr, pop.name))
                if seen[0] != tr:
                    raise StrategyError(
                        f"{self.where}: polygons {seen[1]!r} and {pop.name!r} draw {ch!r} on "
                        "different scales; FlowJo has one scale per parameter"
                    )
            else:
                other.setdefault(ch, tr)
        return {**other, **{ch: tr for ch, (tr, _) in polygon.items()}}

    def transform(self, d: Dimension) -> Transform | None:
        if d.transform is None:
            return None
        tr = self.strategy.transforms[d.transform]
        if not isinstance(tr, Transform):
            raise StrategyError(f"{self.where}: transform {d.transform!r} has no FlowJo form")
        return tr

    def top(self, channel: str) -> float:
        """Top of a linear display: the parameter's $PnR (262144 where it has none)."""
        keywords = getattr(self.sample, "keywords", None) or {}
        j = self.channels.index(channel) + 1
        try:
            value = float(keywords.get(f"$P{j}R", "262144"))
        except ValueError:
            value = 262144.0
        return value if value > 0 else 262144.0

    def raw(self, d: Dimension, values: list[float]) -> list[float]:
        """Values on a dimension's scale back to raw values (FlowJo's gate coordinates)."""
        tr = self.transform(d)
        if tr is None:
            return [float(v) for v in values]
        return [float(v) for v in tr.inverse(np.asarray(values, dtype=np.float64))]

    # --- the document -----------------------------------------------------------------------------

    def document(self, uri: str | None) -> ET.Element:
        root = ET.Element(
            "Workspace",
            {
                "version": "20.0",
                "modDate": time.strftime("%a %b %d %H:%M:%S %Z %Y"),
                "flowJoVersion": FLOWJO_VERSION,
                "curGroup": "All Samples",
            },
        )
        for note in self.strategy.notes:
            root.append(ET.Comment(" " + _clean(note).replace("--", "- -") + " "))
        groups = ET.SubElement(root, "Groups")
        node = ET.SubElement(
            groups,
            "GroupNode",
            {"name": "All Samples", "annotation": "", "owningGroup": "All Samples"},
        )
        group = ET.SubElement(node, "Group", {"name": "All Samples", "live": "1"})
        ET.SubElement(ET.SubElement(group, "SampleRefs"), "SampleRef", {"sampleID": "1"})
        samples = ET.SubElement(root, "SampleList")
        self._sample(ET.SubElement(samples, "Sample"), uri)
        return root

    def _file(self) -> str:
        path = getattr(self.sample, "path", None)
        keywords = getattr(self.sample, "keywords", None) or {}
        return Path(str(path)).name if path else str(keywords.get("$FIL") or "sample.fcs")

    def _sample(self, el: ET.Element, uri: str | None) -> None:
        path = getattr(self.sample, "path", None)
        if uri is None:
            uri = Path(str(path)).resolve().as_uri() if path else self._file()
        ET.SubElement(el, "DataSet", {"uri": uri, "sampleID": "1"})
        if self.comp is not None:
            self._matrix(el, self.comp)
        xforms = ET.SubElement(el, "Transformations")
        for ch, tr in self.scales.items():
            tag, attrs = transform_element(tr, self.top(ch))
            t = ET.SubElement(xforms, _T + tag, {_T + k: v for k, v in attrs.items()})
            if "gain" in attrs:  # FlowJo writes the gain unqualified
                t.attrib.pop(_T + "gain")
                t.set("gain", attrs["gain"])
            ET.SubElement(t, _D + "parameter", {_D + "name": fj_name(ch)})
        keywords = ET.SubElement(el, "Keywords")
        kw = dict(getattr(self.sample, "keywords", None) or {})
        kw.setdefault("$FIL", self._file())
        for k, v in kw.items():
            ET.SubElement(keywords, "Keyword", {"name": _clean(k), "value": _clean(v)})
        node = ET.SubElement(
            el,
            "SampleNode",
            {"name": self._file(), "annotation": "", "owningGroup": "", "sampleID": "1"},
        )
        self._subpopulations(node, None)

    def _matrix(self, el: ET.Element, comp: Compensation) -> None:
        m = ET.SubElement(
            el,
            _T + "spilloverMatrix",
            {
                "spectral": "0",
                "prefix": _PREFIX,
                "name": comp.id,
                "editable": "0",
                "version": f"FlowJo-{FLOWJO_VERSION}",
                "status": "FINALIZED",
                _T + "id": comp.id,
                "suffix": "",
            },
        )
        params = ET.SubElement(m, _D + "parameters")
        names = [fj_name(n) for n in comp.detectors]
        for n in names:
            ET.SubElement(
                params, _D + "parameter", {_D + "name": n, "userProvidedCompInfix": _PREFIX + n}
            )
        for n, row in zip(names, comp.matrix):
            spill = ET.SubElement(
                m, _T + "spillover", {_D + "parameter": n, "userProvidedCompInfix": _PREFIX + n}
            )
            for c, v in zip(names, row):
                ET.SubElement(
                    spill, _T + "coefficient", {_D + "parameter": c, _T + "value": repr(float(v))}
                )

    # --- populations ------------------------------------------------------------------------------

    def _subpopulations(self, parent_el: ET.Element, parent: str | None) -> None:
        children = self.strategy.children(parent)
        if not children:
            return
        labels = [p.display for p in children]
        for label in labels:
            if "/" in label or labels.count(label) > 1:
                raise StrategyError(
                    f"{self.where}: population name {label!r} "
                    + ("holds '/'" if "/" in label else "repeats under one parent")
                    + ", which FlowJo's population paths cannot tell apart"
                )
        subs = ET.SubElement(parent_el, "Subpopulations")
        for pop in children:
            attrs = {"name": pop.display, "annotation": "", "owningGroup": ""}
            if isinstance(pop.gate, BooleanGate):
                el = ET.SubElement(subs, _BOOLEAN_NODES[pop.gate.op], attrs)
                self._boolean(el, pop)
            else:
                el = ET.SubElement(subs, "Population", attrs)
                self._gate(el, pop)
            self._subpopulations(el, pop.name)

    def _id(self, name: str) -> str:
        return f"ID{self.strategy.populations.index(self.strategy[name]) + 1}"

    def _boolean(self, el: ET.Element, pop: Population) -> None:
        gate = pop.gate
        assert isinstance(gate, BooleanGate)
        if gate.op != "not" and any(c for _, c in gate.operands):
            raise StrategyError(
                f"{self.where}: boolean gate {pop.name!r} complements an operand of "
                f"'{gate.op}'; FlowJo's AND/OR nodes take their operands as they are"
            )
        deps = ET.SubElement(el, "Dependents")
        for ref, _ in gate.operands:
            ET.SubElement(deps, "Dependent", {"name": self.strategy.path(ref)})

    def _gate(self, el: ET.Element, pop: Population) -> None:
        holder = ET.SubElement(el, "Gate", {_G + "id": self._id(pop.name)})
        if pop.parent is not None:
            holder.set(_G + "parent_id", self._id(pop.parent))
        gate, inside = pop.gate, "1"
        inner = getattr(gate, "gate", None)
        if isinstance(inner, Gate):  # FlowJo's own outside gate, read from a workspace
            gate, inside = inner, "0"
        if isinstance(gate, RectangleGate):
            g = ET.SubElement(
                holder,
                _G + "RectangleGate",
                {"eventsInside": inside, "percentX": "0", "percentY": "0"},
            )
            for d, lo, hi in zip(gate.dimensions, gate.mins, gate.maxs):
                dim = ET.SubElement(g, _G + "dimension")
                for key, bound in (("min", lo), ("max", hi)):
                    if bound is not None:
                        dim.set(_G + key, repr(self.raw(d, [bound])[0]))
                ET.SubElement(dim, _D + "fcs-dimension", {_D + "name": self.parameter(d)})
        elif isinstance(gate, PolygonGate):
            g = ET.SubElement(
                holder,
                _G + "PolygonGate",
                {"eventsInside": inside, "quadId": "-1", "gateResolution": "256"},
            )
            for d in gate.dimensions:
                dim = ET.SubElement(g, _G + "dimension")
                ET.SubElement(dim, _D + "fcs-dimension", {_D + "name": self.parameter(d)})
            cols = [
                self.raw(d, [v[k] for v in gate.vertices]) for k, d in enumerate(gate.dimensions)
            ]
            for x, y in zip(*cols):
                v = ET.SubElement(g, _G + "vertex")
                ET.SubElement(v, _G + "coordinate", {_D + "value": repr(x)})
                ET.SubElement(v, _G + "coordinate", {_D + "value": repr(y)})
        else:
            raise StrategyError(
                f"{self.where}: population {pop.name!r}: {type(gate).__name__} has no FlowJo "
                "form here (ranges, rectangles, polygons and boolean gates do; data-driven gates "
                "once frozen: strategy.apply(sample).frozen())"
            )


def _inner(gate: Gate) -> Gate:
    inner = getattr(gate, "gate", None)
    return inner if isinstance(inner, Gate) else gate

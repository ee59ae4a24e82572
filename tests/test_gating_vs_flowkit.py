"""Differential tests: the same strategies, built once in cytowhim (``gating``) and once in FlowKit,
find exactly the same events in every population.

Each case is written once as plain data (:class:`Case`) and turned into a
:class:`gating.Strategy` and into a ``flowkit.GatingStrategy``; both gate the same FCS file (read
by ``cytowhim.read_fcs`` and by ``flowkit.Sample``, which both apply ``$PnE`` / ``$PnG`` /
``$TIMESTEP``) and every population's mask must be equal event for event. Files: real corpus files
(OMIP-021 Donor1 with its spillover given as an explicit matrix, FlowCal's Data004, FlowIO's 100715
with FlowKit's own ``'FCS'`` compensation) and a simulated file written with ``cytowhim.write_fcs``
(40,000 events: more than one block of the block-wise engine, the last one partial).

Where the two differ, a test says how: :func:`test_log_of_zero_is_outside_every_range` (FlowKit's
log of 0 is -inf, cytowhim's is undefined, as Gating-ML has it), and FlowKit limits that the cases
stay clear of (:func:`test_mixed_compensation_in_one_gate`: FlowKit compensates every dimension of
a gate when one is compensated; a channel used twice in one gate gets both transforms stacked).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cytowhim as cw
from gating import (
    BooleanGate,
    Compensation,
    Dimension,
    EllipsoidGate,
    PolygonGate,
    Population,
    Ratio,
    RectangleGate,
    Strategy,
)
from gating.gates import quadrant_rectangles
from gating.transforms import make_transform

from .conftest import CORPUS

fk = pytest.importorskip("flowkit")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

DONOR1 = CORPUS / "flowjo/cytopipeline_omip021/Donor1.fcs"
DATA004 = CORPUS / "fcs/flowcal/test/Data004.fcs"
F100715 = CORPUS / "fcs/flowio/100715.fcs"

# --------------------------------------------------------------------------- cases as plain data


@dataclass(frozen=True)
class Dim:
    """A gate axis: channel or marker, compensation ('uncompensated', 'FCS' or an id), transform id;
    for a ratio axis ``name`` is the ratio's id."""

    name: str
    comp: str = "uncompensated"
    xform: str | None = None
    ratio: bool = False


@dataclass(frozen=True)
class Rect:
    name: str
    parent: str | None
    dims: tuple[Dim, ...]
    mins: tuple[float | None, ...]
    maxs: tuple[float | None, ...]


@dataclass(frozen=True)
class Poly:
    name: str
    parent: str | None
    dims: tuple[Dim, Dim]
    vertices: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Ellipse:
    name: str
    parent: str | None
    dims: tuple[Dim, ...]
    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    d2: float


@dataclass(frozen=True)
class Quad:
    """A quadrant gate: cuts per divider; each population is one region, given by its index along
    every divider (0 = below the first cut)."""

    name: str
    parent: str | None
    dividers: tuple[tuple[Dim, tuple[float, ...]], ...]
    quadrants: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class Bool:
    name: str
    parent: str | None
    op: str
    refs: tuple[tuple[str, bool], ...]  # (population, complement)


Spec = Rect | Poly | Ellipse | Quad | Bool


@dataclass
class Case:
    """A strategy as data: populations (parents first), transforms (id -> (kind, params)),
    compensations (id -> (detectors, fluorochromes, spillover)), ratios (id -> (numerator,
    denominator, A, B, C))."""

    specs: list[Spec]
    transforms: dict[str, tuple[str, dict[str, float]]] = field(default_factory=dict)
    comps: dict[str, tuple[tuple[str, ...], tuple[str, ...], np.ndarray]] = field(
        default_factory=dict
    )
    ratios: dict[str, tuple[str, str, float, float, float]] = field(default_factory=dict)

    def names(self) -> list[str]:
        out: list[str] = []
        for s in self.specs:
            out.extend(q for q, _ in s.quadrants) if isinstance(s, Quad) else out.append(s.name)
        return out


TRANSFORMS: dict[str, tuple[str, dict[str, float]]] = {
    "logicle": ("logicle", {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}),
    "logicle_wide": ("logicle", {"T": 262144.0, "W": 1.0, "M": 4.5, "A": 0.5}),
    "asinh": ("asinh", {"T": 262144.0, "M": 4.0, "A": 1.0}),
    "linear": ("linear", {"T": 262144.0, "A": 100.0}),
    "hyperlog": ("hyperlog", {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}),
    "log": ("log", {"T": 262144.0, "M": 5.0}),
}


def _region(cuts: tuple[float, ...], k: int) -> tuple[float | None, float | None]:
    return (cuts[k - 1] if k > 0 else None, cuts[k] if k < len(cuts) else None)


def cytowhim_strategy(case: Case) -> Strategy:
    """The case as a :class:`gating.Strategy` (quadrants through ``quadrant_rectangles``, as the
    Gating-ML reader builds them)."""
    transforms: dict = {k: make_transform(kind, **p) for k, (kind, p) in case.transforms.items()}
    transforms.update({k: Ratio(*r) for k, r in case.ratios.items()})
    comps = {k: Compensation(k, fl, det, m) for k, (det, fl, m) in case.comps.items()}

    def dim(d: Dim) -> Dimension:
        return Dimension(d.name, d.comp, d.xform, d.ratio)

    pops: list[Population] = []
    for s in case.specs:
        if isinstance(s, Rect):
            gate = RectangleGate(tuple(dim(d) for d in s.dims), s.mins, s.maxs)
        elif isinstance(s, Poly):
            gate = PolygonGate((dim(s.dims[0]), dim(s.dims[1])), s.vertices)
        elif isinstance(s, Ellipse):
            gate = EllipsoidGate(tuple(dim(d) for d in s.dims), s.mean, s.cov, s.d2)
        elif isinstance(s, Bool):
            gate = BooleanGate(s.op, s.refs)
        else:
            dividers = {f"d{k}": (dim(d), cuts) for k, (d, cuts) in enumerate(s.dividers)}
            locations = {}
            for qname, regions in s.quadrants:
                locations[qname] = {}
                for k, ((_, cuts), r) in enumerate(zip(s.dividers, regions)):
                    # a location inside region r: its lower cut, or below the first cut
                    locations[qname][f"d{k}"] = cuts[r - 1] if r > 0 else cuts[0] - 1.0
            rects = quadrant_rectangles(dividers, locations)
            pops.extend(Population(q, rects[q], s.parent) for q, _ in s.quadrants)
            continue
        pops.append(Population(s.name, gate, s.parent))
    return Strategy(pops, transforms, comps)


def _fk_transform(kind: str, p: dict[str, float]) -> Any:
    t = fk.transforms
    if kind == "logicle":
        return t.LogicleTransform(param_t=p["T"], param_w=p["W"], param_m=p["M"], param_a=p["A"])
    if kind == "hyperlog":
        return t.HyperlogTransform(param_t=p["T"], param_w=p["W"], param_m=p["M"], param_a=p["A"])
    if kind == "asinh":
        return t.AsinhTransform(param_t=p["T"], param_m=p["M"], param_a=p["A"])
    if kind == "linear":
        return t.LinearTransform(param_t=p["T"], param_a=p["A"])
    if kind == "log":
        return t.LogTransform(param_t=p["T"], param_m=p["M"])
    raise ValueError(kind)


def flowkit_strategy(case: Case) -> Any:
    """The case as a ``flowkit.GatingStrategy``."""
    gates = fk.gates
    gs = fk.GatingStrategy()
    for k, (kind, p) in case.transforms.items():
        gs.add_transform(k, _fk_transform(kind, p))
    for k, (num, den, a, b, c) in case.ratios.items():
        gs.add_transform(k, fk.transforms.RatioTransform([num, den], a, b, c))
    for k, (det, fl, m) in case.comps.items():
        gs.add_comp_matrix(k, fk.Matrix(np.asarray(m, dtype=float), list(det), list(fl)))
    node: dict[str, tuple[str, ...]] = {}  # population -> its path in FlowKit's tree

    def dim(d: Dim, lo: float | None = None, hi: float | None = None):
        if d.ratio:
            return fk.RatioDimension(d.name, d.comp, d.xform, range_min=lo, range_max=hi)
        return fk.Dimension(d.name, d.comp, d.xform, range_min=lo, range_max=hi)

    for s in case.specs:
        parent = node[s.parent] if s.parent is not None else ("root",)
        if isinstance(s, Rect):
            gate = gates.RectangleGate(s.name, [dim(*x) for x in zip(s.dims, s.mins, s.maxs)])
        elif isinstance(s, Poly):
            gate = gates.PolygonGate(
                s.name, [dim(d) for d in s.dims], [list(v) for v in s.vertices]
            )
        elif isinstance(s, Ellipse):
            gate = gates.EllipsoidGate(
                s.name, [dim(d) for d in s.dims], list(s.mean), [list(r) for r in s.cov], s.d2
            )
        elif isinstance(s, Bool):
            refs = [{"ref": r, "path": node[r][:-1], "complement": c} for r, c in s.refs]
            gate = gates.BooleanGate(s.name, s.op, refs)
        else:
            ids = [f"{s.name}_d{k}" for k in range(len(s.dividers))]
            dividers = [
                fk.QuadrantDivider(i, d.name, d.comp, list(cuts), d.xform)
                for i, (d, cuts) in zip(ids, s.dividers)
            ]
            quadrants = [
                gates.Quadrant(q, ids, [_region(c, r) for (_, c), r in zip(s.dividers, regions)])
                for q, regions in s.quadrants
            ]
            gate = gates.QuadrantGate(s.name, dividers, quadrants)
        gs.add_gate(gate, parent)
        if isinstance(s, Quad):
            node.update({q: (*parent, s.name, q) for q, _ in s.quadrants})
        else:
            node[s.name] = (*parent, s.name)
    return gs


@functools.lru_cache(maxsize=8)
def cw_sample(path: Path) -> cw.Sample:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cw.read_fcs(path)


@functools.lru_cache(maxsize=8)
def fk_sample(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.Sample(str(path))


def gate_both(case: Case, path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """population -> (cytowhim mask, FlowKit mask)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = cytowhim_strategy(case).apply(cw_sample(path))
        theirs = flowkit_strategy(case).gate_sample(fk_sample(path))
    return {
        n: (ours.mask(n), np.asarray(theirs.get_gate_membership(n), dtype=bool))
        for n in case.names()
    }


def assert_same(case: Case, path: Path, may_be_empty: tuple[str, ...] = ()) -> dict[str, int]:
    """Every population has the same events in both; none is empty unless allowed (a case that
    selects nothing tests nothing). Returns the counts."""
    counts = {}
    for name, (ours, theirs) in gate_both(case, path).items():
        assert ours.shape == theirs.shape, name
        diff = np.flatnonzero(ours != theirs)
        assert diff.size == 0, (
            f"{name}: cytowhim {int(ours.sum())} events, FlowKit {int(theirs.sum())}; "
            f"they differ at events {diff[:10].tolist()}"
        )
        counts[name] = int(ours.sum())
        if name not in may_be_empty:
            assert counts[name] > 0, f"{name} is empty in both: the case tests nothing"
    return counts


def spill_of(
    path: Path, comp_id: str
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], np.ndarray]]:
    """The file's own spillover as an explicit matrix ``comp_id`` (FlowKit's 'FCS' needs the
    spillover to cover every channel it deems fluorescent, which Donor1 and Data004 do not)."""
    spill = cw_sample(path).spillover
    names = tuple(str(c) for c in spill.columns)
    return {comp_id: (names, names, spill.to_numpy(dtype=float))}


# --------------------------------------------------------------------------- real files

CD3 = "670/30Violet-A"
CD4 = "780/60Red-A"
CD8 = "585/15Violet-A"
CD45RA = "710/50Blue-A"
CCR7 = "780/60Yellow-A"
LIVE_DEAD = "525/50Violet-A"


def _c(name: str, xform: str | None = "logicle") -> Dim:
    return Dim(name, "spill", xform)


def test_rectangles_with_open_ends_on_every_scale():
    """Ranges and rectangles, open at either end, on logicle, asinh, hyperlog, linear, log and raw
    scales, compensated and not, nested three deep (OMIP-021 Donor1)."""
    fsc, ssc = Dim("FSC-A"), Dim("SSC-A")
    case = Case(
        [
            Rect("cells", None, (fsc, ssc), (40000.0, None), (None, 240000.0)),
            Rect("live", "cells", (_c(LIVE_DEAD),), (None,), (0.33,)),
            Rect("CD3+", "live", (_c(CD3),), (0.45,), (None,)),
            Rect("CD3+ asinh", "live", (_c(CD3, "asinh"),), (0.42,), (None,)),
            Rect("CD3+ hyperlog", "live", (_c(CD3, "hyperlog"),), (0.5,), (0.95,)),
            Rect("CD3 linear", "live", (_c(CD3, "linear"),), (0.004,), (0.1,)),
            Rect("CD3 raw", "live", (_c(CD3, None),), (900.0,), (40000.0,)),
            Rect("CD3 log", "live", (_c(CD3, "log"),), (0.45,), (None,)),
            Rect("CD3 uncompensated", "live", (Dim(CD3, xform="logicle"),), (0.45,), (0.9,)),
            Rect("CD4+ CD8-", "CD3+", (_c(CD4), _c(CD8)), (0.5, None), (None, 0.45)),
            Rect("CD4- CD8+", "CD3+", (_c(CD4), _c(CD8, "logicle_wide")), (None, 0.5), (0.5, None)),
            Rect("naive CD4", "CD4+ CD8-", (_c(CD45RA), _c(CCR7)), (0.5, 0.45), (None, None)),
            Rect("scatter linear", "cells", (Dim("SSC-A", xform="linear"),), (None,), (0.5,)),
        ],
        transforms=TRANSFORMS,
        comps=spill_of(DONOR1, "spill"),
    )
    counts = assert_same(case, DONOR1)
    assert counts["CD3+ asinh"] != counts["CD3+"]  # the scales really differ
    assert counts["CD3 uncompensated"] != counts["CD3+"]  # compensation really matters


def test_polygons_including_self_crossing():
    """Polygons on raw scatter and on compensated logicle/asinh axes, concave and self-crossing
    (odd winding number), with FlowKit's own 'FCS' compensation (FlowIO's 100715)."""
    fsc, ssc = Dim("FSC-A"), Dim("SSC-A")
    cd3, cd4, cd8 = (
        Dim("CD3", "FCS", "logicle"),
        Dim("CD4", "FCS", "logicle"),
        Dim("CD8", "FCS", "logicle"),
    )
    case = Case(
        [
            Poly(
                "lymphocytes",
                None,
                (fsc, ssc),
                ((25000, 50), (60000, 60), (75000, 900), (40000, 1400), (22000, 600)),
            ),
            Poly(
                "CD3+",
                "lymphocytes",
                (cd3, cd4),
                ((0.3, -0.2), (0.8, -0.2), (0.8, 0.9), (0.3, 0.9)),
            ),
            Poly(  # concave: an L shape
                "CD4 L",
                "CD3+",
                (cd4, cd8),
                ((0.3, 0.0), (0.7, 0.0), (0.7, 0.45), (0.48, 0.45), (0.48, 0.7), (0.3, 0.7)),
            ),
            Poly(  # a bow tie: the boundary crosses itself at (0.45, 0.47)
                "bow tie",
                "CD3+",
                (cd4, cd8),
                ((0.3, 0.35), (0.6, 0.6), (0.6, 0.35), (0.3, 0.6)),
            ),
            Poly(  # a pentagram: the centre has winding number 2 (outside), the points 1 (inside)
                "pentagram",
                "lymphocytes",
                (Dim("CD4", "FCS", "asinh"), Dim("CD8", "FCS", "asinh")),
                _pentagram(0.45, 0.47, 0.12),
            ),
            Poly(
                "uncompensated",
                "lymphocytes",
                (Dim("CD4", xform="logicle"), Dim("CD8", xform="logicle")),
                ((0.3, 0.3), (0.6, 0.3), (0.6, 0.6), (0.3, 0.6)),
            ),
        ],
        transforms=TRANSFORMS,
    )
    counts = assert_same(case, F100715)
    assert counts["pentagram"] < counts["lymphocytes"]


def _pentagram(x: float, y: float, r: float) -> tuple[tuple[float, float], ...]:
    angles = np.pi / 2 + np.arange(5) * 4 * np.pi / 5  # every second point of a pentagon
    return tuple((x + r * np.cos(a), y + r * np.sin(a)) for a in angles)


def test_ellipses():
    """Ellipses on raw scatter and on compensated logicle axes, and a 3-D ellipsoid."""
    case = Case(
        [
            Ellipse(
                "scatter ellipse",
                None,
                (Dim("FSC-A"), Dim("SSC-A")),
                (120000.0, 80000.0),
                ((1.6e9, 4.0e8), (4.0e8, 1.2e9)),
                1.5,
            ),
            Ellipse(
                "CD4 CD8 ellipse",
                "scatter ellipse",
                (_c(CD4), _c(CD8)),
                (0.55, 0.25),
                ((0.01, -0.002), (-0.002, 0.008)),
                3.0,
            ),
            Ellipse(
                "3-D ellipsoid",
                None,
                (_c(CD3), _c(CD4), _c(CD45RA)),
                (0.55, 0.5, 0.5),
                ((0.02, 0.004, 0.0), (0.004, 0.03, 0.002), (0.0, 0.002, 0.04)),
                4.0,
            ),
        ],
        transforms=TRANSFORMS,
        comps=spill_of(DONOR1, "spill"),
    )
    assert_same(case, DONOR1)


def test_quadrants_with_children_and_boolean_references():
    """A 2 x 2 quadrant gate, a 3 x 2 one (two cuts on one divider), a child of a quadrant and a
    boolean gate over quadrants (FlowIO's 100715, 'FCS' compensation)."""
    cd4, cd8 = Dim("CD4", "FCS", "logicle"), Dim("CD8", "FCS", "logicle")
    ro, ccr7 = Dim("CD45RO", "FCS", "logicle"), Dim("CCR7", "FCS", "asinh")
    case = Case(
        [
            Rect("T", None, (Dim("CD3", "FCS", "logicle"),), (0.2,), (None,)),
            Quad(
                "CD4 vs CD8",
                "T",
                ((cd4, (0.46,)), (cd8, (0.47,))),
                (("CD4+", (1, 0)), ("CD8+", (0, 1)), ("DP", (1, 1)), ("DN", (0, 0))),
            ),
            Quad(
                "memory",
                "CD4+",
                ((ro, (0.33, 0.42)), (ccr7, (0.45,))),
                tuple(
                    (f"RO{i} CCR7{j}", (i, j)) for i in range(3) for j in range(2)
                ),  # six regions
            ),
            Rect("KI67+", "RO2 CCR71", (Dim("KI67", "FCS", "logicle"),), (0.56,), (None,)),
            Bool("single positive", "T", "or", (("CD4+", False), ("CD8+", False))),
            Bool("not DN, not DP", "T", "and", (("DN", True), ("DP", True))),
        ],
        transforms=TRANSFORMS,
    )
    counts = assert_same(case, F100715)
    assert counts["single positive"] == counts["not DN, not DP"]
    assert sum(counts[f"RO{i} CCR7{j}"] for i in range(3) for j in range(2)) == counts["CD4+"]


def test_booleans_and_or_not_with_complements():
    """and / or / not over populations in different branches, with complemented operands, at the
    root and under a parent (OMIP-021 Donor1)."""
    case = Case(
        [
            Rect("cells", None, (Dim("FSC-A"),), (40000.0,), (None,)),
            Rect("CD3+", "cells", (_c(CD3),), (0.45,), (None,)),
            Rect("CD4+", "cells", (_c(CD4),), (0.5,), (None,)),
            Poly(
                "CD8 box",
                None,
                (_c(CD8), _c(CD3)),
                ((0.5, 0.4), (0.9, 0.4), (0.9, 0.9), (0.5, 0.9)),
            ),
            Bool("CD3+ and CD4+", None, "and", (("CD3+", False), ("CD4+", False))),
            Bool("CD3+ not CD4+", "cells", "and", (("CD3+", False), ("CD4+", True))),
            Bool("CD4+ or CD8", None, "or", (("CD4+", False), ("CD8 box", False))),
            Bool("neither", "cells", "or", (("CD4+", True), ("CD8 box", True))),
            Bool("not CD3+", "cells", "not", (("CD3+", False),)),
            Bool("not not CD3+", None, "not", (("CD3+", True),)),
            Bool("three", None, "and", (("cells", False), ("CD3+", False), ("CD8 box", True))),
        ],
        transforms=TRANSFORMS,
        comps=spill_of(DONOR1, "spill"),
    )
    counts = assert_same(case, DONOR1)
    assert counts["not not CD3+"] == counts["CD3+"]


def test_ratio_dimension():
    """A ratio of two uncompensated channels, raw and on a transformed scale (FlowKit computes
    ratios from uncompensated events only)."""
    case = Case(
        [
            Rect("FSC/SSC", None, (Dim("ratio", ratio=True),), (0.6,), (3.0,)),
            Rect(
                "FSC/SSC asinh",
                None,
                (Dim("ratio", xform="asinh", ratio=True),),
                (0.2015,),
                (0.2025,),
            ),
        ],
        transforms=TRANSFORMS,
        ratios={"ratio": ("FSC-A", "SSC-A", 1.0, 10.0, -5.0)},
    )
    assert_same(case, DONOR1)


def test_three_detector_spillover_flowcal_file():
    """FlowCal's Data004: a spillover over three of fourteen channels (one of them a scatter
    PMT), gates on compensated and uncompensated channels side by side."""
    gfp, mcherry = Dim("GFP-A", "spill", "logicle"), Dim("mCherry-A", "spill", "logicle")
    case = Case(
        [
            Rect("PMT", None, (Dim("FSC PMT-A", "spill", "logicle"),), (0.62,), (0.74,)),
            Poly(
                "GFP+", "PMT", (gfp, mcherry), ((0.45, -0.1), (0.7, -0.1), (0.7, 0.2), (0.45, 0.2))
            ),
            Rect(
                "SSC",
                "GFP+",
                (Dim("SSC-A"), Dim("SSC-H", xform="asinh")),
                (5000.0, 0.3),
                (None, None),
            ),
        ],
        transforms=TRANSFORMS,
        comps=spill_of(DATA004, "spill"),
    )
    assert_same(case, DATA004)


def test_log_of_zero_is_outside_every_range():
    """Known difference: FlowKit's log transform maps 0 to -inf, which a range open at the bottom
    includes; cytowhim follows Gating-ML (flog is undefined for x <= 0) and leaves such events out.
    Every other event agrees. (Data004's FSC-W has exact zeros.)"""
    case = Case(
        [Rect("FSC-W log", None, (Dim("FSC-W", xform="log"),), (None,), (0.7,))],
        transforms=TRANSFORMS,
    )
    ours, theirs = gate_both(case, DATA004)["FSC-W log"]
    zero = cw_sample(DATA004).linear_values(cw_sample(DATA004).index("FSC-W")) == 0
    assert zero.any() and ours.any()
    assert not ours[zero].any() and theirs[zero].all()
    assert np.array_equal(ours[~zero], theirs[~zero])


def test_time_channel_scale_matches_flowkit():
    """Time is scaled by $TIMESTEP only: BD writes $PnG=0.01 for Time next to $TIMESTEP=0.01, and
    FlowKit, FlowIO and FlowJo ignore that gain (cytowhim divided by it before 5eab4e9)."""
    case = Case(
        [
            Rect("early", None, (Dim("Time"),), (None,), (100.0,)),
            Rect("late", None, (Dim("Time", xform="linear"),), (0.0008,), (None,)),
        ],
        transforms=TRANSFORMS,
    )
    assert_same(case, DONOR1)
    assert_same(case, DATA004, may_be_empty=("early", "late"))


# --------------------------------------------------------------------------- simulated data

SIM_CHANNELS = ["FSC-A", "SSC-A", "FL1-A", "FL2-A", "FL3-A", "Time"]
SIM_EVENTS = 40_000  # more than one block (32,768) of the block-wise engine; the last is partial


def write_sim_file(path: Path) -> None:
    """Three populations plus debris, spilled across three detectors ($SPILLOVER), float32; the
    scatter channels hold whole numbers so that gate bounds can fall exactly on events."""
    rng = np.random.default_rng(7)
    n = SIM_EVENTS
    kind = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    centre = np.array([[60e3, 15e3], [90e3, 40e3], [50e3, 10e3], [8e3, 3e3]])[kind]
    scatter = np.rint(np.abs(rng.normal(centre, centre * 0.15)))
    level = np.array([[3000, 50, 800], [50, 6000, 300], [20000, 2000, 30], [0, 0, 0]])[kind]
    true = rng.lognormal(np.log(level + 1.0), 0.5) - 1.0 + rng.normal(0.0, 60.0, (n, 3))
    spill = np.array([[1.0, 0.15, 0.02], [0.05, 1.0, 0.2], [0.0, 0.08, 1.0]])
    events = np.column_stack([scatter, true @ spill, np.linspace(0.0, 600.0, n)])
    sample = cw.Sample(
        events=events.astype(np.float32),
        channels=list(SIM_CHANNELS),
        markers=["", "", "CD3", "CD4", "CD8", ""],
        keywords={f"$P{i}R": "262144" for i in range(1, 7)},
        spillover=pd.DataFrame(spill, index=SIM_CHANNELS[2:5], columns=SIM_CHANNELS[2:5]),
    )
    cw.write_fcs(path, sample)


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "sim.fcs"
    write_sim_file(path)
    return path


def test_simulated_file_every_gate_kind(sim_file: Path):
    """All gate kinds together on the simulated file, with FlowKit's 'FCS' compensation, markers
    as dimension names, and bounds exactly on events' values."""
    fl = {m: Dim(m, "FCS", "logicle") for m in ("CD3", "CD4", "CD8")}
    scatter = cw_sample(sim_file).events[:, 0]
    tie = float(np.sort(scatter)[scatter.size // 2])  # a bound that events sit exactly on
    assert np.count_nonzero(scatter == tie) > 0
    case = Case(
        [
            Rect("cells", None, (Dim("FSC-A"),), (tie,), (None,)),
            Rect("below", None, (Dim("FSC-A"),), (None,), (tie,)),
            Poly(
                "P1",
                "cells",
                (fl["CD3"], fl["CD4"]),
                ((0.5, -0.1), (0.8, -0.1), (0.8, 0.4), (0.5, 0.4)),
            ),
            Ellipse(
                "E1",
                "cells",
                (fl["CD4"], fl["CD8"]),
                (0.6, 0.45),
                ((0.004, 0.0), (0.0, 0.004)),
                2.0,
            ),
            Quad(
                "Q",
                None,
                ((fl["CD3"], (0.45,)), (fl["CD8"], (0.4,))),
                (("Q++", (1, 1)), ("Q+-", (1, 0)), ("Q-+", (0, 1)), ("Q--", (0, 0))),
            ),
            Bool("B", "cells", "or", (("P1", False), ("Q-+", True))),
        ],
        transforms=TRANSFORMS,
    )
    counts = assert_same(case, sim_file)
    assert counts["cells"] + counts["below"] == SIM_EVENTS  # >= min vs < max: no gap, no overlap


def test_mixed_compensation_in_one_gate(sim_file: Path):
    """Each dimension of a gate has its own compensation. FlowKit compensates all of a gate's
    dimensions when one is compensated, so compare cytowhim's two-dimensional rectangle with
    FlowKit's AND of two one-dimensional ranges (one gate per compensation)."""
    raw, comp = Dim("FL1-A", xform="logicle"), Dim("CD4", "FCS", "logicle")
    ours = cytowhim_strategy(
        Case([Rect("R", None, (raw, comp), (0.4, 0.45), (None, None))], transforms=TRANSFORMS)
    ).apply(cw_sample(sim_file))
    theirs = Case(
        [
            Rect("raw", None, (raw,), (0.4,), (None,)),
            Rect("comp", None, (comp,), (0.45,), (None,)),
            Bool("R", None, "and", (("raw", False), ("comp", False))),
        ],
        transforms=TRANSFORMS,
    )
    _, fk_mask = gate_both(theirs, sim_file)["R"]
    assert ours.mask("R").any()
    assert np.array_equal(ours.mask("R"), fk_mask)


class _PlainSample:
    """A sample that is not a cytowhim.Sample (nor a dataclass): events, names, spillover, and
    ``linear_values`` only when given one."""

    def __init__(self, sample: cw.Sample, linear: bool):
        self.channels, self.markers, self.spillover = (
            sample.channels,
            sample.markers,
            sample.spillover,
        )
        if linear:
            self.events = sample.events
            self.linear_values = sample.linear_values
        else:  # the linear values themselves, as float64 events
            self.events = np.column_stack(
                [sample.linear_values(j) for j in range(sample.n_parameters)]
            )


@pytest.mark.parametrize("linear", [True, False], ids=["linear_values", "events only"])
def test_samples_of_other_types(sim_file: Path, linear: bool):
    """The engine takes any object with events, channels, markers and spillover (and optionally
    linear_values), block by block or not: same events as FlowKit."""
    fl = {m: Dim(m, "FCS", "logicle") for m in ("CD3", "CD4", "CD8")}
    case = Case(
        [
            Rect("cells", None, (Dim("FSC-A"),), (20000.0,), (None,)),
            Poly(
                "P",
                "cells",
                (fl["CD3"], fl["CD4"]),
                ((0.5, -0.1), (0.8, -0.1), (0.8, 0.4), (0.5, 0.4)),
            ),
            Rect("R", "P", (fl["CD8"],), (None,), (0.4,)),
        ],
        transforms=TRANSFORMS,
    )
    theirs = gate_both(case, sim_file)
    ours = cytowhim_strategy(case).apply(_PlainSample(cw_sample(sim_file), linear))
    for name, (_, fk_mask) in theirs.items():
        assert fk_mask.any() and np.array_equal(ours.mask(name), fk_mask), name


# Candidate values per axis, on the axis's scale: for axes whose values both engines compute
# with identical arithmetic (uncompensated, no transform / logicle / hyperlog / linear) the
# events' own values, so gates can put a bound or an edge exactly on events; otherwise midpoints
# between events (compensation (inverse vs solve) and asinh / log differ by rounding between the
# two, so an event exactly on a bound could fall either way: not a disagreement).
SIM_AXES = [
    Dim("FSC-A"),
    Dim("SSC-A", xform="linear"),
    Dim("FL1-A", xform="logicle"),
    Dim("FL2-A", xform="hyperlog"),
    Dim("CD3", "FCS", "logicle"),
    Dim("CD4", "FCS", "asinh"),
    Dim("FL3-A", "FCS", None),
    Dim("CD8", "FCS", "logicle_wide"),
    Dim("FL1-A", xform="log"),
]


def _exact(d: Dim) -> bool:
    return d.comp == "uncompensated" and d.xform in (None, "linear", "logicle", "hyperlog")


@pytest.fixture(scope="module")
def sim_values(sim_file: Path) -> dict[Dim, np.ndarray]:
    """Sorted candidate bound values per axis (see SIM_AXES)."""
    case = Case([], transforms=TRANSFORMS)
    ev = Strategy([], cytowhim_strategy(case).transforms).apply(cw_sample(sim_file)).evaluator
    assert ev is not None
    out = {}
    for d in SIM_AXES:
        v = np.unique(ev.values(Dimension(d.name, d.comp, d.xform), None))
        v = v[np.isfinite(v)]
        out[d] = v if _exact(d) else (v[:-1] + v[1:]) / 2
    return out


HYPOTHESIS = settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _value(draw, values: np.ndarray) -> float:
    i = draw(st.integers(0, values.size - 1))
    return float(values[i])


SIM_CHANNEL_OF = {"CD3": "FL1-A", "CD4": "FL2-A", "CD8": "FL3-A"}


def _flowkit_can(dims: tuple[Dim, ...]) -> bool:
    """Keep random gates to what FlowKit computes right: it compensates all of a gate's
    fluorescence dimensions when any one is compensated (see test_mixed_compensation_in_one_gate),
    and a channel used twice in one gate gets both transforms, one on top of the other."""
    comps = {d.comp for d in dims if d.name not in ("FSC-A", "SSC-A")}
    channels = {SIM_CHANNEL_OF.get(d.name, d.name) for d in dims}
    return len(comps) <= 1 and len(channels) == len(dims)


@st.composite
def random_case(draw, values: dict[Dim, np.ndarray]) -> Case:
    """A root rectangle, a rectangle and a polygon under it, and a boolean over both."""
    specs: list[Spec] = []

    def axes(k: int) -> tuple[Dim, ...]:
        picked: list[Dim] = []
        for d in draw(st.permutations(SIM_AXES)):
            if len(picked) < k and _flowkit_can((*picked, d)):
                picked.append(d)
        return tuple(picked)

    for name, parent in (("R1", None), ("R2", "R1")):
        dims = axes(draw(st.integers(1, 2)))
        mins, maxs = [], []
        for d in dims:
            lo, hi = sorted((_value(draw, values[d]), _value(draw, values[d])))
            ends = draw(st.sampled_from(["both", "min", "max"]))
            mins.append(None if ends == "max" else lo)
            maxs.append(None if ends == "min" else hi)
        specs.append(Rect(name, parent, dims, tuple(mins), tuple(maxs)))
    x, y = axes(2)
    n = draw(st.integers(3, 7))
    vertices = tuple(
        (_value(draw, values[x]), _value(draw, values[y])) for _ in range(n)
    )  # random order: often self-crossing
    specs.append(Poly("P", draw(st.sampled_from([None, "R1"])), (x, y), vertices))
    op = draw(st.sampled_from(["and", "or", "not"]))
    refs = (("R2", draw(st.booleans())),) + (() if op == "not" else (("P", draw(st.booleans())),))
    specs.append(Bool("B", draw(st.sampled_from([None, "R1"])), op, refs))
    return Case(specs, transforms=TRANSFORMS)


@HYPOTHESIS
@given(data=st.data())
def test_random_strategies_on_simulated_data(sim_file: Path, sim_values, data):
    case = data.draw(random_case(sim_values))
    counts = assert_same(case, sim_file, may_be_empty=tuple(case.names()))
    for name, count in counts.items():  # shown by --hypothesis-show-statistics
        event(f"{name} {'empty' if count == 0 else 'all' if count == SIM_EVENTS else 'some'}")

"""FlowJo 10 polygons on biex axes, in FlowJo's display bins.

FlowJo 10.7 maps a value on a biex axis through its 4096-channel biex table (from neg, width, pos
and maxRange; the transform's ``length="256"`` does not change it) and puts it in display bin
floor(channel / 16); the polygon's vertices the same way; an event whose bin is inside the binned
polygon or on its outline is inside. On linear axes FlowJo bins to the nearest bin edge instead
(OMIP-021, tests/test_flowjo.py). The expert's FlowJo 10.7.1 gating of a lung T-cell sample
(expert_gating/flowatlas_390C_Lung_029: polygons and rectangles on biex axes) is the check: every
one of its 23 nodes equals FlowJo's count (5 of 23 when the biex axes were binned to the nearest
edge, 21 of 23 without the zero-point rule below).
"""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest

import cytowhim as cw
import gating.transforms as transforms
from gating import Dimension, GatingError
from gating.flowjo import FlowJoPolygonGate, read_flowjo
from gating.flowjo_gates import NEAREST, TRUNCATE, _binning
from gating.transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLog,
    Hyperlog,
    Linear,
    Logicle,
    flowjo_biex_table,
)

from .conftest import CORPUS

ATLAS = CORPUS / "expert_gating" / "flowatlas_390C_Lung_029"
WSP = ATLAS / "flowatlas_390C_Lung_029.wsp"
FCS = "390C_Lung_029.fcs"
NON_TFH = "T cells/CD4/non-Treg/CD4 | Memory/non-Tfh"


def _truth() -> dict[str, tuple[str, int]]:
    """Population path -> (FlowJo's gate type, FlowJo's count)."""
    with (ATLAS / "flowjo_counts.csv").open(newline="", encoding="utf-8") as f:
        return {
            f"{r['gate_path']}/{r['population']}".strip("/"): (
                r["node_type"],
                int(r["flowjo_count"]),
            )
            for r in csv.DictReader(f)
            if r["node_type"] != "SampleNode"
        }


@pytest.fixture(scope="module")
def events():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        return cw.read_fcs(ATLAS / FCS)


# --- the expert's FlowJo 10.7.1 workspace, node by node -------------------------------------------


def test_every_node_equals_flowjos_count(events):
    truth = _truth()
    strategy = read_flowjo(WSP, FCS)
    ours = strategy.apply(events).counts().to_dict()
    assert len(truth) == 23 and set(ours) == set(truth)
    assert {p: ours[p] for p in truth} == {p: n for p, (_, n) in truth.items()}
    assert ours[NON_TFH] == 5463 and ours[f"{NON_TFH}/CD4 | Th2"] == 5030
    polygons = [strategy[p].gate for p, (kind, _) in truth.items() if kind == "PolygonGate"]
    assert len(polygons) == 12
    assert all(isinstance(g, FlowJoPolygonGate) for g in polygons)
    assert {g.binning for g in polygons} == {(TRUNCATE, TRUNCATE)}  # every axis is biex
    assert {g.tops for g in polygons} == {(4096.0, 4096.0)}


def test_the_width_rounding_decides_one_event(events, monkeypatch):
    """Without the zero-point slack the CXCR5 axis (pos 3.8, width -79.4328234724) has its zero
    at channel 1023, not FlowJo's 1024, and one event leaves 'non-Tfh' and its Th2 child."""
    monkeypatch.setattr(transforms, "_BIEX_ZERO_SLACK", 0.0)
    ours = read_flowjo(WSP, FCS).apply(events).counts()
    assert (ours[NON_TFH], ours[f"{NON_TFH}/CD4 | Th2"]) == (5462, 5029)


# --- the biex table's zero point ------------------------------------------------------------------


def test_zero_point_tolerates_flowjos_rounded_width():
    width = -79.4328234724  # -10**1.9 as FlowJo writes it, to 10 decimals
    assert math.log10(-width) < 1.9  # 1.899999999999846
    assert 1023.9999 < math.log10(-width) / 2 * 4096 / 3.8 < 1024  # where the zero point falls
    raw, channels = flowjo_biex_table(0.0, width, 3.8, 82897.211494718)
    assert raw[1024] == 0.0 and raw[1023] < 0 < raw[1025]  # FlowJo's zero point: channel 1024
    exact, _ = flowjo_biex_table(0.0, -(10**1.9), 3.8, 82897.211494718)
    assert np.allclose(raw, exact, rtol=1e-9, atol=1e-9)
    assert np.array_equal(raw[:1024], -raw[2048:1024:-1])  # mirrored about the zero point
    # a zero point not near a whole channel is truncated as before (width -100: 927.00..)
    raw, _ = flowjo_biex_table(0.0, -100.0, 4.418539922, 262144.0)
    assert raw[927] == 0.0


def test_biex_channels_truncate_to_the_table_interval():
    """floor(channel) is the table interval a value falls in, also a last bit below an entry
    (where interpolation alone would round up onto the entry's channel)."""
    tr = FlowJoBiex(negative=0.0, width=-100.0, positive=4.418539922, max_value=262144.0)
    raw, _ = tr._table
    k = np.arange(1, 4097)
    assert np.array_equal(tr.apply(raw[k]), k.astype(float))
    below = tr.apply(np.nextafter(raw[k], -np.inf))
    assert np.array_equal(np.floor(below), k - 1.0)
    assert np.all(k - below < 1e-9)
    assert tr.apply(np.array([-1e9, 1e9])).tolist() == [0.0, 4096.0]
    assert np.ndim(tr.apply(5.0)) == 0 and tr.apply(np.zeros((2, 3))).shape == (2, 3)


# --- crafted events on the bin edges of a biex axis ------------------------------------------------

BIEX = {"neg": 0, "width": -100, "pos": 4.418539922, "maxRange": 262144}
RAW, _ = flowjo_biex_table(0.0, -100.0, 4.418539922, 262144.0)


def _raw(channel: float) -> float:
    """The raw value of a (fractional) biex channel."""
    return float(np.interp(channel, np.arange(RAW.size, dtype=float), RAW))


def _below(channel: int) -> float:
    """The largest value in the channel below ``channel``."""
    return float(np.nextafter(RAW[channel], -np.inf))


def _polygon(name: str, dims: tuple[str, str], vertices) -> str:
    coords = "".join(
        f'<gating:vertex><gating:coordinate data-type:value="{x!r}"/>'
        f'<gating:coordinate data-type:value="{y!r}"/></gating:vertex>'
        for x, y in vertices
    )
    axes = "".join(
        f'<gating:dimension><data-type:fcs-dimension data-type:name="{d}"/></gating:dimension>'
        for d in dims
    )
    return (
        f'<Population name="{name}"><Gate><gating:PolygonGate eventsInside="1">{axes}{coords}'
        "</gating:PolygonGate></Gate></Population>"
    )


def _workspace(populations: str) -> str:
    biex = " ".join(f'transforms:{k}="{v}"' for k, v in BIEX.items())
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Workspace version="20.0" flowJoVersion="10.7.1"
    xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating"
    xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
    xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">
 <SampleList><Sample>
  <DataSet uri="file:/nowhere/crafted.fcs" sampleID="1"/>
  <Transformations>
   <transforms:biex transforms:length="256" {biex}>
    <data-type:parameter data-type:name="X"/></transforms:biex>
   <transforms:biex transforms:length="256" {biex}>
    <data-type:parameter data-type:name="Y"/></transforms:biex>
   <transforms:linear transforms:minRange="0" transforms:maxRange="100" gain="1">
    <data-type:parameter data-type:name="L"/></transforms:linear>
  </Transformations>
  <SampleNode name="crafted" sampleID="1"><Subpopulations>{populations}</Subpopulations>
  </SampleNode>
 </Sample></SampleList>
</Workspace>
"""


@pytest.fixture
def crafted(tmp_path):
    # vertices mid-bin: channels 165 and 335 truncate to bins 10 and 20 (to the nearest edge they
    # would be 10 and 21); 3000 and 4090 to bins 187 and 255
    lo, hi, top = _raw(165.0), _raw(335.0), _raw(4090.0)
    pops = (
        _polygon("square", ("X", "Y"), [(lo, lo), (hi, lo), (hi, hi), (lo, hi)])
        + _polygon(
            "top", ("X", "Y"), [(lo, _raw(3000.0)), (hi, _raw(3000.0)), (hi, top), (lo, top)]
        )
        + _polygon("mixed", ("L", "Y"), [(10.0, lo), (50.0, lo), (50.0, hi), (10.0, hi)])
    )
    path = tmp_path / "crafted.wsp"
    path.write_text(_workspace(pops))
    return read_flowjo(path, "crafted.fcs")


def _apply(strategy, rows) -> dict[str, list[bool]]:
    events = np.array(rows, dtype=float)
    sample = cw.Sample(events=events, channels=["X", "Y", "L"], markers=["", "", ""])
    result = strategy.apply(sample)
    return {p: result.mask(p).tolist() for p in ("square", "top", "mixed")}


def test_crafted_events_on_biex_bin_edges(crafted):
    mid = _raw(240.0)  # bin 15, inside on the other axis
    rows = [
        (RAW[160], mid, 30.0),  # channel 160: bin 10, on the left edge: in
        (_below(160), mid, 30.0),  # a last bit below: bin 9: out
        (RAW[152], mid, 30.0),  # channel 152, bin 9.5: out (rounding made it bin 10: in)
        (_below(336), mid, 30.0),  # channel 335.99..: bin 20, on the right edge: in
        (RAW[328], mid, 30.0),  # channel 328, bin 20.5: in (rounding made it 21: out)
        (RAW[336], mid, 30.0),  # channel 336: bin 21: out (in for vertices rounded to 21)
        (mid, RAW[160], 30.0),  # the same on the y axis
        (mid, _below(160), 30.0),
        (mid, _below(336), 30.0),
        (mid, RAW[336], 30.0),
    ]
    got = _apply(crafted, rows)
    assert got["square"] == [True, False, False, True, True, False, True, False, True, False]
    gate = crafted["square"].gate
    assert gate.binning == (TRUNCATE, TRUNCATE) and gate.resolution == 256
    rounded = FlowJoPolygonGate(gate.dimensions, gate.vertices, gate.tops, 256, (NEAREST, NEAREST))
    trs = [crafted.transforms[d.transform] for d in gate.dimensions]
    channels = np.array([[tr.apply(v) for tr, v in zip(trs, r)] for r in rows])
    assert rounded.contains(channels).tolist() != got["square"]  # the old rule disagrees


def test_events_beyond_the_table_sit_in_its_end_bins(crafted):
    """Assumed (not settled by FlowJo's counts): a value past the top of the biex table is in
    the last display bin, as FlowJo draws it on the axis; past the bottom, in the first."""
    inside = _raw(240.0)
    rows = [
        (inside, 1e9, 30.0),  # beyond the top (channel 4096, bin 256): bin 255, on the edge
        (inside, RAW[4095], 30.0),  # bin 255
        (inside, RAW[2992], 30.0),  # channel 2992: bin 187, on the bottom edge (3000 / 16)
        (inside, _below(2992), 30.0),  # bin 186: out
        (-1e9, -1e9, 30.0),  # beyond the bottom: bin 0
    ]
    assert _apply(crafted, rows)["top"] == [True, True, True, False, False]
    bottom = FlowJoPolygonGate(
        (Dimension("x"), Dimension("y")),
        ((0.0, 0.0), (32.0, 0.0), (32.0, 32.0)),
        (4096.0, 4096.0),
        256,
        (TRUNCATE, TRUNCATE),
    )
    assert bottom.contains(np.array([[0.0, 0.0], [-5.0, -5.0], [16.0, 0.0]])).tolist() == [
        True,
        True,
        True,
    ]


def test_linear_axis_keeps_the_nearest_bin_edge(crafted):
    """On FlowJo's linear 0..100 axis (256 bins) the polygon's 10 and 50 are bins 25.6 -> 26 and
    128 -> 128, to the nearest edge; the biex axis beside it truncates."""
    mid = _raw(240.0)
    rows = [
        (0.0, mid, 10.0),  # bin 26: in
        (0.0, mid, 9.9),  # 25.34 -> 25: out (truncated, with the vertex also at 25: in)
        (0.0, mid, 50.19),  # 128.49 -> 128: in
        (0.0, mid, 50.234375),  # 128.6 -> 129: out (truncated: 128, in)
        (0.0, _below(160), 30.0),  # the biex axis truncates: bin 9: out
        (0.0, _below(336), 30.0),  # bin 20: in
    ]
    assert _apply(crafted, rows)["mixed"] == [True, False, True, False, False, True]
    assert crafted["mixed"].gate.binning == (NEAREST, TRUNCATE)


# --- the binning rule per scale -------------------------------------------------------------------


def test_binning_follows_the_axis_scale():
    assert _binning(Linear(T=100.0, A=0.0)) == NEAREST
    assert _binning(FlowJoBiex()) == TRUNCATE
    # assumed alike: FlowJo 10's other non-linear scales (see the README)
    for tr in (
        FlowJoLog(offset=1.0, decades=4.5),
        Logicle(T=262144.0, W=0.5, M=4.5, A=0.0),
        Asinh(T=262144.0, M=4.5, A=0.0),
        Hyperlog(T=262144.0, W=0.5, M=4.5, A=0.0),
    ):
        assert _binning(tr) == TRUNCATE, tr


def test_corpus_polygons_keep_their_binning():
    """OMIP-021's linear scatter polygons bin to the nearest edge (FlowJo 10); so do the FlowJo
    9.2 polygons on A2004's calibration-table axes, which truncation moves further from FlowJo."""
    omip = CORPUS / "flowjo" / "cytopipeline_omip021" / "OMIP021_samples_FlowJo.wsp"
    gate = read_flowjo(omip, "Donor1.fcs")["Cells"].gate
    assert isinstance(gate, FlowJoPolygonGate) and gate.binning == (NEAREST, NEAREST)
    assert gate.geometry()["binning"] == [NEAREST, NEAREST]
    a2004 = CORPUS / "flowjo" / "flowworkspacedata_A2004" / "A2004Analysis.xml"
    apc = read_flowjo(a2004, "a2004_O1T2pb05i_A2_A02.fcs")["Live/APC"].gate
    assert isinstance(apc, FlowJoPolygonGate) and apc.binning == (NEAREST, NEAREST)
    assert apc.tops == (4096.0, 4096.0)


def test_binning_must_be_known():
    dims = (Dimension("x"), Dimension("y"))
    tri = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))
    with pytest.raises(GatingError, match="binning must be two of 'nearest' and 'truncate'"):
        FlowJoPolygonGate(dims, tri, binning=("nearest", "round"))
    with pytest.raises(GatingError, match="binning"):
        FlowJoPolygonGate(dims, tri, binning=("nearest",))
    assert FlowJoPolygonGate(dims, tri, binning=["truncate", "nearest"]).binning == (
        TRUNCATE,
        NEAREST,
    )

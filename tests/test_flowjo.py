"""FlowJo workspace import, checked against FlowJo's own population counts.

The corpus CSVs (flowjo/truth_csv) hold, per population, FlowJo's count and, where it could compute
one, FlowKit 1.3.2's. FlowJo gates polygons on its 256 x 256 display grid, not on exact values.
FlowKit tests exact geometry, so it differs where events lie next to a polygon edge: OMIP-021
Donor2 'Cells' (FlowJo 4379, FlowKit 4383), Donor1 'Cells/CD4+' (1212 vs 1213, through its parent)
and the 'poly50' example (0 vs 50: all 100 events sit at y = 131072, just under the polygon's
sloping top edge on exact values, on or above it on the grid). The reader evaluates polygons on
FlowJo's grid, events on the rounded outline inside (:class:`gating.flowjo.FlowJoPolygonGate`), and
matches FlowJo's count for every population of every FlowJo 10 workspace whose FCS files are here
(without the outline rule, Donor1 'Cells' would be 3686 instead of FlowJo's 3687).
"""

from __future__ import annotations

import csv
import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import cytowhim as cw
from gating import Dimension, EllipsoidGate, PolygonGate, RectangleGate, Strategy, StrategyError
from gating.flowjo import FlowJoPolygonGate, OutsideGate, list_samples, read_flowjo
from gating.transforms import FlowJoBiex, FlowJoLog, TableTransform

from .conftest import CORPUS

FJ = CORPUS / "flowjo"
A2004 = FJ / "flowworkspacedata_A2004" / "A2004Analysis.xml"
A2 = "a2004_O1T2pb05i_A2_A02.fcs"
OMIP = FJ / "cytopipeline_omip021" / "OMIP021_samples_FlowJo.wsp"
EIGHT = FJ / "flowkit_8_color_data_set"


def _truth() -> dict[tuple[Path, str], list[dict[str, str]]]:
    """(workspace, sample file or name) -> the CSV rows of its populations."""
    out: dict[tuple[Path, str], list[dict[str, str]]] = defaultdict(list)
    for path in sorted((FJ / "truth_csv").glob("*.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["node_type"] == "SampleNode":
                    continue
                ws = FJ / row["workspace"].removeprefix("flowjo/")
                out[(ws, row["fil"] or row["sample_node"])].append(row)
    return dict(out)


TRUTH = _truth()
WITH_DATA = sorted(k for k in TRUTH if (k[0].parent / k[1]).is_file())
WORKSPACES = sorted(p for p in FJ.glob("*/*") if p.suffix in (".wsp", ".xml"))


def _path(row: dict[str, str]) -> str:
    """Population path as the strategy names it (the CSV's gate path starts at 'root')."""
    return f"{row['gate_path']}/{row['population']}".removeprefix("root").lstrip("/")


def _count(value: str) -> int | None:
    """A count from the CSV; None where there is none (blank, or -1: never computed)."""
    return int(float(value)) if value and float(value) >= 0 else None


@pytest.fixture(scope="module")
def counts():
    cache: dict[tuple[Path, str], dict[str, int]] = {}

    def get(ws: Path, sample: str) -> dict[str, int]:
        if (ws, sample) not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cw.FCSWarning)
                events = cw.read_fcs(ws.parent / sample)
            cache[(ws, sample)] = read_flowjo(ws, sample).apply(events).counts().to_dict()
        return cache[(ws, sample)]

    return get


# --- counts against FlowJo ------------------------------------------------------------------------


def test_corpus_cases_are_all_there():
    assert len(WITH_DATA) == 10  # 2 OMIP-021 donors, 7 FlowKit examples, A2004 sample A2
    assert len(WORKSPACES) == 17
    assert (A2004, A2) in WITH_DATA


@pytest.mark.parametrize(("ws", "sample"), [k for k in WITH_DATA if k[0] != A2004], ids=str)
def test_flowjo10_counts_match_flowjo(counts, ws, sample):
    ours = counts(ws, sample)
    compared = 0
    for row in TRUTH[(ws, sample)]:
        path, flowjo, flowkit = (
            _path(row),
            _count(row["flowjo_count"]),
            _count(row["flowkit_count"]),
        )
        assert path in ours, f"{path} missing; have {sorted(ours)}"
        if flowkit is not None and flowjo is not None:
            assert abs(ours[path] - flowjo) <= abs(flowkit - flowjo), (path, ours[path], flowkit)
        if flowjo is not None:
            assert ours[path] == flowjo, (path, ours[path], flowjo)  # FlowJo's grid reproduced
            compared += 1
        elif flowkit is not None:  # FlowJo never computed it ('simple_poly_and_rect'): FlowKit's
            assert ours[path] == flowkit, (path, ours[path], flowkit)
    assert compared or ws.name == "simple_poly_and_rect.wsp"


def test_omip021_values(counts):
    d1, d2 = counts(OMIP, "Donor1.fcs"), counts(OMIP, "Donor2.fcs")
    assert d1 == {"Cells": 3687, "Cells/CD4+": 1212, "Debris": 457}
    assert d2 == {"Cells": 4379, "Cells/CD4+": 1339, "Debris": 151}


def test_a2004_flowjo9_within_2_percent(counts):
    """FlowJo 9 (A2 sample, 45,363 events). Ours vs FlowJo: Live 34468/34469, APC 2842/2839,
    B Cell 1735/1727, mDC 450/449, Monocytes 1818/1846 (-1.5 %: 'magnetic' polygon, which FlowJo
    may move with the data); small populations differ by at most 6 events (Monocytes/IL-12+
    33/39). FlowJo recorded no count for CD14-MHC2- on this sample."""
    ours = counts(A2004, A2)
    checked = 0
    for row in TRUTH[(A2004, A2)]:
        path, flowjo = _path(row), _count(row["flowjo_count"])
        assert path in ours
        if flowjo is None:
            continue
        if flowjo >= 100:
            assert abs(ours[path] - flowjo) <= 0.02 * flowjo, (path, ours[path], flowjo)
            checked += 1
        else:
            assert abs(ours[path] - flowjo) <= 6, (path, ours[path], flowjo)
    assert checked == 5  # Live, APC, B Cell, mDC, Monocytes
    assert ours["Live"] == 34468 and ours["Live/APC/mDC"] == 450


# --- every workspace parses, with FlowJo's population tree ----------------------------------------


@pytest.mark.parametrize("ws", [w for w in WORKSPACES if w.suffix == ".wsp" or w == A2004], ids=str)
def test_every_workspace_sample_parses_with_flowjos_tree(ws):
    samples = list_samples(ws)
    assert samples
    for file in samples:
        st = read_flowjo(ws, file)
        assert st.source == str(ws)
        expected = {_path(r) for r in TRUTH.get((ws, file), [])}
        assert {st.path(p.name) for p in st} == expected
        assert all(p.name == st.path(p.name) for p in st)  # names are paths


def test_parse_only_workspaces_keep_flowjo_geometry():
    st = read_flowjo(EIGHT / "8_color_ICS_with_ellipse.wsp", "101_DEN084Y5_15_E01_008_clean.fcs")
    ell = st["Time/Singlets/aAmine-/CD3+/ellipse1"].gate
    assert isinstance(ell, EllipsoidGate)
    # Foci (73.9, 75.2), (89.1, 64.8) and edges on FlowJo's 256 display over logicle 0..1.
    assert ell.mean == pytest.approx((81.5 / 256, 70.0 / 256))
    assert [d.name for d in ell.dimensions] == ["CD4 PE-Cy7 FLR-A", "CD8 PerCP-Cy55 FLR-A"]
    assert {d.compensation for d in ell.dimensions} == {"Acquisition-defined"}
    time = st["Time"].gate  # seconds on FlowJo's linear axis from minRange to maxRange
    assert isinstance(time, RectangleGate)
    assert st.transforms["Time"].params() == {"T": 69.0, "A": -1.2746832452}
    assert time.mins[0] == pytest.approx((1.2799999714 - 1.2746832452) / (69 - 1.2746832452))
    comp = st.compensations["Acquisition-defined"]
    assert comp.matrix.shape == (8, 8) and np.allclose(np.diag(comp.matrix), 1.0)
    assert comp.matrix[0, 1] == pytest.approx(0.014138501283030267)


def test_no_gates_for_a_sample_gives_an_empty_strategy():
    ws = EIGHT / "8_color_ICS_sample_without_gates.wsp"
    assert len(read_flowjo(ws, "101_DEN084Y5_15_E05_010_clean.fcs")) == 0
    assert len(read_flowjo(ws, "101_DEN084Y5_15_E01_008_clean.fcs")) == 4


def test_boolean_nodes():
    st = read_flowjo(
        EIGHT / "8_color_ICS_boolean_gate_testing.wsp", "101_DEN084Y5_15_E03_009_clean.fcs"
    )
    cd4 = "Time/Singlets/aAmine-/CD3+/CD4+"
    cd8 = "Time/Singlets/aAmine-/CD3+/CD8+"
    assert st[f"{cd4}/CD107a+ or IFNg+"].gate.operands == (
        (f"{cd4}/CD107a+", False),
        (f"{cd4}/IFNg+", False),
    )
    assert st[f"{cd4}/CD107a+ & IFNg+"].gate.op == "and"
    assert st[f"{cd4}/IL2+-"].gate.operands == ((f"{cd4}/IL2+", False),)
    # Copied under CD8+, this NOT node still names CD4+/TNFa+; FlowJo counts it as CD8+ minus
    # CD8+'s own TNFa+ (47046 - 827 = 46219), so it is re-anchored on the sibling.
    not_cd8 = st[f"{cd8}/TNFa+-"]
    assert (not_cd8.gate.op, not_cd8.gate.operands) == ("not", ((f"{cd8}/TNFa+", False),))
    assert st[f"{cd8}/TNFa+-/CD107a+"].parent == f"{cd8}/TNFa+-"


def test_sample_override_of_a_group_gate():
    """'poly1' is a group gate that the sample redrew: the sample's own vertices are used."""
    st = read_flowjo(
        FJ / "flowkit_simple_line_example" / "simple_poly_and_rect_v2_poly50.wsp",
        "data_set_simple_line_100.fcs",
    )
    gate = st["poly1"].gate
    assert isinstance(gate, FlowJoPolygonGate) and gate.resolution == 256
    # Sample: (58928.57, 131668.6); the group's gate has (59500, 130638.7) there. Axes are FlowJo's
    # linear 50000..150000 (x) and 0..255000 (y).
    assert gate.vertices[1] == pytest.approx(
        ((58928.5714285714 - 5e4) / 1e5, 131668.6159844054 / 255e3)
    )


def test_parameter_names_mapped_back_to_the_files_channels(tmp_path):
    """FlowJo writes '670/30Violet-A' as '670_30Violet-A': the file's name is restored."""
    st = read_flowjo(OMIP, "Donor1.fcs")  # Donor1.fcs sits next to the workspace
    dims = st["Cells/CD4+"].gate.dimensions
    assert [(d.name, d.compensation) for d in dims] == [
        ("670/30Violet-A", "Acquisition-defined"),
        ("780/60Red-A", "Acquisition-defined"),
    ]
    assert dims[0].transform == "Comp-670_30Violet-A"
    assert isinstance(st.transforms[dims[0].transform], FlowJoBiex)
    assert "730//45Red-A" in st.compensations["Acquisition-defined"].detectors
    lone = tmp_path / OMIP.name  # without its FCS files, FlowJo's names stay
    shutil.copy(OMIP, lone)
    assert read_flowjo(lone, "Donor1.fcs")["Cells/CD4+"].gate.dimensions[0].name == "670_30Violet-A"
    named = read_flowjo(lone, "Donor1.fcs", channels=["FSC-A", "670/30Violet-A", "780/60Red-A"])
    assert named["Cells/CD4+"].gate.dimensions[1].name == "780/60Red-A"


def test_a2004_structure():
    st = read_flowjo(A2004, A2)
    comp = st.compensations["A2004-A2005_06i"]
    assert comp.fluorochromes[0] == "Am Cyan-A"
    assert comp.matrix[1, 0] == pytest.approx(0.386)  # row: fluorochrome, column: detector
    apc = st["Live/APC"].gate
    assert [(d.name, d.compensation) for d in apc.dimensions] == [
        ("PerCP-CY5-5-A", "A2004-A2005_06i"),
        ("PE-CY7-A", "A2004-A2005_06i"),
    ]
    table = st.transforms[apc.dimensions[0].transform]
    assert isinstance(table, TableTransform) and len(table.raw) == 4097
    assert isinstance(st["Live/CD14-MHC2-"].gate, EllipsoidGate)
    rng = st["Live/APC/mDC/IFNa+"].gate  # Range from 399.5 to 2.3e7, past the top of the axis
    assert isinstance(rng, RectangleGate) and rng.maxs == (None,)
    on_scale = st.transforms[rng.dimensions[0].transform].apply(np.array([399.53369140625]))
    assert rng.mins == pytest.approx(tuple(on_scale))


def test_polygon_on_flowjos_grid():
    """Events and vertices are rounded to the 256-step grid; events on the outline are inside."""
    dims = (Dimension("x"), Dimension("y"))
    tri = ((0.1, 0.1), (0.5, 0.1), (0.1, 0.5))  # hypotenuse x + y = 0.6
    grid = FlowJoPolygonGate(dims, tri, tops=(1.0, 1.0), resolution=256)
    events = np.array([[0.301, 0.3], [0.2, 0.2], [0.05, 0.05], [0.52, 0.1]])
    assert PolygonGate(dims, tri).contains(events).tolist() == [False, True, False, False]
    # (0.301, 0.3) -> (77, 77): on the rounded hypotenuse (26,128)-(128,26); 0.52 -> 133 > 128.
    assert grid.contains(events).tolist() == [True, True, False, False]
    assert grid.geometry()["grid"] == [256, [1.0, 1.0]]


# --- transforms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [(0, -10, 4.41854, 262144.000029), (0, -100, 4.418539922, 262144), (1, -30, 4.5, 1e5)]
)
def test_flowjo_biex_matches_flowkit(params):
    wsp = pytest.importorskip("flowkit._models.transforms._wsp_transforms")
    neg, width, pos, top = params
    ours = FlowJoBiex(negative=neg, width=width, positive=pos, max_value=top)
    ref = wsp.WSPBiexTransform(negative=neg, width=width, positive=pos, max_value=top)
    x = np.concatenate([np.linspace(-5000, 5000, 2001), np.geomspace(1, 1e6, 500), [-1e9, 1e9]])
    assert np.allclose(ours.apply(x), ref.apply(x), rtol=0, atol=1e-9)
    y = np.linspace(-10, 4200, 999)
    assert np.allclose(ours.inverse(y), ref.inverse(y), rtol=1e-12, atol=1e-9)
    inside = np.linspace(-100, 0.9 * top, 50)
    assert np.allclose(ours.inverse(ours.apply(inside)), inside, rtol=1e-9, atol=1e-6)
    assert ours.apply(np.array([-1e9, 1e9])).tolist() == [0.0, 4096.0]  # events beyond: on the axis


def test_flowjo_log():
    tr = FlowJoLog(offset=10.0, decades=4.0)
    assert tr.apply(np.array([-5.0, 10.0, 1e3, 1e5])).tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tr.inverse(np.array([0.25])) == pytest.approx([100.0])
    with pytest.raises(ValueError, match="offset > 0"):
        FlowJoLog(offset=0.0)


def test_table_transform():
    tr = TableTransform(raw=(-10.0, 0.0, 100.0), scaled=(0.0, 1.0, 2.0))
    assert tr.apply(np.array([-50.0, -5.0, 50.0, 500.0])).tolist() == [0.0, 0.5, 1.5, 2.0]
    assert tr.inverse(np.array([1.5])).tolist() == [50.0]
    with pytest.raises(ValueError, match="increase strictly"):
        TableTransform(raw=(0.0, 0.0), scaled=(0.0, 1.0))


# --- gates from a small hand-written workspace -----------------------------------------------------

_WSP = """<?xml version="1.0" encoding="UTF-8"?>
<Workspace version="20.0" flowJoVersion="10.8.1"
    xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating"
    xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
    xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">
 <SampleList><Sample>
  <DataSet uri="file:/nowhere/synthetic%20one.fcs" sampleID="1"/>
  <Transformations>
   <transforms:linear transforms:minRange="0" transforms:maxRange="100" gain="1">
    <data-type:parameter data-type:name="A"/></transforms:linear>
   <transforms:linear transforms:minRange="0" transforms:maxRange="100" gain="1">
    <data-type:parameter data-type:name="B"/></transforms:linear>
  </Transformations>
  <SampleNode name="one" sampleID="1"><Subpopulations>
   <Population name="not low" owningGroup="">
    <Gate><gating:RectangleGate eventsInside="0">
     <gating:dimension gating:max="10"><data-type:fcs-dimension data-type:name="A"/>
     </gating:dimension></gating:RectangleGate></Gate>
    <Subpopulations>
     <Population name="upper right" owningGroup="">
      <Gate><gating:QuadrantGate gating:id="Q">
       <gating:divider gating:id="dA"><data-type:fcs-dimension data-type:name="A"/>
        <gating:value>50</gating:value></gating:divider>
       <gating:divider gating:id="dB"><data-type:fcs-dimension data-type:name="B"/>
        <gating:value>50</gating:value></gating:divider>
       <gating:Quadrant gating:id="upper right">
        <gating:position gating:divider_ref="dA" gating:location="75"/>
        <gating:position gating:divider_ref="dB" gating:location="75"/></gating:Quadrant>
       <gating:Quadrant gating:id="lower left">
        <gating:position gating:divider_ref="dA" gating:location="25"/>
        <gating:position gating:divider_ref="dB" gating:location="25"/></gating:Quadrant>
      </gating:QuadrantGate></Gate>
     </Population>
    </Subpopulations>
   </Population>
  </Subpopulations></SampleNode>
 </Sample></SampleList>
</Workspace>
"""


@pytest.fixture
def synthetic(tmp_path):
    path = tmp_path / "synthetic.wsp"
    path.write_text(_WSP)
    return path


def test_outside_gate_and_quadrant(synthetic):
    st = read_flowjo(synthetic, "synthetic one.fcs")  # the DataSet URI's file name, unquoted
    assert isinstance(st["not low"].gate, OutsideGate)
    quad = st["not low/upper right"].gate
    assert isinstance(quad, RectangleGate)
    assert (quad.mins, quad.maxs) == ((0.5, 0.5), (None, None))  # on FlowJo's 0..100 axes
    events = np.array([[5.0, 90.0], [20.0, 20.0], [60.0, 70.0], [90.0, 40.0], [50.0, 50.0]])
    sample = cw.Sample(events=events, channels=["A", "B"], markers=["", ""])
    result = st.apply(sample)
    assert result.mask("not low").tolist() == [False, True, True, True, True]
    assert result.mask("not low/upper right").tolist() == [False, False, True, False, True]
    assert read_flowjo(synthetic, "one").name == "synthetic: synthetic one.fcs (one)"


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_sample_names_workspace_and_lists_samples():
    with pytest.raises(StrategyError) as err:
        read_flowjo(OMIP, "Donor3.fcs")
    msg = str(err.value)
    assert str(OMIP) in msg and "'Donor3.fcs'" in msg
    assert "samples: Donor1.fcs, Donor2.fcs" in msg


def test_ambiguous_flowjo_name_asks_for_the_file():
    """Both A2004 samples are called 'a2004_O1T2pb05i' in FlowJo."""
    with pytest.raises(StrategyError, match="names 2 samples .*A1_A01.fcs.*A2_A02.fcs"):
        read_flowjo(A2004, "a2004_O1T2pb05i")
    assert len(read_flowjo(A2004, f"/some/folder/{A2}")) == 19  # a path: its file name


def test_malformed_xml_names_the_file(tmp_path):
    bad = tmp_path / "broken.wsp"
    bad.write_text(OMIP.read_text()[:5000])
    with pytest.raises(StrategyError, match=r"broken\.wsp: not well-formed XML"):
        read_flowjo(bad, "Donor1.fcs")
    with pytest.raises(StrategyError, match=r"broken\.wsp: not well-formed XML"):
        Strategy.from_flowjo(bad, "Donor1.fcs")


def test_gatingml_is_not_a_workspace():
    with pytest.raises(StrategyError, match="not a FlowJo workspace"):
        read_flowjo(EIGHT / "8_color_ICS.xml", "x.fcs")


def test_unsupported_transform_is_named(synthetic):
    synthetic.write_text(_WSP.replace("transforms:linear", "transforms:miltenyi", 2))
    with pytest.raises(StrategyError, match=r"transform of 'A'.*'miltenyi' is not supported"):
        read_flowjo(synthetic, "one")


def test_boolean_to_a_missing_population_is_named(synthetic):
    text = _WSP.replace(
        "</Subpopulations></SampleNode>",
        '<OrNode name="either" owningGroup=""><Dependents><Dependent name="gone"/>'
        '<Dependent name="not low"/></Dependents></OrNode></Subpopulations></SampleNode>',
    )
    synthetic.write_text(text)
    with pytest.raises(StrategyError, match="refers to 'gone', which is not a population"):
        read_flowjo(synthetic, "one")


# --- Gating-ML exports next to the workspaces ----------------------------------------------------


def test_gatingml_exports_parse():
    gml = Strategy.from_gatingml(EIGHT / "8_color_ICS.xml")
    assert len(gml) == 6 and "Acquisition-defined" in gml.compensations
    cyto = Strategy.from_gatingml(
        CORPUS / "gatingml" / "cytobank_cytotrol" / "cytotrol_tcell_cytobank.xml"
    )
    assert len(cyto) == 25 and len(cyto.compensations) == 3
    assert cyto.transforms["Tr_Arcsinh_150"].T == pytest.approx(176.2801790465702)
    cd4 = cyto["GateSet_722320"].gate  # a Cytobank population: the AND of its gates
    assert cd4.op == "and" and len(cd4.operands) == 5


def test_the_engine_never_imports_cytowhim():
    """gating/ knows nothing of cytowhim: reading a FlowJo workspace and gating a sample in a
    fresh interpreter leaves cytowhim unimported."""
    import subprocess
    import sys

    wsp = CORPUS / "flowjo" / "cytopipeline_omip021" / "OMIP021_samples_FlowJo.wsp"
    code = (
        "import sys, gating\n"
        f"st = gating.Strategy.from_flowjo({str(wsp)!r}, sample='Donor1.fcs')\n"
        "assert {p.name for p in st} >= {'Cells', 'Cells/CD4+'}\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'cytowhim'], 'cytowhim imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]

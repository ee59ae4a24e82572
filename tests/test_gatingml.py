"""The ISAC Gating-ML 2.0 compliance suite: every reference result, event for event."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

import cytowhim as cw
from gating import GatingError, Strategy, StrategyError
from gating.errors import GatingWarning

from .conftest import CORPUS

GML = CORPUS / "gatingml"
ROWS = list(csv.DictReader((GML / "truth_csv" / "gatingml_counts.csv").open()))
CASES = [(r["gate_id"], doc.split(" (")[0]) for r in ROWS for doc in r["defined_in"].split(";")]


@pytest.fixture(scope="module")
def data1():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        return cw.read_fcs(GML / "data1.fcs")


@pytest.fixture(scope="module")
def applied(data1):
    cache = {}

    def get(doc):
        if doc not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GatingWarning)  # data1 has no spillover
                cache[doc] = Strategy.from_gatingml(GML / "gml" / doc).apply(data1)
        return cache[doc]

    return get


def test_suite_is_complete():
    assert len(ROWS) == 51
    assert len(CASES) > 100  # most gates are defined in several documents


def _truth(gate_id):
    row = next(r for r in ROWS if r["gate_id"] == gate_id)
    return np.loadtxt(GML / row["truth_file"], dtype=np.int8).astype(bool), int(row["truth_count"])


@pytest.mark.parametrize(("gate_id", "doc"), CASES)
def test_reference_result_event_for_event(applied, gate_id, doc):
    truth, count = _truth(gate_id)
    name = "ParRectangle1" if gate_id == "ParQuadRect" else gate_id  # see the corpus README
    mask = applied(doc).mask(name)
    assert mask.shape == truth.shape
    assert int(mask.sum()) == count
    assert np.array_equal(mask, truth), np.flatnonzero(mask != truth)[:10]


def test_export_import_round_trip_keeps_every_mask(applied, data1, tmp_path):
    original = Strategy.from_gatingml(GML / "gml" / "gml_all_gates.xml")
    out = tmp_path / "all.xml"
    original.to_gatingml(out)
    again = Strategy.from_gatingml(out)
    assert [p.name for p in again.populations] == [p.name for p in original.populations]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatingWarning)
        result = again.apply(data1)
    first = applied("gml_all_gates.xml")
    for p in original.populations:
        assert np.array_equal(result.mask(p.name), first.mask(p.name)), p.name


def test_file_compensation_without_spillover_is_reported(data1):
    st = Strategy.from_gatingml(GML / "gml" / "gml_ellipsoid3d_gate.xml")
    with pytest.warns(GatingWarning, match="no spillover matrix"):
        st.apply(data1)


def test_unsafe_xml_is_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>\n'
        "<gating:Gating-ML xmlns:gating='http://www.isac-net.org/std/Gating-ML/v2.0/gating'>"
        "&lol2;</gating:Gating-ML>"
    )
    with pytest.raises(StrategyError, match="unsafe XML"):
        Strategy.from_gatingml(bomb)
    external = tmp_path / "xxe.xml"
    external.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        "<gating:Gating-ML xmlns:gating='http://www.isac-net.org/std/Gating-ML/v2.0/gating'>"
        "&x;</gating:Gating-ML>"
    )
    with pytest.raises(StrategyError, match="unsafe XML"):
        Strategy.from_gatingml(external)


def test_malformed_documents_name_the_problem(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<gating:Gating-ML")
    with pytest.raises(StrategyError, match="not well-formed"):
        Strategy.from_gatingml(bad)
    dangling = tmp_path / "dangling.xml"
    dangling.write_text(
        "<gating:Gating-ML xmlns:gating='http://www.isac-net.org/std/Gating-ML/v2.0/gating' "
        "xmlns:data-type='http://www.isac-net.org/std/Gating-ML/v2.0/datatypes'>"
        "<gating:RectangleGate gating:id='A' gating:parent_id='Nope'>"
        "<gating:dimension gating:min='1'><data-type:fcs-dimension data-type:name='FSC-H'/>"
        "</gating:dimension></gating:RectangleGate></gating:Gating-ML>"
    )
    with pytest.raises(StrategyError, match="unknown population 'Nope'"):
        Strategy.from_gatingml(dangling)


def test_missing_channel_names_strategy_and_sample(data1):
    st = Strategy.from_gatingml(GML / "gml" / "gml_range_gate.xml")
    renamed = cw.Sample(
        events=data1.events,
        channels=[c.replace("FSC-H", "FSC-A") for c in data1.channels],
        markers=data1.markers,
        path="renamed.fcs",
    )
    with pytest.raises(
        GatingError, match=r"gml_range_gate.xml: renamed.fcs has no channel or marker 'FSC-H'"
    ):
        st.apply(renamed)

"""Marker names as instruments write them (issue 10 item 2): normalisation, fluorochromes in
either order, explicit mappings (Python, YAML, panel, --markers), ambiguity and near-miss errors,
and the real OMIP-021 files gated with a marker-named strategy."""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cytowhim as cw
from cytowhim.cli import main
from gating import (
    AmbiguousMarkerError,
    Dimension,
    MissingDimensionError,
    Population,
    RectangleGate,
    Strategy,
    StrategyError,
)
from gating.markers import (
    FLUOROCHROMES,
    MarkerIndex,
    is_fluorochrome,
    load_markers,
    normalize,
    split_label,
)

from .conftest import CORPUS, REPO

OMIP = CORPUS / "flowjo" / "cytopipeline_omip021"
DONOR1, DONOR2 = OMIP / "Donor1.fcs", OMIP / "Donor2.fcs"

# A small marker-named strategy for the OMIP-021 panel (PBMC, LSRFortessa): scatter lymphocytes,
# live = viability dye low, T cells CD3+, a CD4 / CD8 quadrant, CD45RA+ CD4 T cells. Thresholds
# on the logicle scale sit in the valleys of both donors' compensated histograms.
OMIP_STRATEGY = """
name: OMIP-021 by marker
compensation: FCS
transforms:
  fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}
populations:
  - name: lymphocytes
    gate: {rectangle: {dimensions: [FSC-A, SSC-A], min: [75000, 30000], max: [150000, 110000]}}
  - name: live
    parent: lymphocytes
    gate: {range: {dimension: Viability, transform: fluor, max: 0.4}}
  - name: T cells
    parent: live
    gate: {range: {dimension: CD3, transform: fluor, min: 0.35}}
  - quadrant: {parent: T cells, x: CD4, y: CD8, transform: fluor, at: [0.45, 0.55],
               populations: {CD4+: "+-", CD8+: "-+"}}
  - name: CD4 CD45RA+
    parent: CD4+
    gate: {range: {dimension: CD45RA, transform: fluor, min: 0.45}}
"""

RESOLVED = {
    "FSC-A": "FSC-A",
    "SSC-A": "SSC-A",
    "Viability": "525/50Violet-A",  # L/D Aqua - Viability
    "CD3": "670/30Violet-A",  # BV785 - CD3
    "CD4": "780/60Red-A",  # APCCy7 - CD4
    "CD8": "585/15Violet-A",  # BV650 - CD8a, by the mapping
    "CD45RA": "710/50Blue-A",  # PerCP-Cy55 - CD45RA
}


@pytest.fixture(scope="module")
def omip_strategy(tmp_path_factory):
    path = tmp_path_factory.mktemp("markers") / "omip.yaml"
    path.write_text(OMIP_STRATEGY)
    return path


@pytest.fixture(scope="module")
def donors():
    return {p.stem: cw.read_fcs(p) for p in (DONOR1, DONOR2)}


@dataclass
class Events:
    """The least a strategy gates: events, channel and marker names."""

    events: np.ndarray
    channels: list[str]
    markers: list[str]
    path: str = "test.fcs"


def _index(*labels: str) -> MarkerIndex:
    channels = ["FSC-A"] + [f"FL{i}-A" for i in range(1, len(labels) + 1)]
    return MarkerIndex(channels, ["", *labels])


# --- normalisation and fluorochromes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HLA-DR", "HLA DR"),
        ("HLA-DR", "hla-dr"),
        ("HLA-DR", "HLA_DR"),
        ("HLA-DR", "HLA\u2212DR"),  # Unicode minus
        ("HLA-DR", "HLA\u2013DR"),  # en dash
        ("HLA-DR", " hla  -  dr "),
        ("CD45RA", "cd45ra"),
        ("TCR Va7", "TCR-Va7"),
        ("TCRγδ", "TCR gd"),
        ("IgD", "IGD"),
    ],
)
def test_normalize_unifies_case_and_separators(a, b):
    assert normalize(a) == normalize(b)


@pytest.mark.parametrize(("a", "b"), [("CD45RA", "CD45RO"), ("CD8", "CD8a"), ("CD4", "CD45")])
def test_normalize_keeps_different_markers_apart(a, b):
    assert normalize(a) != normalize(b)


@pytest.mark.parametrize(
    ("label", "marker", "fluor"),
    [
        # the OMIP-021 files
        ("BV785 - CD3", "CD3", "BV785"),
        ("APCCy7 - CD4", "CD4", "APCCy7"),
        ("PerCP-Cy55 - CD45RA", "CD45RA", "PerCP-Cy55"),
        ("L/D Aqua - Viability", "Viability", "L/D Aqua"),
        ("BV650 - CD8a", "CD8a", "BV650"),
        ("APC - CD8b", "CD8b", "APC"),
        ("PE - TCR Va7", "TCR Va7", "PE"),
        ("PECy5 - CD28", "CD28", "PECy5"),
        ("PECy7 - CCR7", "CCR7", "PECy7"),
        ("AF700 - CD45RO", "CD45RO", "AF700"),
        # other instruments
        ("CD3 FITC", "CD3", "FITC"),
        ("CD3-APC", "CD3", "APC"),
        ("CD3 (FITC)", "CD3", "FITC"),
        ("FITC CD3", "CD3", "FITC"),
        ("CD3_PE-Cy7", "CD3", "PE-Cy7"),
        ("PE-Cy7 - CD4", "CD4", "PE-Cy7"),  # the longest fluorochrome, not PE
        ("CD4 PE/Cy7", "CD4", "PE/Cy7"),
        ("HLA-DR PE-Cy5.5", "HLA-DR", "PE-Cy5.5"),
        ("HLA-DR\u2212APC-H7", "HLA-DR", "APC-H7"),
        ("CD16/CD56 PE", "CD16/CD56", "PE"),
        ("CD45 KO", "CD45", "KO"),
        ("Alexa Fluor 647 - CD19", "CD19", "Alexa Fluor 647"),
        ("eFluor 450 - CD14", "CD14", "eFluor 450"),
        ("Zombie NIR - Live/Dead", "Live/Dead", "Zombie NIR"),
        ("CD3 [BUV395]", "CD3", "BUV395"),
        # no fluorochrome: the label as it is
        ("CD3", "CD3", ""),
        ("HLA-DR", "HLA-DR", ""),
        ("EMPTY", "EMPTY", ""),
        ("FITC", "FITC", ""),
        ("FITC-A", "FITC-A", ""),  # a channel name written as the marker
    ],
)
def test_split_label(label, marker, fluor):
    assert split_label(label) == (marker, fluor)


def test_fluorochrome_aliases_and_non_fluorochromes():
    for name in ("PE-Cy7", "PECy7", "PE/Cy7", "pe cy7", "PerCP-Cy5.5", "PerCP-Cy55", "PerCPCy5.5"):
        assert is_fluorochrome(name), name
    for name in ("APC-Cy7", "APCCy7", "APC/Cy7", "BV786", "BUV563", "AF594", "FVS575"):
        assert is_fluorochrome(name), name
    for name in ("CD3", "HLA-DR", "CD45RA", "IgD", "IgM", "TCR Va7", "Viability", "CCR7", ""):
        assert not is_fluorochrome(name), name
    assert all(is_fluorochrome(f) for f in FLUOROCHROMES)


TEMPLATES = (
    "{fluor} - {marker}",
    "{marker} {fluor}",
    "{marker}-{fluor}",
    "{fluor} {marker}",
    "{marker} ({fluor})",
)
MARKERS = ("CD3", "CD4", "CD8a", "HLA-DR", "CD45RA", "TCR Va7", "IgD", "IgM", "CCR7", "CD62L")


@settings(max_examples=400, deadline=None)
@given(
    fluor=st.sampled_from(FLUOROCHROMES),
    marker=st.sampled_from(MARKERS),
    template=st.sampled_from(TEMPLATES),
    other=st.sampled_from(FLUOROCHROMES),
)
def test_every_fluorochrome_in_every_order_resolves_to_the_marker(fluor, marker, template, other):
    label = template.format(fluor=fluor, marker=marker)
    assert split_label(label) == (marker, fluor)
    # among other markers of the panel, the strategy's name finds its channel
    index = _index(f"{other} - CD99", label, f"CD27 {other}")
    assert index.column(marker) == 2
    assert index.column(marker.lower().replace("-", " ")) == 2


def test_all_fluorochromes_in_all_orders():
    """The property above, exhaustively for the whole list (hypothesis samples it)."""
    for fluor in FLUOROCHROMES:
        for template in TEMPLATES:
            for marker in ("HLA-DR", "CD45RA", "TCR Va7", "IgD"):
                label = template.format(fluor=fluor, marker=marker)
                assert split_label(label) == (marker, fluor), label


# --- resolution rules ---------------------------------------------------------------------------


def test_exact_names_win_over_normalised_ones():
    # a channel named like the marker
    ix = MarkerIndex(["CD3", "FL1-A"], ["", "BV785 - CD3"])
    assert ix.column("CD3") == 0
    # an exact marker over a marker with a fluorochrome
    ix = MarkerIndex(["FL1-A", "FL2-A"], ["CD3 FITC", "CD3"])
    assert ix.column("CD3") == 1
    # a marker in another case over one with a fluorochrome
    ix = MarkerIndex(["FL1-A", "FL2-A"], ["CD3 FITC", "cd3"])
    assert ix.column("CD3") == 1
    # the whole label, normalised, over the marker part
    ix = MarkerIndex(["FL1-A", "FL2-A"], ["HLA-DR FITC", "HLA DR"])
    assert ix.column("HLA-DR") == 1
    # channels as today, FlowJo's '_' for '/'
    ix = MarkerIndex(["670_30Violet-A"], [""])
    assert ix.column("670/30Violet-A") == 0


def test_name_with_a_fluorochrome_picks_that_one():
    ix = _index("CD3 FITC", "CD3 APC")
    assert ix.column("CD3 FITC") == 1
    assert ix.column("APC - CD3") == 2
    assert ix.column("cd3-apc") == 2


def test_two_channels_with_the_marker_are_an_error_listing_both():
    ix = _index("CD3 FITC", "CD3 APC")
    with pytest.raises(AmbiguousMarkerError) as info:
        ix.column("CD3")
    msg = str(info.value)
    assert "FL1-A (CD3 FITC)" in msg and "FL2-A (CD3 APC)" in msg
    assert "markers: {CD3: FL1-A}" in msg
    assert isinstance(info.value, MissingDimensionError)  # callers catching it still do


def test_ambiguity_through_a_strategy_names_file_and_candidates(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "compensation: uncompensated\npopulations:\n"
        "  - name: T\n    gate: {range: {dimension: CD3, min: 1}}\n"
    )
    sample = Events(np.ones((10, 3)), ["FSC-A", "FITC-A", "APC-A"], ["", "CD3 FITC", "CD3 APC"])
    with pytest.raises(AmbiguousMarkerError) as info:
        Strategy.load(path).apply(sample)
    msg = str(info.value)
    assert str(path) in msg and "test.fcs" in msg and "labels several channels" in msg
    assert "FITC-A (CD3 FITC)" in msg and "APC-A (CD3 APC)" in msg
    # the mapping settles it
    result = Strategy.load(path).apply(sample, markers={"CD3": "APC-A"})
    assert result.resolved == {"CD3": "APC-A"}


def test_no_prefix_matching_and_near_misses_are_listed():
    ix = _index("BV650 - CD8a", "APC - CD8b", "CD4 FITC")
    with pytest.raises(MissingDimensionError) as info:
        ix.column("CD8")
    assert not isinstance(info.value, AmbiguousMarkerError)
    msg = str(info.value)
    assert "has no channel or marker 'CD8'" in msg
    assert "near misses: FL1-A (BV650 - CD8a), FL2-A (APC - CD8b)" in msg
    assert "markers: {CD8: CD8a}" in msg
    assert "FL3-A (CD4 FITC)" in msg  # the inventory


def test_explicit_mapping_to_marker_or_channel():
    ix = MarkerIndex(
        ["FSC-A", "FL1-A", "FL2-A"], ["", "BV650 - CD8a", "APC - CD8b"], {"CD8": "CD8a"}
    )
    assert ix.column("CD8") == 1
    ix = MarkerIndex(
        ["FSC-A", "FL1-A", "FL2-A"], ["", "BV650 - CD8a", "APC - CD8b"], {"CD8": "FL2-A"}
    )
    assert ix.column("CD8") == 2
    # the mapping names a marker the sample lacks: said so
    ix = MarkerIndex(["FSC-A", "FL1-A"], ["", "BV650 - CD8a"], {"CD8": "CD8x"})
    with pytest.raises(MissingDimensionError, match="markers maps it to 'CD8x'"):
        ix.column("CD8")


def test_resolution_happens_once_per_name(monkeypatch):
    ix = _index("BV785 - CD3")
    calls = []
    find = ix._find
    monkeypatch.setattr(ix, "_find", lambda name: calls.append(name) or find(name))
    assert [ix.column("CD3") for _ in range(5)] == [1] * 5
    assert calls == ["CD3"]


def test_values_come_from_the_resolved_column(tmp_path):
    rng = np.random.default_rng(1)
    events = rng.uniform(0, 100, size=(2000, 4))
    sample = Events(
        events, ["FSC-A", "FL1-A", "FL2-A", "FL3-A"], ["", "CD3 FITC", "CD4-PE", "HLA DR"]
    )
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            """
            compensation: uncompensated
            populations:
              - name: T
                gate: {range: {dimension: CD3, min: 40}}
              - name: CD4 T
                parent: T
                gate: {range: {dimension: cd4, min: 60}}
              - name: DR
                gate: {range: {dimension: HLA-DR, max: 20}}
            """
        )
    )
    result = Strategy.load(path).apply(sample)
    t = events[:, 1] >= 40
    assert result.count("T") == np.count_nonzero(t)
    assert result.count("CD4 T") == np.count_nonzero(t & (events[:, 2] >= 60))
    assert result.count("DR") == np.count_nonzero(events[:, 3] < 20)
    assert result.resolved == {"CD3": "FL1-A", "cd4": "FL2-A", "HLA-DR": "FL3-A"}


# --- mapping files --------------------------------------------------------------------------------


def test_markers_yaml_file_both_forms(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("CD8: CD8a\nHLA-DR: MHC II\n")
    b = tmp_path / "b.yaml"
    b.write_text("markers:\n  CD8: CD8a\n")
    assert load_markers(a) == {"CD8": "CD8a", "HLA-DR": "MHC II"}
    assert load_markers(b) == {"CD8": "CD8a"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- CD8\n- CD8a\n")
    with pytest.raises(StrategyError, match="bad.yaml: a marker mapping is 'NAME: MARKER'"):
        load_markers(bad)
    bad.write_text("CD8: [CD8a, CD8b]\n")
    with pytest.raises(StrategyError, match="must map to one marker or channel"):
        load_markers(bad)
    with pytest.raises(StrategyError, match="marker mapping not found"):
        load_markers(tmp_path / "none.yaml")


# --- the OMIP-021 files -------------------------------------------------------------------------


def test_omip021_without_mapping_names_the_near_misses(omip_strategy, donors):
    with pytest.raises(MissingDimensionError) as info:
        Strategy.load(omip_strategy).apply(donors["Donor1"])
    msg = str(info.value)
    assert "has no channel or marker 'CD8' (for CD4+, CD8+; near misses: " in msg
    assert "585/15Violet-A (BV650 - CD8a), 670/14Red-A (APC - CD8b)" in msg
    assert "markers: {CD8: CD8a}" in msg
    # only CD8 is missing: every other marker name was found in its instrument label
    assert msg.count("has no channel or marker") == 1 and "'CD3'" not in msg


def test_omip021_gated_by_marker_names(omip_strategy, donors):
    st_ = Strategy.load(omip_strategy)
    for name, sample in donors.items():
        r = st_.apply(sample, markers={"CD8": "CD8a"})
        assert r.resolved == RESOLVED, name
        c = r.counts()
        lymph, live, t = (
            c["lymphocytes"],
            c["lymphocytes/live"],
            c["lymphocytes/live/T cells"],
        )
        cd4, cd8 = c["lymphocytes/live/T cells/CD4+"], c["lymphocytes/live/T cells/CD8+"]
        assert 2000 < lymph < 3500  # of 5,000 events
        assert live > 0.95 * lymph  # few dead cells among scatter lymphocytes
        assert 0.55 < t / live < 0.85  # T cells: most PBMC lymphocytes
        assert cd4 + cd8 > 0.9 * t and 1.5 < cd4 / cd8 < 2.5  # CD4:CD8 of a healthy donor
        assert 0.3 < c["lymphocytes/live/T cells/CD4+/CD4 CD45RA+"] / cd4 < 0.8
    d1 = st_.apply(donors["Donor1"], markers={"CD8": "CD8a"}).counts().to_dict()
    assert list(d1.values()) == [2603, 2574, 1906, 1172, 610, 565]


def test_sample_column_finds_instrument_labels(donors):
    d1 = donors["Donor1"]
    assert d1.index("CD3") == 9 and d1.index("cd45ra") == 14 and d1.index("FSC-A") == 0
    assert np.array_equal(d1.column("Viability"), d1.events[:, 5])
    with pytest.raises(KeyError, match="no channel or marker named 'CD8'"):
        d1.index("CD8")


def test_omip021_mapping_to_the_other_cd8_changes_the_channel(omip_strategy, donors, tmp_path):
    r = Strategy.load(omip_strategy).apply(donors["Donor1"], markers={"CD8": "CD8b"})
    assert r.resolved["CD8"] == "670/14Red-A"
    mapping = tmp_path / "markers.yaml"  # a YAML file does as well
    mapping.write_text("markers:\n  CD8: APC - CD8b\n")
    r = Strategy.load(omip_strategy).apply(donors["Donor1"], markers=mapping)
    assert r.resolved["CD8"] == "670/14Red-A"


def test_default_strategy_finds_the_instrument_labels(donors):
    """data/strategies/T.yaml on an OMIP-021 file: CD3, CD4, CD45RA and CCR7 are found in the
    instrument's labels; only what the panel lacks is missing (and CD8, with its near misses)."""
    from cytowhim.resources import data_path

    with pytest.raises(MissingDimensionError) as info:
        Strategy.load(data_path("strategies", "T.yaml")).apply(donors["Donor1"])
    msg = str(info.value).split("; it has:")[0]
    for absent in ("CD45", "CD8", "CD62L", "CD56", "CD19"):
        assert f"'{absent}' (for" in msg, absent
    for found in ("CD3", "CD4", "CD45RA", "CCR7"):
        assert f"'{found}' (for" not in msg, found


def test_cli_gate_omip021_with_markers_file(omip_strategy, tmp_path, capsys):
    mapping = tmp_path / "markers.yaml"
    mapping.write_text("CD8: CD8a\n")
    code = main(["gate", str(DONOR1), "-s", str(omip_strategy), "--markers", str(mapping)])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "# markers: Viability -> 525/50Violet-A (L/D Aqua - Viability), CD3 -> 670/30Violet-A "
        in out
    )
    assert "CD8 -> 585/15Violet-A (BV650 - CD8a)" in out
    assert " 1906 " in out and " 1172 " in out  # T cells, CD4+
    # --out: the channels each population's gate read, in the CSV
    code = main(
        ["gate", str(DONOR1), str(DONOR2), "-s", str(omip_strategy), "--markers", str(mapping)]
        + ["--out", str(tmp_path / "out")]
    )
    assert code == 0
    table = pd.read_csv(tmp_path / "out" / "Donor1.populations.csv").set_index("name")
    assert table.loc["T cells", "channels"] == "670/30Violet-A"
    assert table.loc["CD4+", "channels"] == "780/60Red-A; 585/15Violet-A"
    assert table.loc["lymphocytes", "channels"] == "FSC-A; SSC-A"
    assert table.loc["T cells", "count"] == 1906


def test_cli_gate_without_mapping_says_how_to_map(omip_strategy, capsys):
    code = main(["gate", str(DONOR1), "-s", str(omip_strategy)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Donor1.fcs has no channel or marker 'CD8'" in err and "markers: {CD8: CD8a}" in err


def test_cli_gate_bad_markers_file_is_usage_error(omip_strategy, tmp_path, capsys):
    bad = tmp_path / "m.yaml"
    bad.write_text("[CD8]\n")
    assert main(["gate", str(DONOR1), "-s", str(omip_strategy), "--markers", str(bad)]) == 2
    assert "m.yaml: a marker mapping" in capsys.readouterr().err


# --- panels and cytowhim run ----------------------------------------------------------------------


def _panel(tmp_path, strategy, tube_markers: str = "", global_markers: str = ""):
    path = tmp_path / "panels.yaml"
    path.write_text(
        f"base_populations: {{lymphocytes: ALC}}\n{global_markers}"
        f"tubes:\n  T:\n    strategy: {strategy}\n{tube_markers}"
    )
    return path


def _manifest(tmp_path):
    path = tmp_path / "manifest.csv"
    rows = [
        f"{DONOR1},D1,P1,baseline,T,6000,3500,1800,450",
        f"{DONOR2},D2,P2,baseline,T,6500,3800,2000,500",
    ]
    path.write_text("file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC\n" + "\n".join(rows))
    return path


def test_panel_markers_global_per_tube_and_override(tmp_path, omip_strategy):
    from cytowhim.panels import PanelError, Panels

    path = _panel(
        tmp_path,
        omip_strategy,
        tube_markers="    markers: {CD8: CD8a}\n",
        global_markers="markers: {CD8: CD8b, CD4: CD4}\n",
    )
    panels = Panels.load(path)
    assert panels.markers_for("T") == {"CD8": "CD8a", "CD4": "CD4"}  # the tube's over global
    assert panels.markers_for("B") == {"CD8": "CD8b", "CD4": "CD4"}
    over = panels.with_markers({"CD8": "670/14Red-A"}).with_strategies({"B": str(omip_strategy)})
    assert over.markers_for("T")["CD8"] == "670/14Red-A"  # --markers over the panel file
    assert panels.markers_for("T")["CD8"] == "CD8a"  # the original is unchanged
    bad = _panel(tmp_path, omip_strategy, tube_markers="    markers: [CD8]\n")
    with pytest.raises(PanelError, match="tube T: markers: a marker mapping"):
        Panels.load(bad)


def test_run_with_panel_markers_and_with_markers_file(tmp_path, omip_strategy, capsys):
    manifest = _manifest(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the panel maps CD8 for the tube
        panel = _panel(tmp_path, omip_strategy, tube_markers="    markers: {CD8: CD8a}\n")
        out = tmp_path / "out"
        code = main(["run", str(manifest), "--panels", str(panel), "--out", str(out), "-q"])
        assert code == 0, capsys.readouterr().err
        table = pd.read_csv(out / "populations.csv")
        d1 = table[table.specimen == "D1"].set_index("population")
        assert d1.loc["CD8+", "events"] == 610 and d1.loc["T cells", "events"] == 1906
        # no mapping in the panel: every tube fails, naming the near misses
        plain = _panel(tmp_path, omip_strategy)
        code = main(["run", str(manifest), "--panels", str(plain), "--out", str(out), "-q"])
        assert code == 1
        assert "markers: {CD8: CD8a}" in capsys.readouterr().err
        # --markers FILE does it too, and is recorded for cytowhim report
        mapping = tmp_path / "markers.yaml"
        mapping.write_text("CD8: CD8a\n")
        argv = ["run", str(manifest), "--panels", str(plain), "--out", str(out), "-q"]
        code = main([*argv, "--markers", str(mapping)])
        assert code == 0, capsys.readouterr().err
        again = pd.read_csv(out / "populations.csv")
        assert again.set_index(["specimen", "population"]).loc[("D2", "CD8+"), "events"] > 0
        import json

        assert json.loads((out / "run.json").read_text())["markers"] == {"CD8": "CD8a"}
        from cytowhim.report import load_run

        assert load_run(out).panels.markers_for("T") == {"CD8": "CD8a"}


def test_bundled_example_unchanged():
    """Nothing that resolved before changes: the bundled example's markers are exact names."""
    sample = cw.read_fcs(REPO / "data" / "examples" / "example_tbnk.fcs")
    ix = MarkerIndex(sample.channels, sample.markers)
    for j, m in enumerate(sample.markers):
        if m:
            assert ix.column(m) == j
    for j, c in enumerate(sample.channels):
        assert ix.column(c) == j


def test_near_misses_are_variants_not_other_markers():
    """CD4 missing from a file with CD45: 'map CD4 to CD45' was offered (a different marker)."""
    sample = cw.Sample(
        events=np.zeros((3, 3), dtype=np.float32),
        channels=["FL1-A", "FL2-A", "FL3-A"],
        markers=["CD45", "CD8a", "CD14"],
    )
    strategy = Strategy(
        [
            Population("a", RectangleGate((Dimension("CD4"),), (0.0,), (None,))),
            Population("b", RectangleGate((Dimension("CD8"),), (0.0,), (None,))),
        ]
    )
    with pytest.raises(MissingDimensionError) as info:
        strategy.apply(sample)
    text = str(info.value)
    assert "CD45" not in text.split("it has:")[0]
    assert "near misses: FL2-A (CD8a)" in text

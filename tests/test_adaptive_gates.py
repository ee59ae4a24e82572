"""Data-driven gates: valleys, singlets, scatter clusters, fall-backs that say so, and overrides."""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw
from cytowhim.cli import main
from cytowhim.resources import data_path
from cytowhim.simulate.cohort import specimens
from cytowhim.simulate.panels import PANELS
from cytowhim.simulate.tube import DOUBLET, Drift, simulate_tube
from gating import Dimension, GatingError, Population, Strategy
from gating.adaptive import SingletGate, find_valley
from gating.errors import GatingWarning
from gating.overrides import load_overrides
from gating.yaml_format import strategy_to_dict


def test_valley_between_two_populations():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.25, 0.04, 9000), rng.normal(0.7, 0.05, 1000)])
    t = find_valley(x, (0.3, 0.65))
    assert 0.38 < t < 0.55
    assert np.count_nonzero(x >= t) == pytest.approx(1000, abs=5)


def test_no_valley_in_one_population_or_a_sliver():
    rng = np.random.default_rng(1)
    assert find_valley(rng.normal(0.4, 0.08, 10000), (0.3, 0.6)) is None
    sliver = np.concatenate([rng.normal(0.25, 0.04, 10000), rng.normal(0.7, 0.02, 5)])
    assert find_valley(sliver, (0.3, 0.65)) is None  # 0.05 % on one side: not a population


def _tube(tube="T", n=30_000, seed=3):
    rng = np.random.default_rng(seed)
    spec = specimens("healthy", rng, 1)[0]
    panel = PANELS[tube]
    drift = Drift.draw(rng, [m for _, m in panel.fluorescence], 0.3)
    events, labels = simulate_tube(panel, spec.tube_counts(tube), n, rng, drift)
    spill = pd.DataFrame(
        panel.spillover(), index=panel.fluorescence_channels, columns=panel.fluorescence_channels
    )
    sample = cw.Sample(
        events=events,
        channels=panel.channels,
        markers=panel.markers,
        spillover=spill,
        path=f"sim_{tube}.fcs",
    )
    return sample, labels


def test_singlet_gate_drops_doublets_keeps_singlets():
    sample, labels = _tube()
    st = Strategy([Population("singlets", SingletGate((Dimension("FSC-A"), Dimension("FSC-H"))))])
    r = st.apply(sample)
    m = r.mask("singlets")
    doublet = labels == DOUBLET
    cells = ~doublet & (labels != "debris")
    assert np.count_nonzero(m & doublet) < 0.05 * np.count_nonzero(doublet)
    assert np.count_nonzero(m & cells) > 0.995 * np.count_nonzero(cells)
    assert r.geometry()["singlets"]["gate"] == "polygon"  # resolved geometry is recorded


def _write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_no_valley_without_fallback_fails_that_population_naming_the_gate(tmp_path):
    sample, _ = _tube()
    path = _write(
        tmp_path,
        """
        transforms: {fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}}
        populations:
          - name: CD3 split
            gate: {threshold: {dimension: CD3, transform: fluor, search: [0.9, 0.95]}}
    """,
        "s.yaml",
    )
    with pytest.warns(GatingWarning) as caught:
        result = Strategy.load(path).apply(sample)
    msg = " ".join(str(w.message) for w in caught)
    assert "s.yaml" in msg and "sim_T.fcs" in msg and "'CD3 split'" in msg
    assert "no density valley for CD3" in result.failed["CD3 split"]
    assert result.counts().isna().tolist() == [True]
    with pytest.raises(GatingError, match="'CD3 split' was not gated.*no density valley"):
        result.count("CD3 split")


def test_a_failed_gate_leaves_the_rest_of_the_tube_reported(tmp_path):
    """Issue 12: one gate that finds no valley used to abort the whole sample. Now it fails its
    population, the descendants and booleans over it; every other population is gated as if the
    failing one were not in the strategy."""
    sample, _ = _tube()
    good = """
        transforms: {fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}}
        populations:
          - name: lymphs
            gate: {rectangle: {dimensions: [FSC-A, SSC-A], min: [30000, 0], max: [90000, 30000]}}
          - name: CD3+
            parent: lymphs
            gate: {threshold: {dimension: CD3, transform: fluor, search: [0.3, 0.75]}}
          - name: CD4+
            parent: CD3+
            gate: {threshold: {dimension: CD4, transform: fluor, search: [0.3, 0.75]}}
    """
    bad = """
          - name: CD8 (no valley here)
            parent: CD3+
            gate: {threshold: {dimension: CD8, transform: fluor, search: [0.95, 0.99]}}
          - name: CD8 child
            parent: CD8 (no valley here)
            gate: {rectangle: {dimensions: [CD4], transform: fluor, min: [0.5], max: [null]}}
          - name: CD4 or CD8
            parent: CD3+
            gate: {or: [CD4+, CD8 (no valley here)]}
          - name: after
            parent: CD4+
            gate: {quantile: {dimension: SSC-A, lower: 0.1, upper: 0.9}}
    """
    reference = Strategy.load(_write(tmp_path, good, "good.yaml")).apply(sample).counts()
    with pytest.warns(GatingWarning, match="'CD8 \\(no valley here\\)': not gated"):
        result = Strategy.load(_write(tmp_path, good + bad, "bad.yaml")).apply(sample)
    counts = result.counts()
    for path, n in reference.items():
        assert counts[path] == n  # lymphs, CD3+, CD4+ as without the failing gate
    assert counts["lymphs/CD3+/CD4+/after"] > 0
    assert set(result.failed) == {"CD8 (no valley here)", "CD8 child", "CD4 or CD8"}
    assert "no density valley for CD8" in result.failed["CD8 (no valley here)"]
    assert result.failed["CD8 child"] == "its parent 'CD8 (no valley here)' was not gated"
    assert result.failed["CD4 or CD8"] == "population 'CD8 (no valley here)' was not gated"
    table = result.stats()
    row = table.set_index("name").loc["CD8 child"]
    assert row["count"] is pd.NA and np.isnan(row["percent_of_parent"])
    assert table.set_index("name").loc["CD4+", "failed"] == ""
    with pytest.raises(GatingError, match="not gated"):
        result.frozen()


def test_fallback_is_used_and_reported(tmp_path):
    sample, _ = _tube()
    path = _write(
        tmp_path,
        """
        transforms: {fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}}
        populations:
          - name: CD3+
            gate: {threshold: {dimension: CD3, transform: fluor, search: [0.9, 0.95],
                               fallback: 0.5}}
    """,
        "s.yaml",
    )
    with pytest.warns(GatingWarning, match="used the fallback threshold 0.5"):
        r = Strategy.load(path).apply(sample)
    assert r.geometry()["CD3+"]["min"] == [0.5]
    assert any("CD3+" in n and "fallback" in n for n in r.notes)


def test_optional_scatter_population_left_empty_with_a_note(tmp_path):
    sample, _ = _tube()
    path = _write(
        tmp_path,
        """
        populations:
          - scatter:
              x: FSC-A
              y: SSC-A
              populations:
                lymphocytes: [62000, 11000]
                basophils: {at: [9000, 250000], required: false}
    """,
        "s.yaml",
    )
    with pytest.warns(GatingWarning, match="population left empty"):
        r = Strategy.load(path).apply(sample)
    assert r.count("basophils") == 0 and r.count("lymphocytes") > 1000
    assert any("basophils" in n for n in r.notes)


def test_default_strategies_round_trip_through_yaml(tmp_path):
    for tube in ("B", "mono"):  # T's scatter block is also there; checked through B and mono
        st = Strategy.load(data_path("strategies", f"{tube}.yaml"))
        assert len(st) > 8
        assert {type(p.gate).__name__ for p in st} >= {
            "ThresholdGate",
            "SingletGate",
            "ScatterClusterGate",
        }


def test_override_pins_a_gate_for_one_file_and_is_recorded(tmp_path, capsys):
    sample, _ = _tube()
    fcs = tmp_path / "tube_T.fcs"
    cw.write_fcs(fcs, sample)
    strategy = data_path("strategies", "T.yaml")
    overrides = _write(
        tmp_path,
        """
        tube_T.fcs:
          CD4 central memory:
            reason: shallow CCR7 valley, pinned after review (JD)
            gate:
              rectangle: {dimensions: [CCR7, CD62L], transform: fluor,
                          min: [0.45, 0.5], max: [null, null]}
        other.fcs:
          T cells:
            gate: {range: {dimension: CD3, transform: fluor, min: 0.1}}
    """,
        "overrides.yaml",
    )
    out = tmp_path / "out"
    code = main(
        [
            "gate",
            str(fcs),
            "--strategy",
            str(strategy),
            "--overrides",
            str(overrides),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pd.read_csv(out / "tube_T.populations.csv").set_index("name")
    assert (
        table.loc["CD4 central memory", "pinned"] == "shallow CCR7 valley, pinned after review (JD)"
    )
    assert table["pinned"].isna().sum() == len(table) - 1  # only that one is pinned

    st = Strategy.load(strategy)
    pins = load_overrides(overrides, st)["tube_T.fcs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = st.apply(cw.read_fcs(fcs))
        pinned = st.pin(pins).apply(cw.read_fcs(fcs))
    # the pinned rectangle, computed by hand on the parent (CD4 memory) events
    gate = pinned.gates["CD4 central memory"]
    ev = pinned.evaluator
    parent = np.flatnonzero(pinned.mask("CD4 memory"))
    ccr7, cd62l = (ev.values(d, parent) for d in gate.dimensions)
    expected = np.count_nonzero((ccr7 >= 0.45) & (cd62l >= 0.5))
    assert pinned.count("CD4 central memory") == expected
    assert pinned.geometry()[
        "singlets/CD45+ leukocytes/lymphocytes/T cells/CD4+ T cells/CD4 memory/CD4 central memory"
    ]["pinned"].startswith("shallow")
    assert base.count("T cells") == pinned.count("T cells")


def test_override_for_unknown_population_is_named(tmp_path):
    st = Strategy.load(data_path("strategies", "T.yaml"))
    bad = _write(
        tmp_path,
        """
        a.fcs:
          CD99 cells:
            gate: {range: {dimension: CD3, min: 1}}
    """,
        "o.yaml",
    )
    with pytest.raises(Exception, match=r"o.yaml: a.fcs: population 'CD99 cells' is not in"):
        load_overrides(bad, st)


def test_adaptive_yaml_round_trip(tmp_path):
    path = _write(
        tmp_path,
        """
        transforms: {fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}}
        populations:
          - name: singlets
            gate: {singlets: {area: FSC-A, height: FSC-H, width: 5}}
          - name: CD3+
            parent: singlets
            gate: {threshold: {dimension: CD3, transform: fluor, search: [0.3, 0.7],
                               fallback: 0.5, prefer: lowest}}
          - name: bright
            parent: singlets
            gate: {tail: {dimension: CD3, transform: fluor, k: 4}}
          - name: top
            parent: singlets
            gate: {quantile: {dimension: SSC-A, lower: 0.9}}
          - quadrant: {parent: CD3+, x: CD4, y: CD8, transform: fluor, at: auto,
                       populations: {CD4+: "+-"}}
    """,
        "a.yaml",
    )
    st = Strategy.load(path)
    st.to_yaml(tmp_path / "b.yaml")
    again = Strategy.load(tmp_path / "b.yaml")
    assert strategy_to_dict(again) == strategy_to_dict(st)
    sample, _ = _tube()
    a, b = st.apply(sample), again.apply(sample)
    assert a.counts().equals(b.counts())


SCATTER = """
    compensation: none
    populations:
      - scatter:
          x: FSC-A
          y: SSC-A
          {shape}
          populations:
            lymphocytes: [62000, 11000]
            monocytes: [98000, 42000]
            granulocytes: [112000, 135000]
"""


def test_scatter_block_can_resolve_to_a_polygon_that_exports_exactly(tmp_path):
    """Issue 12: the scatter mixture as a standard geometry. With ``shape: polygon`` each scatter
    population resolves to a polygon tracing its mixture region: the same populations within
    0.5 % of the mixture's counts, and the frozen strategy, written as Gating-ML and read back,
    gives the same counts."""
    from gating import PolygonGate

    sample, _ = _tube(n=40_000)
    mixture = Strategy.load(_write(tmp_path, SCATTER.format(shape=""), "m.yaml")).apply(sample)
    st = Strategy.load(_write(tmp_path, SCATTER.format(shape="shape: polygon"), "p.yaml"))
    polygon = st.apply(sample)
    for name in ("lymphocytes", "monocytes", "granulocytes"):
        assert type(polygon.gates[name]) is PolygonGate
        a, b = mixture.count(name), polygon.count(name)
        assert abs(a - b) <= 0.005 * a, (name, a, b)
    frozen = polygon.frozen()
    frozen.to_gatingml(tmp_path / "f.xml")
    again = Strategy.from_gatingml(tmp_path / "f.xml").apply(sample)
    assert again.counts().to_dict() == polygon.counts().to_dict()
    assert strategy_to_dict(st)["populations"][0]["scatter"]["shape"] == "polygon"
    with pytest.raises(Exception, match="scatter shape must be 'mixture' or 'polygon'"):
        Strategy.load(_write(tmp_path, SCATTER.format(shape="shape: circle"), "bad.yaml"))

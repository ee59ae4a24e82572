"""The FlowKit bridge (``cytowhim.flowkit``): samples and strategies to FlowKit and back.

Round trips keep the events (identical arrays, dtype included, on files whose parameters are
stored linearly; identical linear values, what gating uses, on every file) and the counts
(identical, population by population), and FlowKit gating a bridged sample with a bridged strategy
finds the same events as cytowhim.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import cytowhim as cw
from cytowhim.flowkit import (
    from_flowkit_sample,
    from_flowkit_strategy,
    to_flowkit_sample,
    to_flowkit_strategy,
)
from gating import Strategy, StrategyError, read_strategy

from .conftest import CORPUS, REPO

fk = pytest.importorskip("flowkit")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

CORPUS_FILES = [
    CORPUS / "flowjo/cytopipeline_omip021/Donor1.fcs",  # float32, '/' in channel names
    CORPUS / "fcs/flowcal/test/Data004.fcs",  # BD SPILL
    CORPUS / "fcs/flowio/100715.fcs",
]

# A fixed strategy naming markers, with the gates FlowKit has: range, rectangle, polygon, ellipse,
# boolean with a complemented operand, on logicle and raw scales, compensated with the file's own.
FIXED = """
name: fixed
compensation: FCS
transforms:
  fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}
populations:
  - name: cells
    gate: {polygon: {x: FSC-A, y: SSC-A, vertices: [[3e4, 0], [1.6e5, 0], [1.6e5, 6e4], [3e4, 6e4]]}}
  - name: CD3+
    parent: cells
    gate: {range: {dimension: CD3, transform: fluor, min: 0.5}}
  - name: CD4+CD8-
    parent: CD3+
    gate: {rectangle: {dimensions: [CD4, CD8], transform: fluor, min: [0.5, null], max: [null, 0.5]}}
  - name: CD45 ellipse
    parent: cells
    gate: {ellipse: {dimensions: [CD45, SSC-A], mean: [25000, 11000],
                     covariance: [[1.0e8, 0], [0, 2.5e7]], distance_square: 4}}
  - name: CD3+ not CD4+CD8-
    parent: cells
    gate: {and: [CD3+, {not: CD4+CD8-}]}
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    from cytowhim.simulate import simulate

    out = tmp_path_factory.mktemp("bridge")
    simulate(out, "whim-trial", seed=20261204, events=(30_000, 40_000))
    return out / "P1-baseline_T.fcs"


@pytest.fixture(scope="module")
def sample(sim) -> cw.Sample:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cw.read_fcs(sim)


def read(path: Path) -> cw.Sample:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cw.read_fcs(path)


# --------------------------------------------------------------------------- samples


def test_sample_round_trip_is_identical(sample):
    fs = to_flowkit_sample(sample)
    assert fs.id == Path(sample.path).name and fs.event_count == sample.n_events
    back = from_flowkit_sample(fs)
    assert back.events.dtype == sample.events.dtype
    assert np.array_equal(back.events, sample.events)  # Time too: the time step undone exactly
    assert back.channels == sample.channels and back.markers == sample.markers
    assert back.keywords == sample.keywords
    assert back.spillover.equals(sample.spillover)
    for j in range(sample.n_parameters):
        assert np.array_equal(back.linear_values(j), sample.linear_values(j))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_files_round_trip(path):
    sample = read(path)
    back = from_flowkit_sample(to_flowkit_sample(sample))
    assert back.channels == sample.channels and back.markers == sample.markers
    assert np.array_equal(back.events.astype(float), sample.events.astype(float))
    for j in range(sample.n_parameters):
        assert np.array_equal(back.linear_values(j), sample.linear_values(j), equal_nan=True)
    if sample.spillover is not None:
        assert np.array_equal(back.spillover.to_numpy(), sample.spillover.to_numpy())


def test_unpreprocessed_flowkit_sample_keeps_stored_values(sample):
    fs = to_flowkit_sample(sample, sample_id="x.fcs", preprocess=False)
    assert fs.id == "x.fcs" and not fs.is_preprocessed
    back = from_flowkit_sample(fs)
    assert np.array_equal(back.events, sample.events) and back.keywords == sample.keywords


def test_flowkit_sample_from_a_file_comes_over_as_cytowhim_reads_it(sim, sample):
    back = from_flowkit_sample(fk.Sample(str(sim)))
    assert np.array_equal(back.events, sample.events) and back.channels == sample.channels


# --------------------------------------------------------------------------- strategies


def _fk_masks(gs, fk_sample, names) -> dict[str, np.ndarray]:
    res = gs.gate_sample(fk_sample)
    return {n: np.asarray(res.get_gate_membership(n), dtype=bool) for n in names}


def test_frozen_default_strategy_gates_the_same_in_flowkit(sample):
    result = read_strategy(REPO / "data/strategies/T.yaml").apply(sample)
    frozen = result.frozen()
    gs = to_flowkit_strategy(frozen)
    theirs = _fk_masks(gs, to_flowkit_sample(sample), [p.name for p in frozen])
    for p in frozen:
        assert np.array_equal(theirs[p.name], result.masks[p.name]), p.name

    # and back from FlowKit: the same tree, the same counts
    back = from_flowkit_strategy(gs)
    assert sorted((p.name, p.parent or "") for p in back) == sorted(
        (p.name, p.parent or "") for p in frozen
    )
    again = back.apply(from_flowkit_sample(to_flowkit_sample(sample))).counts()
    assert again[result.counts().index].equals(result.counts())


def test_fixed_strategy_with_markers_every_gate_kind(sample, tmp_path):
    path = tmp_path / "fixed.yaml"
    path.write_text(FIXED)
    strategy = Strategy.load(path)
    ours = strategy.apply(sample)
    gs = to_flowkit_strategy(strategy, sample=sample)  # markers resolved to the sample's channels
    dims = [d.id for d in gs.get_gate("CD4+CD8-").dimensions]
    assert dims == ["APC-H7-A", "APC-A"]  # CD4, CD8
    theirs = _fk_masks(gs, to_flowkit_sample(sample), [p.name for p in strategy])
    for p in strategy:
        assert ours.count(p.name) > 0, p.name
        assert np.array_equal(theirs[p.name], ours.mask(p.name)), p.name
    back = from_flowkit_strategy(gs)
    assert back.apply(sample).counts()[ours.counts().index].equals(ours.counts())


def test_data_driven_strategy_asks_for_frozen(sample):
    with pytest.raises(StrategyError, match=r"frozen\(\)"):
        to_flowkit_strategy(read_strategy(REPO / "data/strategies/T.yaml"))


def test_without_flowkit_the_message_says_what_to_install(monkeypatch, sample):
    monkeypatch.setitem(sys.modules, "flowkit", None)  # import flowkit now fails
    with pytest.raises(ImportError, match=r"pip install 'cytowhim\[flowkit\]'"):
        to_flowkit_sample(sample)

"""Review of the one-pass engine (shared fit draw, block-wise evaluation, failed populations).

Properties verified to hold (fixed gates give the same counts whatever the sample size and type,
failed gates fail only what depends on them, notes said once, determinism, frozen re-application),
and regression tests for the bugs the review found: a custom gate with its own ``classify`` taken
for a mixture; a root gate fitted on every event in the 'whole' row mode; a tail gate on values
without spread calling everything tail; the fitting draw made for strategies without
data-driven gates."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar
from unittest import mock

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw
import gating.evaluator as evaluator_module
from gating import Dimension, Population, Strategy, register_gate
from gating.adaptive import QuadrantThresholds, SingletGate, TailGate, ThresholdGate
from gating.clusters import ClusterGate, MixtureCutGate, MixtureRegion, ScatterClusterGate
from gating.errors import GatingError, GatingWarning
from gating.evaluator import FIT_EVENTS, MIN_FIT_EVENTS, _draw
from gating.gates import (
    BooleanGate,
    EllipsoidGate,
    Gate,
    PolygonGate,
    RectangleGate,
    make_registered,
)
from gating.transforms import Asinh

CH = ["FSC-A", "SSC-A", "FL1-A", "FL2-A"]
MK = ["", "", "CD3", "CD4"]
TR = {"asinh": Asinh()}


def _events(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fsc = rng.normal(50000, 8000, n)
    ssc = np.where(rng.random(n) < 0.7, rng.normal(20000, 4000, n), rng.normal(80000, 10000, n))
    cd3 = np.where(rng.random(n) < 0.6, rng.lognormal(np.log(5000), 0.3, n), rng.normal(0, 200, n))
    cd4 = np.where(rng.random(n) < 0.6, rng.lognormal(np.log(8000), 0.3, n), rng.normal(0, 200, n))
    return np.column_stack([fsc, ssc, cd3, cd4]).astype(np.float32)


def _scatter_events(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = rng.choice(3, n, p=[0.5, 0.15, 0.35])
    centres = np.array([[40000, 10000], [70000, 30000], [80000, 90000]])
    fsc = centres[k, 0] * np.exp(rng.normal(0, 0.08, n))
    ssc = centres[k, 1] * np.exp(rng.normal(0, 0.1, n))
    cd3 = np.where(rng.random(n) < 0.6, rng.lognormal(np.log(5000), 0.3, n), rng.normal(0, 200, n))
    cd4 = rng.normal(0, 200, n)
    return np.column_stack([fsc, ssc, cd3, cd4]).astype(np.float32)


def _sample(events: np.ndarray, **kw: Any) -> cw.Sample:
    return cw.Sample(events=events, channels=list(CH), markers=list(MK), **kw)


class _Plain:
    """A sample without linear_values (the 'events' row mode)."""

    def __init__(self, events: np.ndarray):
        self.events = events
        self.channels = list(CH)
        self.markers = list(MK)


class _Whole:
    """A sample whose linear_values come as whole columns (the 'whole' row mode)."""

    def __init__(self, events: np.ndarray):
        self.events = events
        self.channels = list(CH)
        self.markers = list(MK)

    def linear_values(self, j: int) -> np.ndarray:
        return self.events[:, j].astype(np.float64)


@dataclasses.dataclass(frozen=True)
class _FrozenGain:
    """A frozen dataclass sample whose linear values are the events times a gain."""

    events: np.ndarray
    channels: list
    markers: list
    gain: float = 2.0

    def linear_values(self, j: int) -> np.ndarray:
        return self.events[:, j].astype(np.float64) * self.gain


@dataclasses.dataclass(frozen=True)
class _FrozenNoLinear:
    events: np.ndarray
    channels: list
    markers: list


def _d(name: str, transform: str | None = None, comp: str = "uncompensated") -> Dimension:
    return Dimension(name, compensation=comp, transform=transform)


@register_gate("review_upper_quantile")
def _upper_quantile(values, q=0.9):
    return values[:, 0] >= np.quantile(values[:, 0], q)


@dataclasses.dataclass(frozen=True)
class _TopOfParent(Gate):
    """A custom gate that is not pointwise (decides from all its parent's events)."""

    kind: ClassVar[str] = "review_top"
    dimensions: tuple

    def contains(self, values: np.ndarray) -> np.ndarray:
        return values[:, 0] >= np.quantile(values[:, 0], 0.7)


_SEEN: dict[str, np.ndarray] = {}


@dataclasses.dataclass(frozen=True)
class _Recording(Gate):
    """A data-driven gate that records the values it is fitted on (median cut)."""

    kind: ClassVar[str] = "review_recording"
    dimensions: tuple
    tag: str = ""

    def resolve(self, values: np.ndarray) -> RectangleGate:
        _SEEN[self.tag] = values.copy()
        return RectangleGate(self.dimensions, (float(np.median(values[:, 0])),), (None,))

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)


def _apply(strategy: Strategy, sample: Any):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = strategy.apply(sample)
    return result, [str(w.message) for w in caught if issubclass(w.category, GatingWarning)]


def _fixed_strategy() -> Strategy:
    poly = ((40000.0, 0.0), (90000.0, 0.0), (90000.0, 40000.0), (40000.0, 30000.0))
    return Strategy(
        [
            Population("cells", RectangleGate((_d("FSC-A"),), (30000.0,), (None,))),
            Population("poly", PolygonGate((_d("FSC-A"), _d("SSC-A")), poly), parent="cells"),
            Population(
                "ell",
                EllipsoidGate(
                    (_d("CD3", "asinh"), _d("CD4", "asinh")),
                    (0.75, 0.78),
                    ((0.01, 0.0), (0.0, 0.01)),
                    4.0,
                ),
                parent="cells",
            ),
            Population("cd4", RectangleGate((_d("CD4", "asinh"),), (0.5,), (None,)), "poly"),
            Population("not4", BooleanGate("not", (("cd4", False),)), parent="poly"),
            Population("or", BooleanGate("or", (("ell", False), ("cd4", True))), parent="cells"),
            Population(
                "custom",
                make_registered("review_upper_quantile", (_d("SSC-A"),), {"q": 0.8}),
                parent="cells",
            ),
            Population("top", _TopOfParent((_d("CD3"),)), parent="cells"),
        ],
        transforms=TR,
    )


# --- fixed gates: the same counts on N events and on the same events repeated past FIT_EVENTS ----


@pytest.mark.parametrize("kind", ["sample", "plain", "frozen", "whole"])
def test_fixed_gates_identical_on_repeated_events(kind):
    small = _events(100_000, seed=1)
    big = np.tile(small, (3, 1))
    make = {
        "sample": _sample,
        "plain": _Plain,
        "frozen": lambda e: _FrozenGain(e, list(CH), list(MK), 1.0),
        "whole": _Whole,
    }[kind]
    r_small, _ = _apply(_fixed_strategy(), make(small))
    r_big, _ = _apply(_fixed_strategy(), make(big))
    assert (r_big.counts() == 3 * r_small.counts()).all()
    for name, mask in r_small.masks.items():
        assert np.array_equal(r_big.masks[name][: small.shape[0]], mask), name


def test_sample_kinds_agree_with_data_driven_gates_on_the_draw():
    """Frozen dataclass with linear_values, frozen dataclass and plain object without, and a
    cytowhim.Sample: the same linear values give the same gates and counts (same draw)."""
    events = np.tile(_events(100_000, seed=2), (3, 1))
    st = Strategy(
        [
            Population("cells", RectangleGate((_d("FSC-A"),), (60000.0,), (None,))),
            Population("cd3", ThresholdGate((_d("CD3", "asinh"),), search=(0.1, 0.9)), "cells"),
            Population("fix", RectangleGate((_d("CD4", "asinh"),), (0.5,), (None,)), "cd3"),
        ],
        transforms=TR,
    )
    results = [
        _apply(st, s)[0].counts()
        for s in (
            _FrozenGain(events, list(CH), list(MK), 2.0),
            _FrozenNoLinear(events * 2, list(CH), list(MK)),
            _Plain(events.astype(np.float64) * 2),
            _sample(events * 2),
        )
    ]
    for c in results[1:]:
        assert c.equals(results[0])


# --- where data-driven gates are fitted ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["sample", "plain"])
def test_fitted_on_the_shared_draw_or_on_a_rare_parents_own_events(kind):
    """Behind custom (not pointwise) gates and booleans: a gate is fitted on exactly the draw's
    events of its parent, or on all the parent's events when the draw holds < MIN_FIT_EVENTS."""
    base = _events(100_000, seed=5)
    big = np.concatenate([base, base[::-1], base[:60_000]])
    st = Strategy(
        [
            Population("cells", RectangleGate((_d("FSC-A"),), (30000.0,), (None,))),
            Population("top", _TopOfParent((_d("SSC-A"),)), parent="cells"),
            Population(
                "cust",
                make_registered("review_upper_quantile", (_d("CD3"),), {"q": 0.3}),
                parent="cells",
            ),
            Population("both", BooleanGate("and", (("top", False), ("cust", True))), "cells"),
            Population("fit1", _Recording((_d("CD4"),), "fit1"), parent="both"),
            Population("fit2", _Recording((_d("CD4"),), "fit2"), parent="cust"),
            Population("b2", BooleanGate("or", (("fit1", False), ("fit2", False))), "cells"),
            Population("fit3", _Recording((_d("FSC-A"),), "fit3"), parent="b2"),
        ]
    )
    _SEEN.clear()
    r, _ = _apply(st, _sample(big) if kind == "sample" else _Plain(big))
    rows = _draw(big.shape[0], "")
    sizes = {}
    for tag, parent, col in (("fit1", "both", 3), ("fit2", "cust", 3), ("fit3", "b2", 0)):
        m = r.mask(parent)
        expected = big[rows][m[rows], col].astype(np.float64)
        if expected.size < MIN_FIT_EVENTS:
            expected = big[m, col].astype(np.float64)
        sizes[tag] = expected.size
        got = _SEEN[tag][:, 0]
        assert np.array_equal(np.sort(got), np.sort(expected)), tag
    assert sizes["fit1"] > MIN_FIT_EVENTS > np.count_nonzero(r.mask("both")[rows])  # own events
    assert sizes["fit2"] <= FIT_EVENTS


def test_rare_parent_counts_and_thresholds_match_small_sample():
    """A parent of ~14,000 events in 300,000 (~9,300 in the draw) is fitted on its own events:
    the same events, repeated, give the same threshold as on the 100,000-event sample."""
    small = _events(100_000)
    st = Strategy(
        [
            Population("cells", RectangleGate((_d("FSC-A"),), (30000.0,), (None,))),
            Population("lymph", RectangleGate((_d("SSC-A"),), (None,), (45000.0,)), "cells"),
            Population("rare", RectangleGate((_d("FSC-A"),), (62000.0,), (None,)), "lymph"),
            Population("rare3", ThresholdGate((_d("CD3", "asinh"),), search=(0.1, 0.9)), "rare"),
        ],
        transforms=TR,
    )
    r_small, _ = _apply(st, _sample(small))
    r_big, _ = _apply(st, _sample(np.tile(small, (3, 1))))
    rows = _draw(3 * small.shape[0], "")
    assert np.count_nonzero(r_big.mask("rare")[rows]) < MIN_FIT_EVENTS
    assert r_big.count("rare/rare3") == 3 * r_small.count("rare/rare3")


# --- failed populations on the draw path ------------------------------------------------------------


def _failing_strategy() -> Strategy:
    return Strategy(
        [
            Population("cells", RectangleGate((_d("FSC-A"),), (30000.0,), (None,))),
            Population("bad", ThresholdGate((_d("FSC-A"),), search=(40000, 60000)), "cells"),
            Population("badchild", RectangleGate((_d("SSC-A"),), (None,), (45000.0,)), "bad"),
            Population(
                "badcustom",
                make_registered("review_upper_quantile", (_d("SSC-A"),), {"q": 0.8}),
                parent="bad",
            ),
            Population("badtop", _TopOfParent((_d("SSC-A"),)), parent="bad"),
            Population("cd3", ThresholdGate((_d("CD3", "asinh"),), search=(0.1, 0.9)), "cells"),
            Population("or", BooleanGate("or", (("bad", False), ("cd3", False))), "cells"),
            Population("notbad", BooleanGate("not", (("bad", False),)), "cells"),
            Population("after", ThresholdGate((_d("CD4", "asinh"),), search=(0.1, 0.9)), "cd3"),
        ],
        transforms=TR,
        source="review.yaml",
    )


@pytest.mark.parametrize("n_copies", [1, 3])
def test_failed_gate_fails_its_dependents_only(n_copies):
    events = np.tile(_events(100_000), (n_copies, 1))
    r, warned = _apply(_failing_strategy(), _sample(events))
    assert set(r.failed) == {"bad", "badchild", "badcustom", "badtop", "or", "notbad"}
    counts = r.counts()
    assert str(counts.dtype) == "Int64"
    assert counts[["cells/bad", "cells/bad/badchild", "cells/or"]].isna().all()
    assert counts["cells/cd3/after"] > 0 and counts["cells"] == r.count("cells")
    stats = r.stats()
    row = stats.set_index("name").loc["badtop"]
    assert pd.isna(row["count"]) and np.isnan(row["percent_of_parent"]) and row["failed"]
    with pytest.raises(GatingError, match="not gated"):
        r.mask("notbad")
    # one note and one warning for the failed gate, none for its dependents
    assert len(r.notes) == 1 and "'bad'" in r.notes[0] and "review.yaml" in r.notes[0]
    assert len(warned) == 1
    with pytest.raises(GatingError, match="not gated"):
        r.frozen()


def test_failed_gates_give_same_counts_small_and_repeated():
    small = _events(100_000)
    r1, _ = _apply(_failing_strategy(), _sample(small))
    r3, _ = _apply(_failing_strategy(), _sample(np.tile(small, (3, 1))))
    c1, c3 = r1.counts(), r3.counts()
    assert c1.isna().equals(c3.isna())
    fixed = ["cells"]
    assert (c3[fixed] == 3 * c1[fixed]).all()


# --- notes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["small", "sample", "plain"])
def test_no_spillover_note_said_once_with_gates_fitted_on_the_draw(kind):
    small = _events(100_000)
    big = np.tile(small, (3, 1))
    sample = {"small": _sample(small), "sample": _sample(big), "plain": _Plain(big)}[kind]
    st = Strategy(
        [
            Population("cells", RectangleGate((_d("FSC-A", comp="FCS"),), (30000.0,), (None,))),
            Population("rare", RectangleGate((_d("FSC-A"),), (66000.0,), (None,)), "cells"),
            Population(
                "cd3", ThresholdGate((_d("CD3", "asinh", "FCS"),), search=(0.1, 0.9)), "cells"
            ),
            Population(
                "rare3", ThresholdGate((_d("CD3", "asinh", "FCS"),), search=(0.1, 0.9)), "rare"
            ),
        ],
        transforms=TR,
        source="x.xml",
    )
    r, warned = _apply(st, sample)
    assert len(r.notes) == 1 and "no spillover matrix" in r.notes[0]
    assert warned == r.notes
    assert not r.failed


# --- mixtures: classified once per block for siblings, correctly -----------------------------------


def test_mixture_region_memo_siblings_different_chosen_and_parents():
    events = _scatter_events(250_000, seed=4)
    dims = (_d("FSC-A"), _d("SSC-A"))
    fitted = ScatterClusterGate(dims, ((40000, 10000), (70000, 30000), (80000, 90000)), 0, 4)
    values = events[:, :2].astype(np.float64)
    region = fitted.resolve(values)
    mk = dataclasses.replace
    st = Strategy(
        [
            Population("a", mk(region, chosen=(0,))),
            Population("b", mk(region, chosen=(1, 2))),
            Population("c", mk(region, chosen=(3,))),
            Population("half", RectangleGate((_d("FSC-A"),), (55000.0,), (None,))),
            Population("ha", mk(region, chosen=(0,)), parent="half"),
            Population("hb", mk(region, chosen=(1, 2)), parent="half"),
            Population("hd", mk(region, chosen=(1, 2), max_distance2=2.0), parent="half"),
            Population("hc", mk(region, chosen=(3,)), parent="half"),
        ]
    )
    r, _ = _apply(st, _sample(events))
    half = values[:, 0] >= 55000.0
    for name, parent in (("a", None), ("b", None), ("c", None), ("ha", half), ("hb", half)):
        expected = r.gates[name].contains(values)
        if parent is not None:
            expected &= parent
        assert np.array_equal(r.masks[name], expected), name
    hd = r.gates["hd"].contains(values) & half
    assert np.array_equal(r.masks["hd"], hd)
    assert r.count("hd") < r.count("hb")


def test_scatter_clusters_on_the_draw_freeze_and_reapply_identically():
    events = _scatter_events(250_000)
    targets = ((40000, 10000), (70000, 30000), (80000, 90000))
    dims = (_d("FSC-A"), _d("SSC-A"))
    st = Strategy(
        [
            Population("lymph", ScatterClusterGate(dims, targets, 0, components=4)),
            Population("mono", ScatterClusterGate(dims, targets, 1, components=4)),
            Population("gran", ScatterClusterGate(dims, targets, 2, components=4)),
            Population("cd3", ThresholdGate((_d("CD3", "asinh"),), search=(0.1, 0.9)), "lymph"),
        ],
        transforms=TR,
    )
    sample = _sample(events)
    r, _ = _apply(st, sample)
    values = events[:, :2].astype(np.float64)
    for name in ("lymph", "mono", "gran"):
        assert isinstance(r.gates[name], MixtureRegion)
        assert np.array_equal(r.mask(name), r.gates[name].contains(values))
    again, _ = _apply(st, _sample(events.copy()))
    assert again.counts().equals(r.counts())  # deterministic
    frozen, _ = _apply(r.frozen(), sample)
    assert frozen.counts().equals(r.counts())


# --- files, Gating-ML, determinism ------------------------------------------------------------------


def test_fcs_file_twice_same_counts_and_frozen_reapplies(tmp_path):
    small = _events(100_000, seed=3)
    raw = np.empty((300_000, 4), dtype=np.uint16)
    big = np.tile(small, (3, 1))
    raw[:, 0] = np.clip(big[:, 0] / 4, 0, 65535)
    raw[:, 1] = np.clip(big[:, 1] / 4, 0, 65535)
    raw[:, 2] = np.clip(np.log10(np.clip(big[:, 2], 1, None)) / 4 * 1024, 0, 1023)
    raw[:, 3] = np.clip(big[:, 3] + 500, 0, 65535) / 4
    keywords = {"$P3R": "1024", "$P3E": "4,1", "$P1G": "4", "$P2G": "4"}
    spill = pd.DataFrame(
        [[1.0, 0.1], [0.05, 1.0]], index=["FL1-A", "FL2-A"], columns=["FL1-A", "FL2-A"]
    )
    path = tmp_path / "big.fcs"
    cw.write_fcs(path, _sample(raw, keywords=keywords, spillover=spill))
    st = Strategy(
        [
            Population("cells", RectangleGate((_d("FSC-A"),), (1800.0,), (None,))),
            Population("cd3", ThresholdGate((_d("CD3", "asinh", "FCS"),), (0.1, 0.9)), "cells"),
            Population(
                "fix", RectangleGate((_d("CD4", "asinh", "FCS"),), (0.45,), (None,)), "cells"
            ),
            Population("both", BooleanGate("and", (("cd3", False), ("fix", False))), "cells"),
        ],
        transforms=TR,
    )
    s1, s2 = cw.read_fcs(path), cw.read_fcs(path)
    r1, _ = _apply(st, s1)
    r2, _ = _apply(st, s2)
    assert not r1.failed and r1.counts().equals(r2.counts())
    assert r1.gates["cd3"] == r2.gates["cd3"]
    frozen = r1.frozen()
    r3, _ = _apply(frozen, s1)
    assert r3.counts().tolist() == r1.counts().tolist()
    # the frozen strategy through Gating-ML, with a data-driven gate added under it
    frozen.to_gatingml(tmp_path / "frozen.xml")
    gml = Strategy.from_gatingml(tmp_path / "frozen.xml")
    r4, _ = _apply(gml, s1)
    assert sorted(r4.counts().tolist()) == sorted(r1.counts().tolist())
    parent = next(p.name for p in gml.populations if r4.count(p.name) == r1.count("cells"))
    extra = Strategy(
        [
            *gml.populations,
            Population(
                "cd4auto", ThresholdGate((_d("FL2-A", "asinh", "FCS"),), (0.1, 0.9)), parent
            ),
            Population(
                "cd4fixed", RectangleGate((_d("FL2-A", "asinh", "FCS"),), (0.45,), (None,)), parent
            ),
        ],
        transforms={**gml.transforms, **TR},
        compensations=gml.compensations,
    )
    r5, _ = _apply(extra, s1)
    r6, _ = _apply(extra, cw.read_fcs(path))
    assert not r5.failed and r5.counts().equals(r6.counts())


# --- bugs the review found (fixed; regression tests) ---------------------------------------------


def test_whole_mode_root_gate_fitted_on_at_most_fit_events():
    events = np.tile(_events(100_000), (3, 1))
    st = Strategy(
        [
            Population("root", _Recording((_d("FSC-A"),), "root")),
            Population("all", RectangleGate((_d("FSC-A"),), (-1e300,), (None,))),
            Population("child", _Recording((_d("FSC-A"),), "child"), parent="all"),
        ]
    )
    _SEEN.clear()
    r, _ = _apply(st, _Whole(events))
    assert r.count("all") == events.shape[0]
    assert _SEEN["child"].shape[0] == FIT_EVENTS
    assert _SEEN["root"].shape[0] <= FIT_EVENTS
    assert r.gates["root"] == r.gates["child"]


@pytest.mark.parametrize("keep", ["tail", "rest"])
def test_tail_gate_on_constant_values_does_not_call_everything_tail(keep):
    events = _events(5_000)
    events[:, 2] = 1000.0  # a channel with one value (detector off, clipped ...)
    st = Strategy(
        [Population("t", TailGate((_d("CD3", "asinh"),), keep=keep))],
        transforms=TR,
    )
    r, _ = _apply(st, _sample(events))
    assert "t" in r.failed or r.count("t") == (0 if keep == "tail" else 5_000)


def test_no_fit_draw_without_data_driven_gates():
    events = _events(FIT_EVENTS + 1000)
    with mock.patch.object(evaluator_module, "_draw", wraps=evaluator_module._draw) as spy:
        r, _ = _apply(_fixed_strategy(), _sample(events))
    assert r.count("cells") > 0
    assert spy.call_count == 0


# --- data-driven gates that cannot place themselves fail, never crash -----------------------------


@pytest.mark.parametrize(
    "gate",
    [
        ThresholdGate((_d("CD3", "asinh"),), search=(0.1, 0.9)),
        ThresholdGate((_d("CD3", "asinh"),), search=(0.1, 0.9), no_valley="mixture"),
        QuadrantThresholds((_d("CD3", "asinh"), _d("CD4", "asinh")), "++", per_half=True),
        TailGate((_d("CD3", "asinh"),), quantile=0.99, side="lower", keep="rest"),
        MixtureCutGate((_d("CD3", "asinh"),)),
        ClusterGate((_d("FSC-A"), _d("SSC-A")), at=(50000, 20000), components=2),
        ScatterClusterGate((_d("FSC-A"), _d("SSC-A")), ((50000, 20000), (50000, 80000)), 0, 2),
        SingletGate((_d("FSC-A"), _d("SSC-A"))),
    ],
    ids=lambda g: type(g).__name__,
)
@pytest.mark.parametrize("n_parent", [0, 1, 5])
def test_tiny_parent_fails_population_only(gate, n_parent):
    events = _events(3_000, seed=1)
    cut = 1e12 if n_parent == 0 else float(np.sort(events[:, 0])[-n_parent])
    st = Strategy(
        [
            Population("p", RectangleGate((_d("FSC-A"),), (cut,), (None,))),
            Population("g", gate, parent="p"),
            Population("ok", RectangleGate((_d("FSC-A"),), (0.0,), (None,))),
        ],
        transforms=TR,
    )
    r, _ = _apply(st, _sample(events))
    assert r.count("p") == n_parent
    assert "g" in r.failed or r.count("g") <= n_parent
    assert r.count("ok") == np.count_nonzero(events[:, 0] >= 0)


@dataclasses.dataclass(frozen=True)
class _Labeller(Gate):
    """A custom pointwise gate with a helper named ``classify`` (not a mixture)."""

    kind: ClassVar[str] = "review_labeller"
    pointwise: ClassVar[bool] = True
    dimensions: tuple
    label: int = 1

    def classify(self, values: np.ndarray) -> np.ndarray:
        return (values[:, 0] > 50000).astype(int)

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.classify(values) == self.label


def test_custom_pointwise_gate_with_a_classify_method():
    events = _events(1_000)
    r, _ = _apply(Strategy([Population("hi", _Labeller((_d("FSC-A"),)))]), _sample(events))
    assert r.count("hi") == np.count_nonzero(events[:, 0] > 50000)

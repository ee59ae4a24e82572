"""Options of the data-driven gates on crafted densities with a known answer (issue 12): a
shallow valley, a shoulder, no valley, three peaks, a bright tail, clusters, a corner.

Values are on the gate's own scale (no transform), 0..1 like a logicle or log axis."""

from __future__ import annotations

import math
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cytowhim as cw
from gating import Dimension, EllipsoidGate, GatingError, RectangleGate, Strategy
from gating.adaptive import (
    ClusterGate,
    MixtureCutGate,
    QuadrantThresholds,
    TailGate,
    ThresholdGate,
    find_valley,
)
from gating.clusters import mixture_cut
from gating.errors import GatingWarning
from gating.yaml_format import strategy_to_dict

X, Y = Dimension("x"), Dimension("y")
XF, YF = Dimension("x", "FCS"), Dimension("y", "FCS")  # as a YAML strategy names them


def mix(rng, parts: list[tuple[int, float, float]]) -> np.ndarray:
    """Normal components (n, mean, sd), shuffled."""
    x = np.concatenate([rng.normal(m, s, n) for n, m, s in parts])
    return rng.permutation(x)


def dip_ratio(parts) -> tuple[float, float]:
    """(where the true density is lowest between the two modes, its ratio to the lower mode)."""
    grid = np.linspace(0, 1, 4001)
    dens = sum(n / s * np.exp(-0.5 * ((grid - m) / s) ** 2) for n, m, s in parts)
    (_, m1, _), (_, m2, _) = parts[0], parts[1]
    between = (grid > m1) & (grid < m2)
    k = np.flatnonzero(between)[np.argmin(dens[between])]
    peaks = [dens[np.argmin(np.abs(grid - m))] for m in (m1, m2)]
    return float(grid[k]), float(dens[k] / min(peaks))


# --- threshold: depth, bandwidth, peaks, prefer ---------------------------------------------------

SHALLOW = [(60_000, 0.30, 0.07), (40_000, 0.52, 0.07)]


def test_shallow_valley_needs_a_settable_depth():
    rng = np.random.default_rng(1)
    x = mix(rng, SHALLOW)
    where, ratio = dip_ratio(SHALLOW)
    assert 0.6 < ratio < 0.8  # a dip that is clearly there, but shallow
    assert find_valley(x, (0.3, 0.6)) is None  # the default depth (0.5) refuses it
    t = find_valley(x, (0.3, 0.6), depth=0.85)
    assert t is not None and abs(t - where) < 0.02


def test_bandwidth_wider_than_the_gap_merges_the_peaks():
    rng = np.random.default_rng(2)
    parts = [(5_000, 0.35, 0.03), (5_000, 0.50, 0.03)]
    x = mix(rng, parts)
    t = find_valley(x, (0.36, 0.5))
    assert t is not None and abs(t - 0.425) < 0.015
    assert find_valley(x, (0.36, 0.5), bandwidth=0.08) is None
    assert abs(find_valley(x, (0.36, 0.5), bandwidth=0.01) - 0.425) < 0.015


THREE = [(50_000, 0.20, 0.04), (20_000, 0.45, 0.04), (30_000, 0.75, 0.04)]


def test_three_peaks_and_which_valley_to_prefer():
    """CD4: negative, dim (monocytes) and bright (T cells) peaks; the lab says which valley."""
    x = mix(np.random.default_rng(3), THREE)
    low = find_valley(x, (0.25, 0.7), peaks=3, prefer="lowest")
    high = find_valley(x, (0.25, 0.7), peaks=3, prefer="highest")
    assert abs(low - 0.325) < 0.02 and abs(high - 0.60) < 0.02
    # with only 2 peaks expected (negative and bright), the valley is the lowest point between
    # them: here the one below the bright peak (the dim population is the smaller one)
    assert abs(find_valley(x, (0.25, 0.7), peaks=2) - high) < 0.02
    with pytest.raises(GatingError, match="at least 2 peaks"):
        find_valley(x, (0.25, 0.7), peaks=1)


def _apply(gate, values: np.ndarray):
    """(resolved gate, membership) of one gate on a parent's values (events x dims)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GatingWarning)
        resolved = gate.resolve(values)
    return resolved, resolved.contains(values), [str(w.message) for w in caught]


SHOULDER = [(85_000, 0.30, 0.05), (15_000, 0.45, 0.07)]


def test_no_valley_fail_fallback_or_mixture():
    x = mix(np.random.default_rng(4), SHOULDER)[:, None]
    base = dict(dimensions=(X,), search=(0.3, 0.6))
    with pytest.raises(GatingError, match="no density valley for x between 0.3 and 0.6"):
        ThresholdGate(**base).resolve(x)
    gate, _, notes = _apply(ThresholdGate(**base, fallback=0.5), x)
    assert gate.mins == (0.5,) and "used the fallback threshold 0.5" in notes[0]
    gate, _, notes = _apply(ThresholdGate(**base, no_valley="mixture"), x)
    assert "posteriors cross" in notes[0] and 0.38 < gate.mins[0] < 0.46
    with pytest.raises(GatingError, match="needs a fallback"):
        ThresholdGate(**base, no_valley="fallback")
    with pytest.raises(GatingError, match="no_valley must be one of"):
        ThresholdGate(**base, no_valley="guess")


# --- mixture cut for shoulders --------------------------------------------------------------------


def true_crossing(parts) -> float:
    grid = np.linspace(parts[0][1], parts[1][1], 20001)
    logp = [math.log(n) - math.log(s) - 0.5 * ((grid - m) / s) ** 2 for n, m, s in parts]
    return float(grid[np.argmin(np.abs(logp[0] - logp[1]))])


def test_mixture_cut_finds_a_shoulder_where_there_is_no_valley():
    x = mix(np.random.default_rng(5), SHOULDER)
    assert find_valley(x, (0.3, 0.6), depth=0.9) is None  # a shoulder: no dip at all
    truth = true_crossing(SHOULDER)
    cut = mixture_cut(x, (0.3, 0.6))
    assert abs(cut - truth) < 0.015
    gate, inside, _ = _apply(MixtureCutGate((X,), search=(0.3, 0.6)), x[:, None])
    assert gate.mins == (cut,) and isinstance(gate, RectangleGate)
    # the positives it keeps: those of the positive component above the cut, give or take
    # the negatives beyond it (both from the true densities)
    from statistics import NormalDist

    (n0, m0, s0), (n1, m1, s1) = SHOULDER
    expected = n0 * (1 - NormalDist(m0, s0).cdf(cut)) + n1 * (1 - NormalDist(m1, s1).cdf(cut))
    assert abs(inside.sum() - expected) < 0.03 * expected


def test_mixture_cut_at_a_quantile_of_the_positives():
    parts = [(80_000, 0.30, 0.05), (20_000, 0.55, 0.06)]
    x = mix(np.random.default_rng(6), parts)
    cut = mixture_cut(x, quantile=0.05)
    (_, m1, s1) = parts[1]
    assert abs(cut - (m1 - 1.645 * s1)) < 0.01
    gate, _, notes = _apply(MixtureCutGate((X,), search=(0.8, 0.9), fallback=0.7), x[:, None])
    assert gate.mins == (0.7,) and "used the fallback threshold 0.7" in notes[0]
    with pytest.raises(GatingError, match="does not fall between 0.8 and 0.9"):
        MixtureCutGate((X,), search=(0.8, 0.9)).resolve(x[:, None])


# --- tail: either side, k or quantile, tail or rest -----------------------------------------------

DEAD = [(90_000, 0.20, 0.03), (10_000, 0.70, 0.05)]


def test_dye_negative_is_the_main_population_without_its_bright_tail():
    rng = np.random.default_rng(7)
    live = rng.normal(0.20, 0.03, 90_000)
    dead = rng.normal(0.70, 0.05, 10_000)
    x = np.concatenate([live, dead])[:, None]
    gate, inside, _ = _apply(TailGate((X,), k=4, side="upper", keep="rest"), x)
    assert gate.mins == (None,) and abs(gate.maxs[0] - (0.20 + 4 * 0.03)) < 0.01
    assert inside[:90_000].mean() > 0.999 and inside[90_000:].mean() < 0.001
    bright, inside, _ = _apply(TailGate((X,), k=4, side="upper"), x)
    assert bright.mins == gate.maxs and inside[90_000:].mean() > 0.999
    # quantile: the cut where 1 % of the main population lies beyond it
    q, inside, _ = _apply(TailGate((X,), quantile=0.99, keep="rest"), x)
    assert abs(q.maxs[0] - (0.20 + 2.326 * 0.03)) < 0.005
    assert abs(inside[:90_000].mean() - 0.99) < 0.003


def test_lower_tail():
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.normal(0.6, 0.04, 80_000), rng.normal(0.2, 0.04, 5_000)])[:, None]
    gate, inside, _ = _apply(TailGate((X,), k=4, side="lower"), x)
    assert gate.mins == (None,) and abs(gate.maxs[0] - (0.6 - 4 * 0.04)) < 0.01
    assert inside[80_000:].mean() > 0.999 and inside[:80_000].mean() < 0.001


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"side": "both"}, "side must be"),
        ({"keep": "all"}, "keep must be"),
        ({"quantile": 0.3}, "quantile must be between 0.5 and 1"),
        ({"k": -1}, "positive number of SDs"),
    ],
)
def test_tail_options_are_checked(kwargs, message):
    with pytest.raises(GatingError, match=message):
        TailGate((X,), **kwargs)


# --- 2-D cluster -> ellipse -----------------------------------------------------------------------


def clusters(rng) -> tuple[np.ndarray, np.ndarray]:
    centres = [(0.25, 0.25), (0.6, 0.3), (0.45, 0.7)]
    sizes = [40_000, 15_000, 25_000]
    pts = [
        rng.multivariate_normal(c, [[0.003, 0.001], [0.001, 0.002]], n)
        for c, n in zip(centres, sizes)
    ]
    labels = np.repeat(np.arange(3), sizes)
    return np.vstack(pts), labels


def test_cluster_gate_resolves_to_an_ellipse_holding_its_quantile():
    values, labels = clusters(np.random.default_rng(9))
    gate, inside, _ = _apply(ClusterGate((X, Y), at=(0.55, 0.35), quantile=0.95), values)
    assert isinstance(gate, EllipsoidGate)
    assert abs(gate.distance_square - (-2 * math.log(0.05))) < 1e-12
    assert abs(inside[labels == 1].mean() - 0.95) < 0.01
    assert inside[labels != 1].mean() < 0.005
    with pytest.raises(GatingError, match="no cluster within 0.05"):
        ClusterGate((X, Y), at=(0.9, 0.9), max_offset=0.05).resolve(values)


def test_cluster_gate_exports_and_reapplies_identically(tmp_path):
    values, _ = clusters(np.random.default_rng(10))
    sample = cw.Sample(events=values, channels=["x", "y"], markers=["", ""])
    path = tmp_path / "s.yaml"
    path.write_text(
        "compensation: none\npopulations:\n  - name: B\n    gate: {cluster: {x: x, y: y, at: [0.45, 0.7]}}\n",
        encoding="utf-8",
    )
    result = Strategy.load(path).apply(sample)
    frozen = result.frozen()
    assert type(frozen["B"].gate) is EllipsoidGate
    xml = tmp_path / "frozen.xml"
    frozen.to_gatingml(xml)
    again = Strategy.from_gatingml(xml).apply(sample)
    assert again.count("B") == result.count("B") > 20_000


# --- corner and per-half quadrants ----------------------------------------------------------------


def corner_data(rng) -> np.ndarray:
    """x: negative 0.2 / positive 0.6. Among x-negatives y is one broad peak at 0.5; among
    x-positives y splits 0.3 / 0.7 (10 % bright): the y valley exists only in the x+ half."""
    xn = np.column_stack([rng.normal(0.2, 0.04, 60_000), rng.normal(0.5, 0.12, 60_000)])
    xp_lo = np.column_stack([rng.normal(0.6, 0.04, 9_000), rng.normal(0.3, 0.04, 9_000)])
    xp_hi = np.column_stack([rng.normal(0.6, 0.04, 1_000), rng.normal(0.7, 0.04, 1_000)])
    return np.vstack([xn, xp_lo, xp_hi])


def test_corner_cuts_y_within_the_x_half():
    values = corner_data(np.random.default_rng(11))
    search = ((0.3, 0.5), (0.35, 0.65))
    with pytest.raises(GatingError, match="no density valley for y"):
        QuadrantThresholds((X, Y), "++", search).resolve(values)
    gate, inside, _ = _apply(QuadrantThresholds((X, Y), "++", search, per_half=True), values)
    assert 0.35 < gate.mins[0] < 0.5 and 0.45 < gate.mins[1] < 0.6
    assert abs(inside.sum() - 1_000) < 30 and inside[-1_000:].mean() > 0.97


def test_valley_options_reach_both_axes_of_an_automatic_quadrant():
    rng = np.random.default_rng(12)
    x = mix(rng, SHALLOW)
    values = np.column_stack([x, rng.permutation(x)])
    search = ((0.3, 0.6), (0.3, 0.6))
    with pytest.raises(GatingError):
        QuadrantThresholds((X, Y), "++", search).resolve(values)
    gate = QuadrantThresholds((X, Y), "++", search, valley=(("depth", 0.85),)).resolve(values)
    where, _ = dip_ratio(SHALLOW)
    assert abs(gate.mins[0] - where) < 0.02 and abs(gate.mins[1] - where) < 0.02


# --- YAML: every option, round trip, typos refused ------------------------------------------------

YAML = """
populations:
  - name: shallow
    gate: {threshold: {dimension: x, search: [0.3, 0.6], depth: 0.85, bandwidth: 0.01,
                       peaks: 2, prefer: lowest, no_valley: mixture}}
  - name: shoulder
    gate: {mixture_cut: {dimension: x, sign: "-", search: [0.3, 0.6], quantile: 0.05}}
  - name: live
    gate: {tail: {dimension: x, side: upper, k: 4, keep: rest}}
  - name: blob
    gate: {cluster: {x: x, y: y, at: [0.45, 0.7], quantile: 0.9, components: 3}}
  - name: corner
    gate: {corner: {x: x, y: y, signs: "++", search: [[0.3, 0.5], [0.35, 0.65]]}}
  - quadrant:
      x: x
      y: y
      at: auto
      per_half: true
      depth: 0.7
      search: [[0.3, 0.5], [0.35, 0.65]]
      populations: {q++: "++", q+-: "+-"}
"""


def test_every_option_round_trips_through_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(YAML), encoding="utf-8")
    strategy = Strategy.load(path)
    gates = {p.name: p.gate for p in strategy.populations}
    assert gates["shallow"] == ThresholdGate(
        (XF,), True, (0.3, 0.6), None, "lowest", 0.85, 0.01, 2, "mixture"
    )
    assert gates["shoulder"] == MixtureCutGate((XF,), False, (0.3, 0.6), 0.05)
    assert gates["live"] == TailGate((XF,), 4.0, "upper", None, "rest")
    assert gates["blob"] == ClusterGate((XF, YF), (0.45, 0.7), 0.9, 3)
    assert gates["corner"].per_half and gates["q++"].per_half
    assert dict(gates["q+-"].valley) == {"depth": 0.7}
    import yaml

    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(strategy_to_dict(strategy)), encoding="utf-8")
    back = Strategy.load(again)
    assert {p.name: p.gate for p in back.populations} == gates


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ("{threshold: {dimension: x, serach: [0.3, 0.6]}}", r"unknown keys \['serach'\]"),
        ("{tail: {dimension: x, sides: upper}}", r"unknown keys \['sides'\]"),
        ("{threshold: {dimension: x, search: [0.6]}}", "search must be \\[low, high\\]"),
        ("{threshold: {dimension: x, prefer: middle}}", "valley preference must be one of"),
        ("{cluster: {x: x, y: y, at: [0.4, 0.4], quantile: 1.5}}", "quantile must be between"),
        ("{corner: {x: x, y: y, signs: '+'}}", "corner signs must be two of"),
    ],
)
def test_bad_options_are_named(tmp_path, gate, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"populations:\n  - name: p\n    gate: {gate}\n", encoding="utf-8")
    with pytest.raises(Exception, match=message):
        Strategy.load(path)


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    gap=st.floats(min_value=0.25, max_value=0.5),
    share=st.floats(min_value=0.1, max_value=0.5),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_a_clear_valley_lies_between_the_two_modes(gap, share, seed):
    rng = np.random.default_rng(seed)
    n = 20_000
    x = np.concatenate(
        [rng.normal(0.2, 0.04, int(n * (1 - share))), rng.normal(0.2 + gap, 0.04, int(n * share))]
    )
    t = find_valley(x, (0.2, 0.2 + gap))
    assert t is not None and 0.2 + 0.04 < t < 0.2 + gap - 0.04
    cut = mixture_cut(x, (0.2, 0.2 + gap))
    assert cut is not None and abs(cut - t) < 0.06

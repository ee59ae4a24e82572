"""Westgard rules on crafted control series, and the lot file."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cytowhim.controls import ControlsError, read_lot_file
from cytowhim.westgard import violations, z_scores


def _where(z, rule, runs=None):
    return [i for i, rules in enumerate(violations(z, runs)) if rule in rules]


def test_each_rule_on_its_own_pattern():
    assert _where([0.5, -3.2, 0.1], "1-3s") == [1]
    assert _where([0.5, 2.1, 2.5, 0.0], "2-2s") == [2]
    assert _where([0.5, 2.1, -2.5, 0.0], "2-2s") == []
    assert _where([0.5, 2.1, -2.5, 0.0], "R-4s", runs=[1, 2, 2, 3]) == [2]  # within one run
    assert _where([0.5, 2.1, -2.5, 0.0], "R-4s") == []  # across runs: not R-4s
    assert _where([1.2, 1.5, 1.1, 1.9, -0.2], "4-1s") == [3]
    assert _where([1.2, 1.5, -1.1, 1.9], "4-1s") == []
    z = [0.3] * 9 + [0.1, -0.2]
    assert _where(z, "10-x") == [9]
    assert _where([-0.3] * 12, "10-x") == [9, 10, 11]


def test_missing_results_are_skipped_not_breaking_a_run():
    assert _where([2.2, math.nan, 2.4], "2-2s") == [2]


def test_boundaries_are_exclusive():
    assert violations([3.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]) == [[]] * 7


@given(st.lists(st.floats(-0.99, 0.99), max_size=9))
def test_results_within_1_sd_break_nothing_in_fewer_than_ten(z):
    assert all(not r for r in violations(z))


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=30))
def test_1_3s_is_exactly_the_results_beyond_3_sd(z):
    assert _where(z, "1-3s") == [i for i, v in enumerate(z) if abs(v) > 3]


def test_z_scores_need_a_real_sd():
    assert z_scores([820, 780], 800, 20).tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="SD > 0"):
        z_scores([1], 800, 0)


def test_lot_file(tmp_path):
    p = tmp_path / "lot.csv"
    p.write_text(
        "lot,population,tube,mean,sd,low,high\nL1,CD4+ T cells,,850,45,,\nL1,B cells,B,,,250,370\n"
    )
    t = read_lot_file(p)
    assert t.loc[1, ["mean", "sd"]].tolist() == [310.0, 30.0]  # range = mean +- 2 SD
    p.write_text("lot,population,mean,sd\nL1,CD4,850,abc\n")
    with pytest.raises(ControlsError, match=r"row 2, column sd: 'abc' is not a number"):
        read_lot_file(p)
    p.write_text("lot,population,mean\nL1,CD4,850\n")
    with pytest.raises(ControlsError, match="give mean and sd, or low and high"):
        read_lot_file(p)
    p.write_text("lot,mean\nL1,850\n")
    with pytest.raises(ControlsError, match="missing column"):
        read_lot_file(p)
    p.write_text("lot,population,mean,sd\nL1,CD4,850,10\nL1,CD4,851,10\n")
    with pytest.raises(ControlsError, match="given twice"):
        read_lot_file(p)

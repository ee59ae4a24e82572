"""Absolute counts (cells/µL): dual and single platform, counting error, population tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytowhim.counts import (
    BASE_TO_CBC,
    CountsError,
    MissingColumnError,
    NegativeCountError,
    absolute_counts,
    absolute_counts_beads,
    counting_error,
    dual_platform,
    single_platform,
)

# ---------------------------------------------------------------------------------------------
# formulas on hand-computed numbers


def test_dual_platform_hand_computed():
    # 400 T cells among 2000 lymphocytes, ALC 1500/µL -> 20 % of 1500 = 300/µL
    assert dual_platform(400, 2000, 1500) == pytest.approx(300.0)
    assert isinstance(dual_platform(400, 2000, 1500), float)
    out = dual_platform([100, 200, 0], [1000, 1000, 1000], 500)
    np.testing.assert_allclose(out, [50.0, 100.0, 0.0])


def test_dual_platform_keeps_a_series_index():
    events = pd.Series([10, 20], index=["a", "b"])
    out = dual_platform(events, 100, 1000)
    assert list(out.index) == ["a", "b"] and out["b"] == pytest.approx(200.0)


def test_dual_platform_no_base_events_is_nan():
    assert math.isnan(dual_platform(5, 0, 1500))
    out = dual_platform([5, 5], [0, 10], 100)
    assert math.isnan(out[0]) and out[1] == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("args", "name"),
    [((-1, 10, 100), "events"), ((1, -10, 100), "base_events"), ((1, 10, -5), "base_count")],
)
def test_dual_platform_negative_input_is_named(args, name):
    with pytest.raises(NegativeCountError, match=f"dual_platform: {name}"):
        dual_platform(*args)


def test_dual_platform_non_numbers_are_named():
    with pytest.raises(CountsError, match="events must be numbers"):
        dual_platform("many", 10, 100)


def test_single_platform_hand_computed():
    # 1200 events, 6000 bead events, 50,000 beads in the tube, 50 µL blood:
    # 1200/6000 * 50000/50 = 0.2 * 1000 = 200 cells/µL
    assert single_platform(1200, 6000, 50_000, 50) == pytest.approx(200.0)
    assert math.isnan(single_platform(1200, 0, 50_000, 50))
    with pytest.raises(NegativeCountError, match="volume_uL"):
        single_platform(1200, 6000, 50_000, 0)
    with pytest.raises(NegativeCountError, match="bead_events"):
        single_platform(1200, -1, 50_000, 50)


def test_counting_error_hand_computed():
    # 300/µL from 400 of 2000 events: relative SD sqrt(1/400 + 1/2000) = sqrt(0.003)
    assert counting_error(400, 2000, 1500) == pytest.approx(300 * math.sqrt(0.003))
    assert counting_error(400, 2000, 1500) == pytest.approx(16.4317, abs=1e-4)


def test_counting_error_zero_events_is_one_event_resolution():
    # no event: report what one event would have counted, 1500/2000 = 0.75 cells/µL
    assert counting_error(0, 2000, 1500) == pytest.approx(0.75)
    assert math.isnan(counting_error(0, 0, 1500))
    out = counting_error([0, 1], [100, 100], 1000)
    assert out[0] == pytest.approx(10.0) and out[1] == pytest.approx(10 * math.sqrt(1.01))


# ---------------------------------------------------------------------------------------------
# properties

events_st = st.integers(min_value=0, max_value=1_000_000)
positive_st = st.integers(min_value=1, max_value=1_000_000)
count_st = st.floats(min_value=0.1, max_value=1e5, allow_nan=False)
factor_st = st.floats(min_value=0.01, max_value=100, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(events_st, positive_st, count_st, factor_st)
def test_dual_platform_scales_linearly(events, base, cbc, k):
    one = dual_platform(events, base, cbc)
    assert dual_platform(events, base, k * cbc) == pytest.approx(k * one, rel=1e-9, abs=1e-12)
    assert dual_platform(2 * events, base, cbc) == pytest.approx(2 * one, rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(positive_st, positive_st, st.integers(min_value=1, max_value=10_000), count_st)
def test_relative_error_decreases_with_events(events, base, more, cbc):
    def relative(n):
        return counting_error(n, base, cbc) / dual_platform(n, base, cbc)

    assert relative(events + more) < relative(events)


@settings(max_examples=60, deadline=None)
@given(positive_st, positive_st, st.integers(min_value=2, max_value=50), count_st)
def test_more_events_of_the_same_sample_shrink_the_error(events, base, k, cbc):
    # acquiring k times as long gives the same absolute count with a smaller error (by sqrt(k))
    assert dual_platform(k * events, k * base, cbc) == pytest.approx(
        dual_platform(events, base, cbc)
    )
    err, err_k = counting_error(events, base, cbc), counting_error(k * events, k * base, cbc)
    assert err_k == pytest.approx(err / math.sqrt(k))


@settings(max_examples=60, deadline=None)
@given(events_st, events_st, positive_st, count_st)
def test_parent_absolute_at_least_child(a, b, base, cbc):
    child, parent = min(a, b), max(a, b)
    assert dual_platform(parent, base, cbc) >= dual_platform(child, base, cbc)


@settings(max_examples=60, deadline=None)
@given(events_st, positive_st, positive_st, st.floats(min_value=1, max_value=500))
def test_single_platform_is_dual_platform_with_bead_concentration(events, beads, lot, volume):
    assert single_platform(events, beads, lot, volume) == pytest.approx(
        dual_platform(events, beads, lot / volume)
    )


# ---------------------------------------------------------------------------------------------
# population tables


def _table(**extra):
    rows = [
        ("S1", "T", "lymphocytes", 2000, "lymphocytes", 2000),
        ("S1", "T", "T cells", 1400, "lymphocytes", 2000),
        ("S1", "T", "CD4+ T cells", 400, "lymphocytes", 2000),
        ("S1", "T", "singlets", 50_000, "", math.nan),
        ("S1", "mono", "monocytes (scatter)", 600, "monocytes (scatter)", 600),
        ("S1", "mono", "classical monocytes", 540, "monocytes (scatter)", 600),
    ]
    frame = pd.DataFrame(
        rows, columns=["specimen", "tube", "population", "events", "base", "base_events"]
    )
    for key, value in extra.items():
        frame[key] = value
    return frame


def test_absolute_counts_fills_percent_absolute_and_error():
    out = absolute_counts(_table(), {"WBC": 5000, "ALC": 1500, "AMC": 400, "ANC": 3000})
    by = out.set_index("population")
    assert by.loc["lymphocytes", "absolute_per_uL"] == pytest.approx(1500)
    assert by.loc["T cells", "percent_of_base"] == pytest.approx(70.0)
    assert by.loc["T cells", "absolute_per_uL"] == pytest.approx(1050.0)
    assert by.loc["CD4+ T cells", "absolute_per_uL"] == pytest.approx(300.0)
    # no 'nested' column: Poisson on both counts, plus the ALC's default 6 % CV
    assert by.loc["CD4+ T cells", "absolute_error_per_uL"] == pytest.approx(
        300 * math.sqrt(1 / 400 + 1 / 2000 + 0.06**2)
    )
    # the base row itself is nested: no counting term, only the analyzer's CV
    assert by.loc["lymphocytes", "absolute_error_per_uL"] == pytest.approx(1500 * 0.06)
    assert by.loc["classical monocytes", "absolute_per_uL"] == pytest.approx(360.0)
    assert math.isnan(by.loc["singlets", "absolute_per_uL"])  # no base: no count, no note
    assert list(out["qc"]) == [""] * 6
    assert len(out) == 6


def test_missing_cbc_gives_nan_and_a_note_without_dropping_rows():
    table = _table(qc=["", "", "", "", "", "earlier note"])
    out = absolute_counts(table, {"ALC": 1500})  # no AMC
    by = out.set_index("population")
    assert math.isnan(by.loc["classical monocytes", "absolute_per_uL"])
    assert by.loc["monocytes (scatter)", "qc"] == "no CBC AMC"
    assert by.loc["classical monocytes", "qc"] == "earlier note; no CBC AMC"
    assert by.loc["classical monocytes", "percent_of_base"] == pytest.approx(90.0)
    assert by.loc["T cells", "absolute_per_uL"] == pytest.approx(1050.0)
    assert len(out) == len(table)
    # a NaN value counts as missing, and running twice does not repeat the note
    again = absolute_counts(out, {"ALC": 1500, "AMC": math.nan})
    assert again.set_index("population").loc["monocytes (scatter)", "qc"] == "no CBC AMC"


def test_base_without_cbc_mapping_and_base_without_events_are_noted():
    table = _table()
    table.loc[table["population"] == "CD4+ T cells", "base"] = "eosinophils"
    table.loc[table["population"] == "T cells", "base_events"] = math.nan
    out = absolute_counts(table, {"ALC": 1500, "AMC": 400}).set_index("population")
    assert out.loc["CD4+ T cells", "qc"] == "no CBC count for base 'eosinophils'"
    assert out.loc["T cells", "qc"] == "no events for base 'lymphocytes'"
    assert math.isnan(out.loc["T cells", "absolute_per_uL"])


def test_bases_can_be_overridden():
    table = _table()
    bases = {**BASE_TO_CBC, "monocytes (scatter)": "WBC"}
    out = absolute_counts(table, {"WBC": 1000, "ALC": 1500}, bases=bases)
    by = out.set_index("population")
    assert by.loc["classical monocytes", "absolute_per_uL"] == pytest.approx(900.0)


def test_zero_base_events_give_nan_and_zero_events_give_resolution():
    table = _table()
    table.loc[table["tube"] == "mono", "base_events"] = 0
    table.loc[table["population"] == "CD4+ T cells", "events"] = 0
    out = absolute_counts(table, {"ALC": 1500, "AMC": 400}).set_index("population")
    assert math.isnan(out.loc["classical monocytes", "absolute_per_uL"])
    assert math.isnan(out.loc["classical monocytes", "percent_of_base"])
    assert out.loc["CD4+ T cells", "absolute_per_uL"] == 0
    assert out.loc["CD4+ T cells", "absolute_error_per_uL"] == pytest.approx(0.75)


def test_cbc_table_per_specimen():
    t1 = _table()
    t2 = _table()
    t2["specimen"] = "S2"
    table = pd.concat([t1, t2], ignore_index=True)
    cbc = pd.DataFrame(
        {
            "specimen": ["S1", "S1", "S2"],  # one row per tube, as in a manifest
            "ALC": [1500, 1500, 3000],
            "AMC": [400, 400, math.nan],
        }
    )
    out = absolute_counts(table, cbc)
    cd4 = out[out["population"] == "CD4+ T cells"].set_index("specimen")["absolute_per_uL"]
    assert cd4["S1"] == pytest.approx(300.0) and cd4["S2"] == pytest.approx(600.0)
    s2_mono = out[(out["specimen"] == "S2") & (out["tube"] == "mono")]
    assert s2_mono["absolute_per_uL"].isna().all() and (s2_mono["qc"] == "no CBC AMC").all()
    cbc.loc[1, "ALC"] = 1600
    with pytest.raises(CountsError, match="specimen S1 has two CBC ALC values, 1500 and 1600"):
        absolute_counts(table, cbc)


def test_table_errors_name_row_and_column():
    table = _table()
    table.loc[2, "events"] = -4
    with pytest.raises(
        NegativeCountError, match=r"specimen S1, tube T, population 'CD4\+ T cells'"
    ):
        absolute_counts(table, {"ALC": 1500})
    with pytest.raises(MissingColumnError, match="no column 'base_events'"):
        absolute_counts(_table().drop(columns="base_events"), {"ALC": 1500})
    with pytest.raises(NegativeCountError, match="CBC ALC must be"):
        absolute_counts(_table(), {"ALC": -1500})


def test_absolute_counts_beads_per_tube():
    table = _table()
    out = absolute_counts_beads(
        table,
        bead_events={"T": 5000, ("S1", "mono"): 2500},
        beads_per_tube=50_000,
        volume_uL={"T": 50, "mono": 100},
    )
    by = out.set_index("population")
    # T tube: 400/5000 * 50000/50 = 80/µL; mono tube: 540/2500 * 50000/100 = 108/µL
    assert by.loc["CD4+ T cells", "absolute_per_uL"] == pytest.approx(80.0)
    assert by.loc["CD4+ T cells", "absolute_error_per_uL"] == pytest.approx(
        80 * math.sqrt(1 / 400 + 1 / 5000)
    )
    assert by.loc["classical monocytes", "absolute_per_uL"] == pytest.approx(108.0)
    assert by.loc["T cells", "percent_of_base"] == pytest.approx(70.0)
    assert (out["qc"] == "").all()


def test_absolute_counts_beads_missing_and_zero_bead_events_are_noted():
    out = absolute_counts_beads(_table(), {"T": 0}, 50_000, 50).set_index("population")
    assert math.isnan(out.loc["T cells", "absolute_per_uL"])
    assert out.loc["T cells", "qc"] == "no bead events in tube T"
    assert out.loc["classical monocytes", "qc"] == "no bead_events for tube mono"
    with pytest.raises(NegativeCountError, match="tube mono.*volume_uL must be"):
        absolute_counts_beads(_table(), 100, 50_000, {"T": 50, "mono": 0})


# ---------------------------------------------------------------------------------------------
# issue 9: nested counts, binomial error, the analyzer's CV


def test_nested_error_is_binomial_and_cbc_cv_is_lab_settable():
    """CD4+ T cells gated inside the lymphocytes: p = 400/2000, relative variance (1 - p)/400 =
    1/400 - 1/2000 (the old Poisson sqrt(1/400 + 1/2000) was 1.22x too large here, and
    sqrt(2)-fold at small p), with the CBC CV added in quadrature; hand-computed."""
    table = _table(nested=True)
    out = absolute_counts(table, {"ALC": 1500, "AMC": 400}, cbc_cv={"ALC": 0.05, "AMC": 0.1})
    by = out.set_index("population")
    assert by.loc["CD4+ T cells", "absolute_error_per_uL"] == pytest.approx(
        300 * math.sqrt(1 / 400 - 1 / 2000 + 0.05**2)
    )
    assert by.loc["CD4+ T cells", "absolute_error_per_uL"] == pytest.approx(20.1246, abs=1e-4)
    # lymphocytes row: the ALC itself; its only error is the analyzer's 5 %
    assert by.loc["lymphocytes", "absolute_error_per_uL"] == pytest.approx(75.0)
    assert by.loc["classical monocytes", "absolute_error_per_uL"] == pytest.approx(
        360 * math.sqrt(1 / 540 - 1 / 600 + 0.1**2)
    )
    no_cv = absolute_counts(table, {"ALC": 1500}, cbc_cv={"ALC": 0.0}).set_index("population")
    assert no_cv.loc["lymphocytes", "absolute_error_per_uL"] == 0.0
    assert no_cv.loc["CD4+ T cells", "absolute_error_per_uL"] == pytest.approx(
        300 * math.sqrt(0.002)
    )


def test_counting_error_nested_vs_poisson_ratio():
    """For a small nested population the Poisson formula overstated the error by ~sqrt(2)."""
    nested = counting_error(100, 100_000, 1000, nested=True)
    poisson = counting_error(100, 100_000, 1000)
    assert nested == pytest.approx(1.0 * math.sqrt(1 / 100 - 1 / 100_000))
    assert poisson / nested == pytest.approx(math.sqrt((0.01 + 1e-5) / (0.01 - 1e-5)))
    assert counting_error(2000, 2000, 1500, nested=True) == 0.0
    assert counting_error(2000, 2000, 1500, nested=True, count_cv=0.04) == pytest.approx(60.0)


def test_population_outside_its_base_is_counted_from_its_events_inside_the_base():
    """Monocytes gated as CD14+ among all CD45+ events but counted against the scatter monocyte
    gate gave percent_of_base > 100 and a count above the AMC; now only the events inside the
    base count, and the row says so."""
    table = pd.DataFrame(
        {
            "specimen": ["S1", "S1"],
            "tube": ["mono", "mono"],
            "population": ["monocytes (scatter)", "monocytes"],
            "events": [600, 612],
            "base": ["monocytes (scatter)", "monocytes (scatter)"],
            "base_events": [600, 600],
            "nested": [True, False],
            "events_in_base": [600, 590],
        }
    )
    out = absolute_counts(table, {"AMC": 400}).set_index("population")
    assert out.loc["monocytes", "percent_of_base"] == pytest.approx(590 / 600 * 100)
    assert out.loc["monocytes", "absolute_per_uL"] == pytest.approx(590 / 600 * 400)
    assert out.loc["monocytes", "absolute_per_uL"] <= 400
    assert "counted from the 590 of its 612 events inside its base" in out.loc["monocytes", "qc"]


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
    st.floats(min_value=1, max_value=1e5),
    st.one_of(st.just(0.0), st.floats(min_value=1e-4, max_value=0.5)),
)
def test_error_formulas_hold_their_properties(a, b, count, cv):
    events, base = min(a, b), max(a, b)
    absolute = dual_platform(events, base, count)
    nested = counting_error(events, base, count, nested=True, count_cv=cv)
    poisson = counting_error(events, base, count, count_cv=cv)
    # the binomial term never exceeds the Poisson one; both include the CV in quadrature
    assert nested <= poisson * (1 + 1e-12)
    assert nested == pytest.approx(absolute * math.sqrt(1 / events - 1 / base + cv**2))
    assert poisson == pytest.approx(absolute * math.sqrt(1 / events + 1 / base + cv**2))
    # the CV alone is a floor: the error is never below absolute x CV
    assert nested >= absolute * cv * (1 - 1e-12)
    # a population that is its whole base: only the analyzer's imprecision remains
    assert counting_error(base, base, count, nested=True, count_cv=cv) == pytest.approx(count * cv)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False), st.floats(min_value=0, max_value=2000)
)
def test_reported_values_and_flags_agree(value, low):
    """The flag is computed on the value as printed: printed >= low is never L."""
    from cytowhim.reference import Interval
    from cytowhim.reporting import ReportingRules

    rules = ReportingRules()
    reported, text = rules.reported(value)
    flag = Interval(low=low, high=math.nan).flag(reported, below=text.startswith("<"))
    if text.startswith("<"):
        assert value < 1 and text == "<1"
        assert flag == ("L" if low >= 1 else "")
    else:
        assert float(text) == reported
        assert abs(reported - value) <= (0.5 if value >= 10 else 0.05) + 1e-9
        assert (flag == "L") == (reported < low)


def test_limit_of_quantitation_prints_with_its_own_digits():
    from cytowhim.reference import Interval
    from cytowhim.reporting import ReportingRules

    assert ReportingRules(loq_per_uL=0.04).reported(0.02) == (0.04, "<0.04")  # was '<0'
    assert Interval(low=0.0, high=12.0).flag(0.04, below=True) == ""
    assert ReportingRules(loq_per_uL=1.5, decimals_below_10=0).reported(1.02)[1] == "<1.5"
    assert ReportingRules(loq_events=10).reported(2.0, per_event=0.33)[1] == "<3.3"

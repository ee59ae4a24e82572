"""Baseline vs peak comparison (cytowhim.compare): statistics checked by hand and against scipy,
tube choice, missing patients, and the CSV / Markdown / HTML writers."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ttest_rel

from cytowhim.compare import (
    Comparison,
    PopulationTableError,
    PopulationTableNotFound,
    compare_folder,
    compare_timepoints,
    print_table,
)
from cytowhim.errors import CytowhimError
from cytowhim.run import COLUMNS  # the table `cytowhim run` writes

PATIENTS = ("P1", "P2", "P3")
# (tube, population) -> (baseline per patient, peak per patient), cells/µL. Specimen rows are
# written in this order, so 'B cells' appears first in the T tube. CD4+ T cells reproduce the
# 206 ± 71 -> 1498 ± 186 § row of Table 1.
COUNTS: dict[tuple[str, str], tuple[tuple[float, ...], tuple[float, ...]]] = {
    ("T", "T cells"): ((300, 400, 500), (2000, 2400, 2600)),
    ("T", "CD4+ T cells"): ((83, 206, 329), (1176, 1498, 1820)),
    ("T", "NK cells"): ((74, 80, 86), (108, 151, 194)),
    ("T", "B cells"): ((14, 19, 24), (60, 160, 260)),
    ("B", "B cells"): ((10, 12, 17), (50, 155, 257)),
    ("B", "memory B cells"): ((1, 1.5, 2), (4, 6, 9)),
}


def population_table(counts=COUNTS, patients=PATIENTS, timepoints=("baseline", "peak")):
    """A populations.csv-like table: one row per specimen x tube x population."""
    rows = []
    for i, patient in enumerate(patients):
        for t, timepoint in enumerate(timepoints):
            for (tube, population), values in counts.items():
                value = values[t][i]
                rows.append(
                    {
                        "specimen": f"{patient}-{timepoint}",
                        "patient": patient,
                        "timepoint": timepoint,
                        "tube": tube,
                        "population": population,
                        "parent": "lymphocytes",
                        "events": 1000,
                        "percent_of_parent": 10.0,
                        "base": "lymphocytes",
                        "base_events": 10000,
                        "percent_of_base": 10.0,
                        "absolute_per_uL": value,
                        "absolute_error_per_uL": value / math.sqrt(1000),
                        "qc": "",
                        "reference_flag": "",
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def row(comparison: Comparison, population: str) -> pd.Series:
    table = comparison.table.set_index("population")
    return table.loc[population]


def sem(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / math.sqrt(len(values)))


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return compare_timepoints(population_table(), "baseline", "peak")


def test_means_and_sems_by_hand(comparison):
    cd4 = row(comparison, "CD4+ T cells")
    assert cd4.n_pairs == 3
    assert cd4.baseline_mean == pytest.approx(206)
    assert cd4.baseline_sem == pytest.approx(123 / math.sqrt(3))  # values 206 ± 123
    assert cd4.baseline_sem == pytest.approx(71.01, abs=0.01)
    assert cd4.peak_mean == pytest.approx(1498)
    assert cd4.peak_sem == pytest.approx(322 / math.sqrt(3))
    for (tube, population), (before, after) in COUNTS.items():
        if population in ("T cells", "B cells"):
            continue
        r = row(comparison, population)
        assert r.tube == tube
        assert r.baseline_mean == pytest.approx(np.mean(before))
        assert r.baseline_sem == pytest.approx(sem(before))
        assert r.peak_mean == pytest.approx(np.mean(after))
        assert r.peak_sem == pytest.approx(sem(after))


def test_default_populations_follow_table1(comparison):
    # Table 1 order, only those present; 'T cells' is not a Table 1 row
    assert list(comparison.table.population) == [
        "CD4+ T cells",
        "NK cells",
        "B cells",
        "memory B cells",
    ]
    assert any("not in Table 1" in n for n in comparison.notes)
    chosen = compare_timepoints(
        population_table(), "baseline", "peak", populations=["T cells", "NK cells", "CD99"]
    )
    assert list(chosen.table.population) == ["T cells", "NK cells", "CD99"]
    cd99 = row(chosen, "CD99")
    assert cd99.n_pairs == 0 and math.isnan(cd99.baseline_mean) and math.isnan(cd99.p_value)
    assert any("CD99" in n and "Not in the population table" in n for n in chosen.notes)


def test_p_values_match_scipy(comparison):
    for population in ("CD4+ T cells", "NK cells", "memory B cells"):
        tube = "B" if population == "memory B cells" else "T"
        before, after = COUNTS[tube, population]
        expected = ttest_rel(after, before).pvalue
        r = row(comparison, population)
        assert r.p_value == pytest.approx(expected, rel=1e-12)
        assert r.significant == (expected < 0.05)
    assert row(comparison, "CD4+ T cells").significant  # P = .008
    assert not row(comparison, "NK cells").significant  # P = .08


def test_textbook_paired_t_test():
    """Student's sleep data (Cushny & Peebles; R: t.test(extra ~ group, data = sleep,
    paired = TRUE) gives t = -4.0621, df = 9, p-value = 0.002833), shifted by 10 cells/µL."""
    drug1 = (0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0)
    drug2 = (1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4)
    counts = {("T", "CD4+ T cells"): (tuple(v + 10 for v in drug1), tuple(v + 10 for v in drug2))}
    patients = tuple(f"S{i}" for i in range(1, 11))
    c = compare_timepoints(population_table(counts, patients), "baseline", "peak")
    r = row(c, "CD4+ T cells")
    assert r.n_pairs == 10
    assert r.p_value == pytest.approx(0.002833, abs=5e-7)
    assert r.peak_mean - r.baseline_mean == pytest.approx(1.58)
    assert r.significant


def test_fold_change(comparison):
    for population in ("CD4+ T cells", "NK cells", "memory B cells"):
        r = row(comparison, population)
        assert r.fold_change == pytest.approx(r.peak_mean / r.baseline_mean)
    assert row(comparison, "CD4+ T cells").fold_change == pytest.approx(1498 / 206)


def test_reference_counts(comparison):
    cd4 = row(comparison, "CD4+ T cells")  # Table 1 interval 359–1565
    assert (cd4.reference_low, cd4.reference_high) == (359, 1565)
    assert (cd4.baseline_below, cd4.baseline_within, cd4.baseline_above) == (3, 0, 0)
    assert (cd4.peak_below, cd4.peak_within, cd4.peak_above) == (0, 2, 1)  # 1820 > 1565
    nk = row(comparison, "NK cells")  # 126–729; peak 108, 151, 194
    assert (nk.peak_below, nk.peak_within, nk.peak_above) == (1, 2, 0)


class Intervals:
    def __init__(self, table: dict[str, tuple[float | None, float | None]]):
        self.table = table

    def lookup(self, population: str):
        return self.table.get(population)


def test_reference_object_bounds_inclusive_and_absent():
    ref = Intervals({"CD4+ T cells": (206, 1498), "NK cells": (None, 100)})
    c = compare_timepoints(population_table(), "baseline", "peak", reference=ref)
    cd4 = row(c, "CD4+ T cells")  # 83 below, 206 and 329 within (bounds count as within)
    assert (cd4.baseline_below, cd4.baseline_within, cd4.baseline_above) == (1, 2, 0)
    assert (cd4.peak_below, cd4.peak_within, cd4.peak_above) == (0, 2, 1)
    nk = row(c, "NK cells")  # one-sided: at most 100
    assert (nk.peak_below, nk.peak_within, nk.peak_above) == (0, 0, 3)
    assert math.isnan(nk.reference_low) and nk.reference_high == 100
    b = row(c, "B cells")
    assert pd.isna(b.baseline_below) and math.isnan(b.reference_low)
    assert any("No reference interval" in n and "B cells" in n for n in c.notes)
    assert "≤ 100" in c.to_markdown()


def test_sources_pick_the_tube(comparison):
    t_values, b_values = COUNTS["T", "B cells"], COUNTS["B", "B cells"]
    # default: the panel's reporting tube (data/panels.yaml reports B cells from the T tube)
    b = row(comparison, "B cells")
    assert b.tube == "T" and comparison.sources["B cells"] == "T"
    assert b.baseline_mean == pytest.approx(np.mean(t_values[0]))
    # explicit mapping
    c = compare_timepoints(population_table(), "baseline", "peak", sources={"B cells": "B"})
    b = row(c, "B cells")
    assert b.tube == "B"
    assert b.baseline_mean == pytest.approx(np.mean(b_values[0]))
    assert b.peak_mean == pytest.approx(np.mean(b_values[1]))
    assert b.p_value == pytest.approx(ttest_rel(b_values[1], b_values[0]).pvalue)


def test_row_order_never_changes_the_answer():
    """Issue 9: with the B tube first in the manifest, baseline B cells went from 19 to 13
    cells/µL and the fold change from 8.7 to 12.5. The reporting tube comes from the panel."""
    table = population_table()
    expected = compare_timepoints(table, "baseline", "peak").table
    rng = np.random.default_rng(9)
    for _ in range(5):
        shuffled = table.iloc[rng.permutation(len(table))].reset_index(drop=True)
        got = compare_timepoints(shuffled, "baseline", "peak").table
        pd.testing.assert_frame_equal(got, expected)
    flipped = pd.concat([table[table.tube == "B"], table[table.tube == "T"]])
    assert row(compare_timepoints(flipped, "baseline", "peak"), "B cells").tube == "T"


def test_population_without_reporting_tube_takes_first_tube_by_name():
    table = population_table()
    table.loc[table.population == "B cells", "population"] = "B lymphocytes"
    for order in (table, table.iloc[::-1]):
        c = compare_timepoints(order, "baseline", "peak", populations=["B lymphocytes"])
        assert row(c, "B lymphocytes").tube == "B"
        assert any("B lymphocytes from B (also in T)" in n for n in c.notes)


def test_source_tube_without_the_population_is_reported():
    c = compare_timepoints(population_table(), "baseline", "peak", sources={"NK cells": "B"})
    nk = row(c, "NK cells")
    assert nk.n_pairs == 0 and math.isnan(nk.baseline_mean)
    assert any("NK cells" in n and "'B'" in n for n in c.notes)
    assert len(c.missing) == 6 and all("NK cells" in d for d in c.missing.detail)


def test_patient_missing_peak_is_listed_and_not_paired():
    table = population_table()
    table = table[~((table.patient == "P3") & (table.timepoint == "peak"))]
    c = compare_timepoints(table, "baseline", "peak")
    assert c.missing.to_dict("records") == [
        {"patient": "P3", "missing": "peak", "detail": "no specimen at peak"}
    ]
    cd4 = row(c, "CD4+ T cells")
    assert cd4.n_pairs == 2
    assert cd4.baseline_mean == pytest.approx((83 + 206) / 2)  # P3's baseline is not paired
    assert cd4.baseline_sem == pytest.approx(sem([83, 206]))
    assert cd4.p_value == pytest.approx(ttest_rel([1176, 1498], [83, 206]).pvalue)
    assert (cd4.baseline_below + cd4.baseline_within + cd4.baseline_above) == 2
    assert "P3: peak — no specimen at peak" in c.to_markdown()
    assert "P3: peak — no specimen at peak" in print_table(c)


def test_missing_count_of_one_population_is_listed():
    table = population_table()
    gone = (table.patient == "P2") & (table.timepoint == "baseline")
    table.loc[gone & (table.population == "memory B cells"), "absolute_per_uL"] = np.nan
    c = compare_timepoints(table, "baseline", "peak")
    assert row(c, "memory B cells").n_pairs == 2
    assert row(c, "CD4+ T cells").n_pairs == 3
    [m] = c.missing.to_dict("records")
    assert m["patient"] == "P2" and m["missing"] == "baseline"
    assert "memory B cells" in m["detail"]


def test_degenerate_pairs_give_nan_p():
    counts = {("T", "CD4+ T cells"): ((100, 200, 300), (150, 250, 350))}  # constant difference
    c = compare_timepoints(population_table(counts), "baseline", "peak")
    r = row(c, "CD4+ T cells")
    assert math.isnan(r.p_value) and not r.significant
    one = compare_timepoints(population_table(counts, ("P1",)), "baseline", "peak")
    r = row(one, "CD4+ T cells")
    assert r.n_pairs == 1 and math.isnan(r.p_value) and math.isnan(r.baseline_sem)
    assert "100" in print_table(one)


def test_repeat_specimens_are_averaged_with_a_note():
    table = population_table()
    extra = table[(table.patient == "P1") & (table.timepoint == "peak")].copy()
    extra["specimen"] = "P1-peak-repeat"
    extra["absolute_per_uL"] *= 3
    c = compare_timepoints(pd.concat([table, extra]), "baseline", "peak")
    assert row(c, "CD4+ T cells").peak_mean == pytest.approx((1176 * 2 + 1498 + 1820) / 3)
    assert any("P1 has 2 specimens at peak" in n for n in c.notes)


def test_labels_are_compared_as_text():
    table = population_table(timepoints=(0, 6))
    table["patient"] = table["patient"].str[1:].astype(int)
    c = compare_timepoints(table, 0, "6")
    assert (c.baseline, c.peak) == ("0", "6")
    assert row(c, "CD4+ T cells").baseline_mean == pytest.approx(206)


def test_bad_arguments():
    table = population_table()
    with pytest.raises(PopulationTableError, match="'week 2'.*timepoints in the table"):
        compare_timepoints(table, "baseline", "week 2")
    with pytest.raises(ValueError, match="same timepoint"):
        compare_timepoints(table, "peak", "peak")
    with pytest.raises(PopulationTableError, match="lacks columns tube, absolute_per_uL"):
        compare_timepoints(table.drop(columns=["tube", "absolute_per_uL"]), "baseline", "peak")
    only_t = table[table.population == "T cells"]
    with pytest.raises(PopulationTableError, match="none of the Table 1 populations"):
        compare_timepoints(only_t, "baseline", "peak")


def test_csv_header_order(comparison, tmp_path):
    path = comparison.to_csv(tmp_path / "t.csv")
    header = path.read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert header[:8] == [
        "population",
        "baseline_mean",
        "baseline_sem",
        "peak_mean",
        "peak_sem",
        "p_value",
        "reference_low",
        "reference_high",
    ]
    for column in ("n_pairs", "fold_change", "significant", "baseline_below", "peak_above"):
        assert column in header
    back = pd.read_csv(path)
    assert back.population.tolist() == comparison.table.population.tolist()
    assert back.baseline_mean[0] == pytest.approx(206)


def test_markdown_table1_layout(comparison):
    md = comparison.to_markdown()
    lines = md.splitlines()
    cd4 = next(line for line in lines if line.startswith("| CD4+ T cells |"))
    assert "| 206 ± 71 |" in cd4 and "| 1498 ± 186 § |" in cd4 and "| 359–1565 |" in cd4
    nk = next(line for line in lines if line.startswith("| NK cells |"))
    assert "§" not in nk and "| 80 ± 3 |" in nk
    mem = next(line for line in lines if line.startswith("| memory B cells |"))
    assert "| 1.5 ± 0.3 |" in mem
    assert "simulated" not in md.lower()
    assert "| population | phenotype | baseline | peak | reference |" in md
    comparison.simulated = True
    try:
        assert "Simulated specimens" in comparison.to_markdown().splitlines()[2]
        assert "Simulated specimens" in comparison.to_html()
    finally:
        comparison.simulated = False


class WellFormed(HTMLParser):
    """Checks that every opened element is closed in order; collects text and attributes."""

    VOID = {"meta", "br", "hr", "img", "link", "input", "col", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += attrs
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_well_formed_self_contained_and_escaped():
    counts = {("T", "<b>CD4</b> & co"): ((83, 206, 329), (1176, 1498, 1820))}
    table = population_table(counts)
    table = table[~((table.patient == "P2") & (table.timepoint == "baseline"))]
    c = compare_timepoints(table, "baseline", "peak", populations=["<b>CD4</b> & co"])
    page = c.to_html()
    assert page.startswith("<!DOCTYPE html>")
    parser = WellFormed()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert {"html", "head", "body", "table", "thead", "tbody", "style"} <= parser.tags
    assert not parser.tags & {"script", "link", "img", "iframe"}
    assert not any(name in ("src", "href") for name, _ in parser.attrs)
    assert "http" not in page and "url(" not in page
    assert "<b>CD4</b>" not in page and "&lt;b&gt;CD4&lt;/b&gt; &amp; co" in page
    text = "".join(parser.text)
    assert "<b>CD4</b> & co" in text
    assert "P2: baseline — no specimen at baseline" in text


def test_print_table(comparison):
    text = print_table(comparison)
    lines = text.splitlines()
    assert lines[0] == "Absolute counts (cells/µL), baseline vs peak"
    cd4 = next(line for line in lines if line.startswith("CD4+ T cells"))
    assert "206 ± 71" in cd4 and "1498 ± 186 §" in cd4 and "359–1565" in cd4
    assert any(line.startswith("note: ") for line in lines)


def test_compare_folder_writes_table1(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    table = population_table()
    table["patient"] = table["patient"].str.replace("P", "00")  # '001' stays text
    table.to_csv(run / "populations.csv", index=False)
    c = compare_folder(run, "baseline", "peak", simulated=True)
    assert c.simulated and list(c.missing.patient) == []
    assert set(c.table.population) >= {"CD4+ T cells", "memory B cells"}
    for suffix in ("csv", "md", "html"):
        assert (run / f"table1.{suffix}").is_file()
    assert "206 ± 71" in (run / "table1.md").read_text(encoding="utf-8")
    assert "Simulated" in (run / "table1.md").read_text(encoding="utf-8")
    out = tmp_path / "elsewhere" / "report"
    compare_folder(run, "baseline", "peak", out=out)
    assert (out / "table1.html").is_file()
    paths = c.write(tmp_path / "w", stem="cohort")
    assert sorted(p.name for p in paths.values()) == ["cohort.csv", "cohort.html", "cohort.md"]


def test_compare_folder_errors_name_the_file(tmp_path):
    with pytest.raises(PopulationTableNotFound, match="populations.csv: not found") as err:
        compare_folder(tmp_path, "baseline", "peak")
    assert str(tmp_path / "populations.csv") in str(err.value)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, CytowhimError)
    with pytest.raises(PopulationTableNotFound, match="does not exist"):
        compare_folder(tmp_path / "nowhere", "baseline", "peak")

    path = tmp_path / "populations.csv"
    population_table().drop(columns=["patient", "absolute_per_uL"]).to_csv(path, index=False)
    with pytest.raises(PopulationTableError) as err:
        compare_folder(tmp_path, "baseline", "peak")
    message = str(err.value)
    assert message.startswith(str(path)) and "lacks columns patient, absolute_per_uL" in message

    path.write_text("", encoding="utf-8")
    with pytest.raises(PopulationTableError, match="cannot be read as CSV"):
        compare_folder(tmp_path, "baseline", "peak")

    table = population_table()
    table["absolute_per_uL"] = table["absolute_per_uL"].astype(object)
    table.loc[3, "absolute_per_uL"] = "lots"
    table.to_csv(path, index=False)
    with pytest.raises(PopulationTableError, match="absolute_per_uL.*'lots'"):
        compare_folder(tmp_path, "baseline", "peak")

    population_table().to_csv(path, index=False)
    with pytest.raises(PopulationTableError, match=r"populations\.csv: no rows with timepoint"):
        compare_folder(tmp_path, "baseline", "month 6")
    assert not (tmp_path / "table1.csv").exists()


counts_st = st.floats(min_value=1, max_value=10_000, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=2, max_value=6).flatmap(
        lambda n: st.lists(st.tuples(counts_st, counts_st), min_size=n, max_size=n)
    )
)
def test_swapping_timepoints_inverts_fold_change_and_keeps_p(pairs):
    before, after = zip(*pairs)
    patients = tuple(f"P{i}" for i in range(len(pairs)))
    table = population_table({("T", "NK cells"): (before, after)}, patients)
    forward = row(compare_timepoints(table, "baseline", "peak"), "NK cells")
    backward = row(compare_timepoints(table, "peak", "baseline"), "NK cells")
    assert backward.fold_change == pytest.approx(1 / forward.fold_change, rel=1e-9)
    assert backward.baseline_mean == pytest.approx(forward.peak_mean)
    if math.isnan(forward.p_value):
        assert math.isnan(backward.p_value)
    else:
        assert backward.p_value == pytest.approx(forward.p_value, rel=1e-9)
        assert backward.significant == forward.significant


# ---------------------------------------------------------------------------------------------
# issue 9: release rule, age/sex intervals, '<1', ASCII names


def test_failed_qc_counts_are_left_out_and_listed_unless_included():
    table = population_table()
    table["qc_status"] = ""
    bad = (
        (table.patient == "P2") & (table.timepoint == "peak") & (table.population == "CD4+ T cells")
    )
    table.loc[bad, "qc_status"] = "fail"
    table.loc[bad, "qc"] = "fail lymphosum: lymphosum 82.0 % of lymphocytes in tube T"
    c = compare_timepoints(table, "baseline", "peak")
    cd4 = row(c, "CD4+ T cells")
    assert cd4.n_pairs == 2
    values = COUNTS["T", "CD4+ T cells"]
    assert cd4.peak_mean == pytest.approx(np.mean([values[1][0], values[1][2]]))
    held = c.missing[c.missing.patient == "P2"]
    assert list(held.detail) == ["held back by failed QC: CD4+ T cells (lymphosum)"]
    assert any("left out" in n for n in c.notes)
    assert "held back by failed QC" in c.to_markdown()
    # other populations of that specimen are still paired
    assert row(c, "NK cells").n_pairs == 3
    included = compare_timepoints(table, "baseline", "peak", include_flagged=True)
    assert row(included, "CD4+ T cells").n_pairs == 3
    assert row(included, "CD4+ T cells").peak_mean == pytest.approx(np.mean(values[1]))


def test_compare_uses_each_patients_age_band(tmp_path):
    """compare --reference: a lab's age-banded intervals judge each patient by their own band."""
    table = population_table()
    table["age"] = table.patient.map({"P1": 4.0, "P2": 30.0, "P3": 40.0})
    ref = tmp_path / "ref.csv"
    ref.write_text(
        "population,low,high,age_min,age_max,source\n"
        "CD4+ T cells,404,1612,18,,adult lab band\n"
        "CD4+ T cells,700,2200,2,6,child lab band\n"
    )
    from cytowhim.reference import ReferenceIntervals

    c = compare_timepoints(table, "baseline", "peak", reference=ReferenceIntervals.load(ref))
    cd4 = row(c, "CD4+ T cells")
    # baseline 83 (child band 700-2200), 206, 329 (adult 404-1612): all three below
    assert (cd4.baseline_below, cd4.baseline_within, cd4.baseline_above) == (3, 0, 0)
    # peak 1176 (child: within), 1498 (adult: within), 1820 (adult: above)
    assert (cd4.peak_below, cd4.peak_within, cd4.peak_above) == (0, 2, 1)
    assert cd4.reference_varies and math.isnan(cd4.reference_low)
    assert "by age/sex" in c.to_markdown()


def test_values_below_one_cell_print_as_less_than_one():
    counts = {("B", "immature B cells"): ((0.4, 0.5, 0.7), (0.9, 1.1, 1.3))}
    c = compare_timepoints(population_table(counts), "baseline", "peak")
    text = c.to_markdown()
    assert "| <1 |" in text.replace(" ± ", "|")
    assert "0.53" not in text and "0.5 ±" not in text
    assert "<1" in print_table(c)


def test_names_ascii_in_csv_and_typographic_in_markdown_and_html(tmp_path):
    counts = {("B", "CD27- B cells"): ((9, 11, 13), (50, 155, 260))}
    c = compare_timepoints(population_table(counts), "baseline", "peak")
    paths = c.write(tmp_path)
    csv_text = paths["csv"].read_text(encoding="utf-8")
    assert "CD27- B cells" in csv_text and "\u2212" not in csv_text
    assert "CD27\u2212 B cells" in paths["md"].read_text(encoding="utf-8")
    assert "CD19+CD27\u2212" in paths["html"].read_text(encoding="utf-8")
    # a table written with the typographic minus (older runs) is read as ASCII
    old = population_table({("B", "CD27\u2212 B cells"): ((9, 11, 13), (50, 155, 260))})
    assert "CD27- B cells" in set(compare_timepoints(old, "baseline", "peak").table.population)


def test_patients_without_an_applicable_interval_are_not_counted_within():
    table = population_table()
    table["reference_low"], table["reference_high"] = math.nan, math.nan
    cd4 = table.population == "CD4+ T cells"
    table.loc[cd4 & (table.patient == "P1"), ["reference_low", "reference_high"]] = [359, 1565]
    c = compare_timepoints(table, "baseline", "peak")
    row_ = row(c, "CD4+ T cells")
    # only P1 has an interval (its age band); P2 and P3 have none: 1/0/0, not 1/2/0
    assert (row_.baseline_below, row_.baseline_within, row_.baseline_above) == (1, 0, 0)
    assert (row_.peak_below, row_.peak_within, row_.peak_above) == (0, 1, 0)


def test_old_tables_hold_back_counts_whose_base_failed():
    """A populations.csv without qc_status: a failed lymphosum on the lymphocytes row still
    holds back the counts made against them (the reviewer's old-format table let them in)."""
    table = population_table()
    lymph = table[table.population == "T cells"].copy()
    lymph["population"], lymph["base"] = "lymphocytes", "lymphocytes"
    bad = (lymph.patient == "P2") & (lymph.timepoint == "peak")
    lymph["qc"] = ""
    lymph.loc[bad, "qc"] = "fail lymphosum: lymphosum 80.0 % of lymphocytes in tube T"
    table = pd.concat([table, lymph], ignore_index=True).drop(
        columns=["qc_status"], errors="ignore"
    )
    c = compare_timepoints(table, "baseline", "peak")
    assert row(c, "CD4+ T cells").n_pairs == 2
    assert "CD4+ T cells (lymphosum on lymphocytes)" in " ".join(c.missing.detail)
    no_qc = compare_timepoints(table.drop(columns=["qc"]), "baseline", "peak")
    assert any("could not be held back" in n for n in no_qc.notes)

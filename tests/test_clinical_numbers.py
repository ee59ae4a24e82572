"""Issue 9, end to end: numbers a lab can sign out. Units in the manifest, age and sex reaching
the reference intervals, flags on reported values, populations.csv as printed, ASCII names,
the CD4/CD8 ratio, and compare independent of row order."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest

from cytowhim.cli import main
from cytowhim.reference import ReferenceIntervals
from cytowhim.run import run_manifest, write_run
from cytowhim.simulate import simulate


@pytest.fixture(scope="module")
def specimens(tmp_path_factory):
    out = tmp_path_factory.mktemp("specimens")
    simulate(out, "whim-trial", seed=99, events=(30_000, 40_000))
    return out


@pytest.fixture(scope="module")
def one_specimen(specimens):
    """The manifest rows of P1-baseline (3 tubes), with the CBC in cells/µL."""
    m = pd.read_csv(specimens / "manifest.csv")
    return m[m.specimen == "P1-baseline"].reset_index(drop=True)


@pytest.fixture(scope="module")
def run_all(specimens, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", str(specimens / "manifest.csv"), "--out", str(out), "-q"]) == 0
    return out


def _run(manifest: pd.DataFrame, folder, name="manifest.csv", **kwargs):
    path = folder / name
    manifest.to_csv(path, index=False)
    return run_manifest(path, **kwargs)


def _row(table, population, tube="T"):
    rows = table[(table.population == population) & (table.tube == tube)]
    assert len(rows) == 1, (population, tube)
    return rows.iloc[0]


def test_cbc_units_in_headers_give_the_same_counts(specimens, one_specimen, tmp_path):
    plain = _run(one_specimen, specimens, "plain.csv").table
    si = one_specimen.rename(
        columns={"WBC": "WBC (x10^9/L)", "ALC": "ALC (x10^3/uL)", "AMC": "AMC [10^3/µL]"}
    )
    for col in ("WBC (x10^9/L)", "ALC (x10^3/uL)", "AMC [10^3/µL]"):
        si[col] = si[col] / 1000
    converted = _run(si, specimens, "si.csv").table
    for population in ("CD4+ T cells", "NK cells", "lymphocytes"):
        assert _row(converted, population).absolute_per_uL == pytest.approx(
            _row(plain, population).absolute_per_uL, rel=1e-9
        )
    assert _row(converted, "monocytes", "mono").absolute_per_uL == pytest.approx(
        _row(plain, "monocytes", "mono").absolute_per_uL, rel=1e-9
    )
    # AMC typed in x10^3/µL under a header that states no unit: refused, not 0.08 cells/µL
    wrong = one_specimen.copy()
    wrong["AMC"] = wrong["AMC"] / 1000
    result = _run(wrong, specimens, "wrong.csv")
    assert len(result.table) == 0
    assert any("AMC" in e and "below one cell" in e for e in result.errors)


def test_age_and_sex_from_the_manifest_choose_the_interval(specimens, one_specimen, tmp_path):
    """An adult band 404-1612 used to leave a CD4 count of 129/µL unflagged: the manifest had
    no age, and run passed none."""
    plain = _run(one_specimen, specimens, "plain.csv").table
    cd4 = _row(plain, "CD4+ T cells").absolute_per_uL
    assert cd4 < 404
    ref = tmp_path / "lab.csv"
    ref.write_text(
        "population,low,high,age_min,age_max,sex,source\n"
        "CD4+ T cells,404,1612,18,,,lab adult band\n"
        f"CD4+ T cells,{math.floor(cd4) - 50},3000,2,6,,lab child band\n"
        "NK cells,90,600,18,,F,lab adult women\n",
        encoding="utf-8",
    )
    reference = ReferenceIntervals.load(ref)
    adult = one_specimen.assign(age=40, sex="F")
    table = _run(adult, specimens, "adult.csv", reference=reference).table
    row = _row(table, "CD4+ T cells")
    assert row.reference_flag == "L"
    assert (row.reference_low, row.reference_high) == (404, 1612)
    assert row.reference_band == "age 18 y and over" and row.reference_source == "lab adult band"
    assert row.age == 40 and row.sex == "F"
    assert _row(table, "NK cells").reference_band == "age 18 y and over, F"
    child = one_specimen.assign(age=4)
    row = _row(_run(child, specimens, "child.csv", reference=reference).table, "CD4+ T cells")
    assert row.reference_flag == "" and row.reference_band == "age 2 to under 6 y"
    # no age: no band applies, and the run says so instead of staying silent
    unknown = _run(one_specimen, specimens, "unknown.csv", reference=reference)
    row = _row(unknown.table, "CD4+ T cells")
    assert row.reference_flag == "" and math.isnan(row.reference_low)
    assert "no reference interval for CD4+ T cells applies (age not given" in row.qc
    assert any(
        f["rule"] == "reference" and f["population"] == "CD4+ T cells" for f in unknown.flags
    )


def test_flags_use_the_reported_value(specimens, one_specimen, tmp_path):
    """358.6 printed as 359 was flagged L against a low limit of 359."""
    table = _run(one_specimen, specimens, "plain.csv").table
    exact = table[(table.units == "cells/uL") & (table.absolute_per_uL >= 10)]
    rounds_up = exact[(exact.absolute_per_uL % 1) >= 0.5].iloc[0]
    shown = round(rounds_up.absolute_per_uL)
    assert rounds_up.absolute_per_uL < shown  # the unrounded value is below the limit
    ref = tmp_path / "at.csv"
    ref.write_text(f"population,low,high\n{rounds_up.population},{shown},{shown + 100}\n")
    again = _run(one_specimen, specimens, "plain.csv", reference=ReferenceIntervals.load(ref)).table
    row = _row(again, rounds_up.population, rounds_up.tube)
    assert row.reported == str(shown) and row.reference_flag == ""


def test_populations_csv_is_printed_as_reported_and_h5_keeps_full_precision(run_all):
    text = (run_all / "populations.csv").read_text(encoding="utf-8")
    assert "\u2212" not in text  # ASCII names: 'CD27- B cells'
    table = pd.read_csv(run_all / "populations.csv", dtype=str, keep_default_na=False)
    cells = table[table.units == "cells/uL"]
    assert set(table.units) == {"cells/uL", "ratio"}
    assert cells.events.str.fullmatch(r"\d+").all()  # whole events, no '70047.0'
    assert cells.base_events[cells.base_events != ""].str.fullmatch(r"\d+").all()
    values = cells.absolute_per_uL[cells.absolute_per_uL != ""].astype(float)
    # whole cells/µL from 10, one decimal below: no float noise such as 306.09999999999997
    assert (values[values >= 10] == values[values >= 10].round()).all()
    assert (values[values < 10] == values[values < 10].round(1)).all()
    assert (
        cells.percent_of_base[cells.percent_of_base != ""].str.fullmatch(r"\d+(\.\d{1,2})?").all()
    )
    assert "CD27- B cells" in set(table.population)
    small = cells[(values.reindex(cells.index) < 1).fillna(False)]
    assert (small.reported == "<1").all() and len(small) > 0
    with h5py.File(run_all / "results.h5", "r") as f:
        assert f.attrs["format"]
    from cytowhim.store import Results

    stored = Results(run_all / "results.h5").populations()
    full = stored[stored.units == "cells/uL"].absolute_per_uL.dropna()
    assert (full != full.round(1)).any()  # full precision kept


def test_cd4_cd8_ratio_is_reported(run_all):
    table = pd.read_csv(run_all / "populations.csv", keep_default_na=False)
    for _, rows in table[table.tube == "T"].groupby("specimen"):
        events = dict(zip(rows.population, rows.events))
        ratio = rows[rows.population == "CD4/CD8 ratio"].iloc[0]
        expected = int(events["CD4+ T cells"]) / int(events["CD8+ T cells"])
        assert float(ratio.reported) == pytest.approx(expected, abs=0.005)
        assert ratio.units == "ratio" and ratio.absolute_per_uL == ""


def test_ascii_names_find_populations_in_gating_results(specimens):
    import cytowhim as cw
    from cytowhim.resources import data_path
    from gating import read_strategy

    result = read_strategy(data_path("strategies", "B.yaml")).apply(
        cw.read_fcs(specimens / "P1-baseline_B.fcs")
    )
    assert result.count("CD27- B cells") == result.count("CD27\u2212 B cells") > 0


def test_compare_does_not_depend_on_row_order(run_all, tmp_path):
    """B tube first changed baseline B cells from 19 to 13 cells/µL; now the panel decides."""
    first = tmp_path / "first"
    assert (
        main(
            ["compare", str(run_all), "--baseline", "baseline", "--peak", "peak", "-o", str(first)]
        )
        == 0
    )
    table = pd.read_csv(run_all / "populations.csv", dtype=str, keep_default_na=False)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    order = np.random.default_rng(3).permutation(len(table))
    table.iloc[order].to_csv(shuffled / "populations.csv", index=False)
    b_first = pd.concat([table[table.tube == "B"], table[table.tube != "B"]])
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    b_first.to_csv(flipped / "populations.csv", index=False)
    expected = (first / "table1.csv").read_text(encoding="utf-8")
    for folder in (shuffled, flipped):
        assert main(["compare", str(folder), "--baseline", "baseline", "--peak", "peak"]) == 0
        assert (folder / "table1.csv").read_text(encoding="utf-8") == expected
    t1 = pd.read_csv(first / "table1.csv").set_index("population")
    assert t1.loc["B cells", "tube"] == "T" and t1.loc["memory B cells", "tube"] == "B"


def test_compare_cli_takes_panels_and_reference(run_all, tmp_path, capsys):
    panels = tmp_path / "panels.yaml"
    from cytowhim.resources import data_path

    text = data_path("panels.yaml").read_text(encoding="utf-8").replace("B cells: T", "B cells: B")
    panels.write_text(
        text.replace("strategies/", str(data_path("strategies")) + "/"), encoding="utf-8"
    )
    ref = tmp_path / "ref.csv"
    ref.write_text("population,low,high\nB cells,1,2\n", encoding="utf-8")
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            str(run_all),
            "--baseline",
            "baseline",
            "--peak",
            "peak",
            "-o",
            str(out),
            "--panels",
            str(panels),
            "--reference",
            str(ref),
        ]
    )
    assert code == 0
    t1 = pd.read_csv(out / "table1.csv").set_index("population")
    assert t1.loc["B cells", "tube"] == "B"
    assert (t1.loc["B cells", "reference_low"], t1.loc["B cells", "reference_high"]) == (1, 2)
    assert t1.loc["B cells", "baseline_above"] == 3
    assert math.isnan(t1.loc["CD4+ T cells", "reference_low"])


def test_write_run_rounds_but_run_result_keeps_precision(specimens, one_specimen, tmp_path):
    result = _run(one_specimen, specimens, "plain.csv")
    write_run(result, tmp_path)
    printed = pd.read_csv(tmp_path / "populations.csv")
    cd4_exact = _row(result.table, "CD4+ T cells").absolute_per_uL
    cd4_printed = _row(printed, "CD4+ T cells").absolute_per_uL
    assert cd4_printed == round(cd4_exact) and cd4_exact != cd4_printed

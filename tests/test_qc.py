"""QC rules on crafted population tables: lymphosum, T-sum, CD3 across tubes, event counts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cytowhim.qc import (
    QCError,
    QCFlag,
    QCRules,
    QCRulesError,
    add_qc_note,
    check_specimen,
    check_table,
    qc_status,
    read_lab_rules,
)

COLUMNS = ["specimen", "tube", "population", "events", "base"]


def tube(spec="S1", name="T", lymph=10_000, t=7000, b=1500, nk=1500, cd4=4500, cd8=2400):
    """Rows of one lymphocyte tube (events); None leaves a population out."""
    pops = {
        "lymphocytes": lymph,
        "T cells": t,
        "B cells": b,
        "NK cells": nk,
        "CD4+ T cells": cd4,
        "CD8+ T cells": cd8,
    }
    return [(spec, name, p, n, "lymphocytes") for p, n in pops.items() if n is not None]


def frame(*tubes):
    return pd.DataFrame([r for rows in tubes for r in rows], columns=COLUMNS)


def rules_of(flags):
    return [(f.tube, f.population, f.rule, f.severity) for f in flags]


def test_clean_specimen_has_no_flags():
    # lymphosum 70 + 15 + 15 = 100 %, T-sum 45 + 24 = 69 vs 70, one tube
    assert check_specimen(frame(tube())) == []


def test_lymphosum_93_warns_and_85_fails():
    warn = check_specimen(frame(tube(t=6300, b=1500, nk=1500, cd4=4000, cd8=2300)))
    assert rules_of(warn) == [("T", "lymphocytes", "lymphosum", "warn")]
    assert "lymphosum 93.0 %" in warn[0].message and "target 95–105 %" in warn[0].message
    fail = check_specimen(frame(tube(t=5500, b=1500, nk=1500, cd4=3500, cd8=2000)))
    assert rules_of(fail) == [("T", "lymphocytes", "lymphosum", "fail")]
    assert "lymphosum 85.0 %" in fail[0].message and "acceptable 90–110 %" in fail[0].message


def test_lymphosum_needs_t_b_and_nk_in_the_tube():
    assert check_specimen(frame(tube(t=5000, b=None, cd4=None, cd8=None))) == []


def test_tsum_off_by_12_points_fails():
    flags = check_specimen(frame(tube(cd4=4000, cd8=1800)))  # 40 + 18 = 58 vs CD3 70
    assert rules_of(flags) == [("T", "lymphocytes", "tsum", "fail")]
    assert "12.0 points apart (> 10)" in flags[0].message
    assert check_specimen(frame(tube(cd4=4000, cd8=2100))) == []  # 61 vs 70: 9 points


def test_cd3_differing_by_4_points_between_tubes_flags_both_tubes():
    t_tube = tube(name="T")  # CD3 70 %
    b_tube = tube(name="B", t=6600, b=1700, nk=1700, cd4=None, cd8=None)  # CD3 66 %
    flags = check_specimen(frame(t_tube, b_tube))
    assert rules_of(flags) == [
        ("T", "lymphocytes", "cd3_across_tubes", "fail"),
        ("B", "lymphocytes", "cd3_across_tubes", "fail"),
    ]
    assert "differs by 4.0 points" in flags[0].message
    assert "tube T 70.0 %, tube B 66.0 %" in flags[0].message
    close = tube(name="B", t=6750, b=1625, nk=1625, cd4=None, cd8=None)  # 67.5 %: 2.5 points
    assert check_specimen(frame(t_tube, close)) == []


def test_too_few_lymphocytes_warns():
    flags = check_specimen(frame(tube(lymph=2000, t=1400, b=300, nk=300, cd4=900, cd8=480)))
    assert rules_of(flags) == [("T", "lymphocytes", "min_lymphocytes", "warn")]
    assert "2000 gated lymphocytes" in flags[0].message


def test_lymphocytes_of_a_monocyte_tube_are_not_counted():
    mono = [
        ("S1", "mono", "lymphocytes", 800, "lymphocytes"),
        ("S1", "mono", "monocytes (scatter)", 3000, "monocytes (scatter)"),
    ]
    assert check_specimen(frame(tube(), mono)) == []


def test_population_under_100_events_is_imprecise():
    rows = [*tube(), ("S1", "T", "CD8 central memory", 50, "lymphocytes")]
    flags = check_specimen(frame(rows))
    assert rules_of(flags) == [("T", "CD8 central memory", "imprecise", "info")]
    assert "50 events" in flags[0].message and "≈ 14 %" in flags[0].message
    zero = check_specimen(frame([*tube(), ("S1", "T", "CD4 naive", 0, "lymphocytes")]))
    assert "0 events" in zero[0].message


def test_gate_paths_match_by_their_last_part():
    rows = [
        (s, t, ("singlets/" if p == "lymphocytes" else "singlets/lymphocytes/") + p, n, b)
        for s, t, p, n, b in tube(t=5500, b=1500, nk=1500, cd4=3500, cd8=2000)
    ]
    flags = check_specimen(frame(rows))
    assert rules_of(flags) == [("T", "singlets/lymphocytes", "lymphosum", "fail")]


def test_subsets_without_lymphocytes_row_warn():
    rows = [r for r in tube() if r[2] != "lymphocytes"]
    flags = check_specimen(frame(rows))
    assert rules_of(flags) == [("T", "T cells", "no_lymphocytes", "warn")]


def test_check_specimen_refuses_several_specimens_and_duplicates():
    with pytest.raises(QCError, match="expected one specimen; got S1, S2"):
        check_specimen(frame(tube("S1"), tube("S2")))
    dup = frame([*tube(), ("S1", "T", "gates/T cells", 10, "lymphocytes")])
    with pytest.raises(QCError, match="specimen S1, tube T: population 'T cells' appears twice"):
        check_specimen(dup)
    with pytest.raises(QCError, match="no column 'events'"):
        check_specimen(frame(tube()).drop(columns="events"))


def test_check_table_fills_qc_per_row_and_keeps_every_row():
    table = frame(
        tube("S1", t=6300, b=1500, nk=1500, cd4=4000, cd8=2300),  # lymphosum 93: warn
        tube("S2"),
        [("S2", "T", "CD8 central memory", 50, "lymphocytes")],
    )
    table["qc"] = ""
    table.loc[7, "qc"] = "no CBC ALC"  # S2's T cells row: an earlier note is kept
    out, flags = check_table(table)
    assert len(out) == len(table) and list(out["population"]) == list(table["population"])
    assert [f.rule for f in flags] == ["lymphosum", "imprecise"]
    s1_lymph = out.loc[(out["specimen"] == "S1") & (out["population"] == "lymphocytes"), "qc"]
    assert s1_lymph.item() == str(flags[0]) and s1_lymph.item().startswith("warn lymphosum: ")
    assert out.loc[12, "qc"].startswith("info imprecise: 50 events")
    assert out.loc[7, "qc"] == "no CBC ALC"
    assert (out.drop(index=[0, 7, 12])["qc"] == "").all()
    again, _ = check_table(out)  # a second run adds nothing
    assert list(again["qc"]) == list(out["qc"])


def test_check_table_on_an_empty_table():
    out, flags = check_table(pd.DataFrame(columns=COLUMNS))
    assert flags == [] and "qc" in out.columns and out.empty


def test_lab_thresholds_from_yaml(tmp_path):
    path = tmp_path / "qc.yaml"
    path.write_text(
        "# our lab\nlymphosum_target: [97, 103]\nlymphosum_acceptable: [92, 108]\n"
        "min_lymphocytes: 5000\ncd3_tube_tolerance: 2\n"
    )
    rules = QCRules.from_yaml(path)
    assert rules.lymphosum_target == (97.0, 103.0) and rules.min_lymphocytes == 5000
    assert rules.tsum_tolerance == 10.0  # unset: the default
    table = frame(tube(t=6600, b=1500, nk=1500, cd4=4200, cd8=2300))  # lymphosum 96 %
    assert check_specimen(table) == []
    assert rules_of(check_specimen(table, rules)) == [("T", "lymphocytes", "lymphosum", "warn")]


def test_lab_thresholds_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "qc.yaml"
    path.write_text("lymphosum_target: [95, 105]\nmin_lymphocyte: 2000\n")
    with pytest.raises(QCRulesError, match=r"qc\.yaml: unknown QC rule\(s\) 'min_lymphocyte'"):
        QCRules.from_yaml(path)
    path.write_text("lymphosum_target: [85, 105]\n")
    with pytest.raises(QCRulesError, match="qc.yaml: .*must lie within lymphosum_acceptable"):
        QCRules.from_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(QCRulesError, match="must be a mapping"):
        QCRules.from_yaml(path)
    path.write_text("tsum_tolerance: [1\n")
    with pytest.raises(QCRulesError, match="not valid YAML"):
        QCRules.from_yaml(path)
    with pytest.raises(QCRulesError, match="absent.yaml: QC rules file not found"):
        QCRules.from_yaml(tmp_path / "absent.yaml")
    with pytest.raises(QCRulesError, match="min_lymphocytes must be a whole number"):
        QCRules.from_mapping({"min_lymphocytes": 2.5})
    with pytest.raises(QCRulesError, match="tsum_tolerance must be a number >= 0"):
        QCRules.from_mapping({"tsum_tolerance": "ten"})
    assert QCRules.from_mapping({}) == QCRules()


def test_flags_and_notes():
    flag = QCFlag("S1", "T", "lymphocytes", "lymphosum", "fail", "lymphosum 85 %")
    assert str(flag) == "fail lymphosum: lymphosum 85 %"
    with pytest.raises(QCError, match="severity"):
        QCFlag("S1", "T", "lymphocytes", "lymphosum", "bad", "x")
    assert add_qc_note("", "a") == "a"
    assert add_qc_note("a", "b") == "a; b"
    assert add_qc_note("a; b", "a") == "a; b"
    assert math.isclose(QCRules().lymphosum_acceptable[0], 90.0)


def test_values_on_the_bounds_pass():
    # lymphosum exactly 95 and 90 % (events chosen so float sums would round), T-sum exactly 10
    assert check_specimen(frame(tube(lymph=3000, t=2130, b=360, nk=360, cd4=None, cd8=None))) == []
    edge = check_specimen(frame(tube(lymph=3000, t=1980, b=360, nk=360, cd4=None, cd8=None)))
    assert [f.severity for f in edge] == ["warn"]  # 90 %: acceptable, not on target
    assert check_specimen(frame(tube(cd4=4000, cd8=2000))) == []  # 60 vs 70: 10 points


# ---------------------------------------------------------------------------------------------
# issue 9: cross-tube B/NK, nesting, CBC consistency, CBC vs flow, release status


def test_b_cells_differing_48_percent_between_tubes_warn():
    """B% 4.4 in the T tube and 2.3 in the B tube (48 % apart) passed every check before."""
    t_tube = tube(name="T", b=440, nk=1060, t=8500, cd4=5500, cd8=2900)
    b_tube = tube(name="B", b=230, nk=1070, t=8700, cd4=None, cd8=None)
    flags = [f for f in check_specimen(frame(t_tube, b_tube)) if f.rule == "cross_tube"]
    assert rules_of(flags) == [
        ("T", "B cells", "cross_tube", "warn"),
        ("B", "B cells", "cross_tube", "warn"),
    ]
    assert "differ by 2.10 points" in flags[0].message and "tube T 4.40 %" in flags[0].message
    # NK 10.6 vs 10.7 %: within max(1 point, 25 % of the mean)
    assert not any(f.population == "NK cells" for f in flags)
    # B 4.4 vs 4.0 %: 0.4 points, within 1 point
    close = tube(name="B", b=400, nk=1070, t=8530, cd4=None, cd8=None)
    assert not [f for f in check_specimen(frame(t_tube, close)) if f.rule == "cross_tube"]
    strict = QCRules(cross_tube_points=0.2, cross_tube_relative=0.05)
    assert [f.rule for f in check_specimen(frame(t_tube, close), strict)].count("cross_tube") == 2


def test_percent_of_base_above_100_fails_and_not_nested_warns():
    table = pd.DataFrame(
        {
            "specimen": ["S1"] * 3,
            "tube": ["mono"] * 3,
            "population": ["monocytes (scatter)", "monocytes", "classical monocytes"],
            "events": [600, 612, 540],
            "base": ["monocytes (scatter)"] * 3,
            "percent_of_base": [100.0, 100.19, 90.0],
            "nested": [True, False, True],
        }
    )
    flags = check_specimen(table)
    assert rules_of(flags) == [
        ("mono", "monocytes", "percent_of_base", "fail"),
        ("mono", "monocytes", "not_nested", "warn"),
    ]
    assert "100.19 % of its base" in flags[0].message


def test_cbc_consistency_flags_a_subset_above_wbc_and_a_sum_above_it():
    rows = frame(tube())
    flags = check_specimen(rows, cbc={"WBC": 1176, "ANC": 300, "ALC": 5000, "AMC": 82})
    cbc_flags = [f for f in flags if f.rule == "cbc_consistency"]
    assert [(f.tube, f.population, f.severity) for f in cbc_flags] == [("", "", "fail")]
    assert "ALC 5000 cells/µL is above the WBC 1176" in cbc_flags[0].message
    flags = check_specimen(rows, cbc={"WBC": 1000, "ANC": 500, "ALC": 500, "AMC": 100})
    assert [f.rule for f in flags] == ["cbc_consistency"]
    assert "= 1100 cells/µL exceeds the WBC 1000 by more than 5 %" in flags[0].message
    lenient = QCRules(cbc_sum_tolerance=0.2)
    assert (
        check_specimen(rows, lenient, cbc={"WBC": 1000, "ANC": 500, "ALC": 500, "AMC": 100}) == []
    )
    assert check_specimen(rows, cbc={"WBC": 1000, "ANC": 600, "ALC": 300, "AMC": 80}) == []


def test_cbc_versus_flow_differential():
    """Lymphocytes 40 % of CD45+ by flow; an ALC typed 1000-fold low (5 instead of 5,000 with
    WBC 12,000) is 0.04 % of the WBC: fail. A 20-point disagreement warns."""
    rows = pd.DataFrame(
        {
            "specimen": ["S1"] * 3,
            "tube": ["T"] * 3,
            "population": ["CD45+ leukocytes", "lymphocytes", "monocytes (scatter)"],
            "events": [10_000, 4000, 800],
            "base": ["CD45+ leukocytes", "lymphocytes", "monocytes (scatter)"],
        }
    )
    ok = {"WBC": 12_000, "ANC": 6000, "ALC": 4800, "AMC": 960}
    assert check_specimen(rows, cbc=ok) == []
    flags = check_specimen(rows, cbc={**ok, "ALC": 5.0})
    assert rules_of(flags) == [("T", "lymphocytes", "cbc_vs_flow", "fail")]
    assert "lymphocytes are 40.0 % of CD45+ leukocytes in tube T" in flags[0].message
    flags = check_specimen(rows, cbc={**ok, "ALC": 2400, "ANC": 8400})
    assert rules_of(flags) == [("T", "lymphocytes", "cbc_vs_flow", "warn")]


def test_check_table_attaches_cbc_flags_to_base_rows_and_status_inherits_from_base():
    rows = frame(tube())
    rows["base"] = ["lymphocytes"] * len(rows)
    out, flags = check_table(rows, cbc={"S1": {"WBC": 1000, "ALC": 5000}})
    by = out.set_index("population")
    assert "fail cbc_consistency" in by.loc["lymphocytes", "qc"]
    assert by.loc["CD4+ T cells", "qc"] == ""
    status = dict(zip(out.population, qc_status(out, flags)))
    assert status["lymphocytes"] == "fail" and status["CD4+ T cells"] == "fail"
    # an 'info' on the base is not inherited; a row's own info is its status
    out2, flags2 = check_table(frame(tube(lymph=2000, t=1400, b=300, nk=300, cd4=900, cd8=480)))
    status2 = dict(zip(out2.population, qc_status(out2, flags2)))
    assert status2["lymphocytes"] == "warn"  # fewer than 2,500 lymphocytes
    assert status2["T cells"] == "warn"  # inherited from its base row


def test_lab_rules_file_holds_qc_and_reporting_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "cross_tube_points: 2\nreporting:\n  loq_per_uL: 0.5\n  cbc_cv: {AMC: 0.2}\n",
        encoding="utf-8",
    )
    rules, reporting = read_lab_rules(path)
    assert rules.cross_tube_points == 2.0
    assert reporting.loq_per_uL == 0.5 and reporting.cbc_cv["AMC"] == 0.2
    assert reporting.cbc_cv["ALC"] == 0.06  # unset: the default
    path.write_text("reporting:\n  loq: 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown reporting rule.*'loq'"):
        read_lab_rules(path)


def test_a_whole_cbc_typed_in_thousands_without_unit_fails():
    """WBC 16.2, ANC 4.7, ALC 10.2, AMC 1.0 read as cells/µL keep every proportion: only the
    plausibility floor catches them (review of issue 9)."""
    rows = frame(tube())
    flags = check_specimen(rows, cbc={"WBC": 16.2, "ANC": 4.7, "ALC": 10.2, "AMC": 1.0})
    assert [(f.rule, f.severity) for f in flags] == [("cbc_consistency", "fail")]
    assert "WBC 16.2 cells/µL is below 100" in flags[0].message
    flags = check_specimen(rows, cbc={"ALC": 2.79})  # no WBC: the differential's sum
    assert "ANC + ALC + AMC 2.79" in flags[0].message
    assert check_specimen(rows, QCRules(cbc_min_wbc=0), cbc={"WBC": 16.2, "ALC": 10.2}) == []
    assert check_specimen(rows, cbc={"WBC": 450, "ANC": 20, "ALC": 300, "AMC": 60}) == []

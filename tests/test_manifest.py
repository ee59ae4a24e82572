"""The run manifest: units, CBC once per specimen, and bad rows named without stopping the run."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from cytowhim.manifest import ManifestError, read_manifest


def _manifest(tmp_path, text, name="manifest.csv"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_units_in_header_are_converted(tmp_path):
    path = _manifest(
        tmp_path,
        """
        file,specimen,patient,timepoint,tube,WBC (x10^3/uL),ANC (x10^3/uL),ALC (cells/uL),AMC
        a_T.fcs,S1,P1,baseline,T,1.2,0.5,430,80
        a_B.fcs,S1,P1,baseline,B,,,,
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    assert list(tubes.WBC) == [1200.0, 1200.0] and list(tubes.ANC) == [500.0, 500.0]
    assert list(tubes.ALC) == [430.0, 430.0] and list(tubes.AMC) == [80.0, 80.0]
    assert tubes.file[0] == str(tmp_path / "a_T.fcs")  # relative to the manifest


def test_units_column(tmp_path):
    path = _manifest(
        tmp_path,
        """
        file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC,units
        a.fcs,S1,P1,peak,T,3.1,1.5,1.2,0.3,x10^3/uL
        b.fcs,S2,P2,peak,T,3100,1500,1200,300,cells/uL
        c.fcs,S3,P3,peak,T,3100,1500,1200,300,mmol/L
    """,
    )
    tubes, problems = read_manifest(path)
    assert list(tubes.ALC) == [1200.0, 1200.0]
    assert len(problems) == 1 and problems[0].specimen == "S3"
    assert "row 4 (specimen S3), column units" in str(problems[0]) and "mmol/L" in str(problems[0])


def test_bad_rows_are_named_and_good_specimens_kept(tmp_path):
    path = _manifest(
        tmp_path,
        """
        file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC
        ok_T.fcs,OK,P1,baseline,T,3000,1500,1200,300
        neg_T.fcs,NEG,P2,baseline,T,3000,-5,1200,300
        nan_T.fcs,NAN,P3,baseline,T,3000,1500,lots,300
        none_T.fcs,NONE,P4,baseline,T,,,,
        ,NOFILE,P5,baseline,T,3000,1500,1200,300
        two_T.fcs,TWO,P6,baseline,T,3000,1500,1200,300
        two_B.fcs,TWO,P6,baseline,B,3000,1500,1300,300
        small_T.fcs,SMALL,P7,baseline,T,3.0,1.5,1.2,0.3
    """,
    )
    tubes, problems = read_manifest(path)
    assert sorted(set(tubes.specimen)) == ["OK"]
    text = "\n".join(str(p) for p in problems)
    assert f"{path}: row 3 (specimen NEG), column ANC: ANC='-5'" in text
    assert "row 4 (specimen NAN), column ALC: ALC='lots' is not a number" in text
    assert "row 5 (specimen NONE), column WBC: specimen NONE has no WBC, ANC, ALC, AMC" in text
    assert "row 6 (specimen NOFILE), column file: file is empty" in text
    assert (
        "row 8 (specimen TWO), column ALC: ALC of specimen TWO is 1200 on an earlier row and 1300 here"
        in text
    )
    # issue 9: no unit is ever guessed from magnitude (WBC 3.0 is read as 3 cells/µL); the
    # specimen is refused because its AMC of 0.3 cells/µL is below one cell per µL
    assert (
        "row 9 (specimen SMALL), column AMC: AMC=0.3 cells/µL: below one cell per µL; a count in "
        "x10^3/µL needs its unit stated, e.g. 'AMC (x10^3/uL)'" in text
    )


def test_missing_manifest_and_columns(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    path = _manifest(tmp_path, "file,specimen,tube\na.fcs,S1,T\n")
    with pytest.raises(ManifestError, match=r"missing columns \['patient', 'timepoint'\]"):
        read_manifest(path)


def test_xlsx_manifest(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("openpyxl")
    frame = pd.DataFrame(
        {
            "file": ["a.fcs"],
            "specimen": ["S1"],
            "patient": ["P1"],
            "timepoint": ["baseline"],
            "tube": ["T"],
            "WBC (x10^3/uL)": [2.5],
            "ANC (x10^3/uL)": [1.0],
            "ALC (x10^3/uL)": [1.1],
            "AMC (x10^3/uL)": [0.2],
        }
    )
    path = tmp_path / "m.xlsx"
    frame.to_excel(path, index=False)
    tubes, problems = read_manifest(path)
    assert problems == [] and tubes.ALC[0] == pytest.approx(1100.0)


def test_beads_instead_of_cbc(tmp_path):
    path = _manifest(
        tmp_path,
        """
        file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC,beads_per_tube,volume_uL
        a.fcs,S1,P1,baseline,T,,,,,50000,50
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == [] and tubes.beads_per_tube[0] == 50000 and tubes.volume_uL[0] == 50


# --- issue 9: units, decimal separators, age and sex ------------------------------------------

CBC_HEADER = "file,specimen,patient,timepoint,tube"


def _problems(problems):
    return "\n".join(str(p) for p in problems)


def test_amc_typed_in_thousands_among_cells_per_ul_is_refused(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC
        a.fcs,S1,P1,baseline,T,3100,1500,1200,0.082
        b.fcs,S2,P2,baseline,T,3100,1500,1200,0
    """,
    )
    tubes, problems = read_manifest(path)
    assert list(tubes.specimen) == ["S2"] and tubes.AMC[0] == 0  # zero is a count
    assert _problems(problems) == (
        f"{path}: row 2 (specimen S1), column AMC: AMC=0.082 cells/µL: below one cell per µL; "
        "a count in x10^3/µL needs its unit stated, e.g. 'AMC (x10^3/uL)'"
    )


def test_sub_one_cell_after_a_stated_unit_is_refused(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC (x10^9/L),ANC (x10^9/L),ALC (x10^9/L),AMC (x10^9/L)
        a.fcs,S1,P1,baseline,T,3.1,1.5,1.2,0.0005
    """,
    )
    tubes, problems = read_manifest(path)
    assert tubes.empty
    assert "column AMC: AMC=0.0005 x10^9/L is 0.5 cells/µL: below one cell per µL" in str(
        problems[0]
    )


def test_decimal_comma_under_a_thousands_header(tmp_path):
    text = f"""
        {CBC_HEADER},WBC (x10^3/uL),ANC (x10^3/uL),ALC (x10^3/uL),AMC (x10^3/uL)
        a.fcs,S1,P1,baseline,T,"1,5","0,6","0,66","0,12"
    """
    path = _manifest(tmp_path, text)
    tubes, problems = read_manifest(path)  # undeclared: refused, never 66,000 cells/µL
    assert tubes.empty
    assert f"{path}: row 2 (specimen S1), column WBC: WBC='1,5' has an ambiguous comma" in str(
        problems[0]
    )
    tubes, problems = read_manifest(path, decimal=",")
    assert problems == []
    assert tubes.ALC[0] == pytest.approx(660.0) and tubes.WBC[0] == pytest.approx(1500.0)
    tubes, problems = read_manifest(path, decimal=".")  # a comma can only group thousands
    assert tubes.empty
    assert "WBC='1,5' is not a number with decimal separator '.'" in str(problems[0])


def test_decimal_column_per_row(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC,units,decimal
        a.fcs,S1,P1,baseline,T,"3,1","1,5","0,66","0,3",x10^3/uL,","
        b.fcs,S2,P2,baseline,T,"3,100",1500,660,300,,.
        c.fcs,S3,P3,baseline,T,3100,1500,660,300,,;
    """,
    )
    tubes, problems = read_manifest(path)
    first = tubes.drop_duplicates("specimen").set_index("specimen")
    assert first.ALC.to_dict() == pytest.approx({"S1": 660.0, "S2": 660.0})
    assert first.WBC["S2"] == 3100.0
    assert (
        _problems(problems)
        == f"{path}: row 4 (specimen S3), column decimal: decimal=';' is not ',' or '.'"
    )


def test_cells_per_ml_header(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC (cells/mL),ANC (/mL),ALC (cells/mL),AMC (cells/uL)
        a.fcs,S1,P1,baseline,T,3100000,1500000,1200000,300
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    assert (tubes.WBC[0], tubes.ANC[0], tubes.ALC[0], tubes.AMC[0]) == pytest.approx(
        (3100.0, 1500.0, 1200.0, 300.0)
    )
    assert tubes.cbc_units[0] == "WBC cells/mL; ANC cells/mL; ALC cells/mL; AMC cells/uL"


@pytest.mark.parametrize("unit", ["x10^9/L", "10^9/L", "G/L", "×10⁹/L", "x10^9 cells/L"])
def test_si_headers(tmp_path, unit):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC ({unit}),ANC [{unit}],ALC ({unit}),AMC ({unit})
        a.fcs,S1,P1,baseline,T,3.1,1.5,1.2,0.3
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    assert (tubes.WBC[0], tubes.ANC[0], tubes.ALC[0], tubes.AMC[0]) == pytest.approx(
        (3100.0, 1500.0, 1200.0, 300.0)
    )
    assert tubes.cbc_units[0] == "WBC x10^9/L; ANC x10^9/L; ALC x10^9/L; AMC x10^9/L"


def test_si_and_other_units_in_a_units_column(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC,units
        a.fcs,S1,P1,peak,T,3.1,1.5,1.2,0.3,G/L
        b.fcs,S2,P2,peak,T,3100000,1500000,1200000,300000,x10^6/L
        c.fcs,S3,P3,peak,T,3.1,1.5,1.2,0.3,K/µL
        d.fcs,S4,P4,peak,T,3.1,1.5,1.2,0.3,10³/µL
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    assert tubes.set_index("specimen").ALC.to_dict() == pytest.approx(
        {"S1": 1200.0, "S2": 1200.0, "S3": 1200.0, "S4": 1200.0}
    )


def test_whim_anc_of_20_with_no_unit_is_kept(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC
        a_T.fcs,W1,P1,baseline,T,900,20,650,45
        a_B.fcs,W1,P1,baseline,B,,,,
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    assert list(tubes.ANC) == [20.0, 20.0] and list(tubes.WBC) == [900.0, 900.0]
    assert tubes.cbc_units[0] == (
        "WBC cells/uL (assumed); ANC cells/uL (assumed); ALC cells/uL (assumed); "
        "AMC cells/uL (assumed)"
    )


@pytest.mark.parametrize(
    "header, cell",
    [
        ("WBC (x10^3/mL)", "3.1"),  # 1 cell/µL, not x10^3/µL: refused, not converted
        ("WBC (10e3/uL)", "3.1"),  # 10e3 is 10,000
        ("WBC (g/L)", "3.1"),  # grams per litre
        ("WBC (mmol/L)", "3.1"),
        ("WBC (cells)", "3100"),
    ],
)
def test_unknown_stated_units_are_refused(tmp_path, header, cell):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},{header},ANC,ALC,AMC
        a.fcs,S1,P1,baseline,T,{cell},1500,1200,300
        b.fcs,S1,P1,baseline,B,{cell},,,
        c.fcs,S2,P2,baseline,T,,1500,1200,300
    """,
    )
    tubes, problems = read_manifest(path)
    assert list(tubes.specimen) == ["S2"]  # no WBC there: its header is not needed
    assert len(problems) == 2  # once for S1; S2 only misses its WBC
    text = str(problems[0])
    assert text.startswith(f"{path}: row 2 (specimen S1), column WBC: the header {header!r}")
    assert "accepted units: cells/uL" in text and "x10^9/L (10^9/L, G/L)" in text


def test_units_argument_and_precedence(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC (cells/uL),ANC,ALC,AMC,units
        a.fcs,S1,P1,baseline,T,3100,1.5,1.2,0.3,
        b.fcs,S2,P2,baseline,T,3100,1500,1200,300,cells/uL
    """,
    )
    tubes, problems = read_manifest(path, units="x10^3/uL")
    assert problems == []
    by_spec = tubes.set_index("specimen")
    assert by_spec.WBC.to_dict() == {"S1": 3100.0, "S2": 3100.0}  # the header wins
    assert by_spec.ALC.to_dict() == pytest.approx({"S1": 1200.0, "S2": 1200.0})
    assert by_spec.cbc_units["S1"] == "WBC cells/uL; ANC x10^3/uL; ALC x10^3/uL; AMC x10^3/uL"
    with pytest.raises(ManifestError, match=r"units='mmol/L'.*accepted units"):
        read_manifest(path, units="mmol/L")
    with pytest.raises(ManifestError, match=r"decimal=';'"):
        read_manifest(path, decimal=";")


def test_differential_above_ten_times_the_wbc_is_refused(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC
        a.fcs,S1,P1,baseline,T,3.1,1500,1200,300
    """,
    )
    tubes, problems = read_manifest(path)
    assert tubes.empty
    assert "column ANC: ANC=1500 cells/µL (ANC cells/uL (assumed)) is more than ten times" in str(
        problems[0]
    )


def test_age_and_sex_per_specimen(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC,age (years),Sex
        a_T.fcs,S1,P1,baseline,T,3100,1500,1200,300,34,female
        a_B.fcs,S1,P1,baseline,B,,,,,,
        b_T.fcs,S2,P2,baseline,T,3100,1500,1200,300,,M
        b_B.fcs,S2,P2,baseline,B,,,,,,m
        c_T.fcs,S3,P3,baseline,T,3100,1500,1200,300,0.5,
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    assert list(tubes.sex) == ["F", "F", "M", "M", ""]
    assert tubes.age.tolist()[:2] == [34.0, 34.0] and tubes.age[4] == 0.5
    assert tubes.age.isna().tolist() == [False, False, True, True, False]
    for column in ("file", "specimen", "WBC", "beads_per_tube", "volume_uL", "row", "cbc_units"):
        assert column in tubes.columns


def test_age_from_birth_and_draw_dates(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC,Birth_Date,Draw Date
        a.fcs,S1,P1,baseline,T,3100,1500,1200,300,2000-03-01,2024-03-01
        b.fcs,S2,P1,peak,T,3100,1500,1200,300,2000-03-01,2024-09-01
        c.fcs,S3,P2,baseline,T,3100,1500,1200,300,2000-02-29,2023-02-28
        d.fcs,S4,P3,baseline,T,3100,1500,1200,300,,2024-05-06
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    ages = tubes.set_index("specimen").age
    assert ages["S1"] == 24.0 and ages["S3"] == 23.0  # 29 February: birthday on 28 February
    assert ages["S2"] == pytest.approx(24 + 184 / 365)  # 2024-03-01 to 2024-09-01 of 365 days
    assert pd.isna(ages["S4"]) and tubes.draw_date.tolist()[3] == "2024-05-06"
    assert "birth_date" not in tubes.columns  # not passed on


def test_demographic_problems_leave_the_specimen_out(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC,age,sex,birth_date,draw_date
        ok.fcs,OK,P0,baseline,T,3100,1500,1200,300,,F,2000-01-01,2020-01-01
        a1.fcs,CONF,P1,baseline,T,3100,1500,1200,300,,F,,
        a2.fcs,CONF,P1,baseline,B,,,,,,M,,
        b.fcs,SEX,P2,baseline,T,3100,1500,1200,300,,Q,,
        c.fcs,DATE,P3,baseline,T,3100,1500,1200,300,,,03/05/1990,2020-01-01
        d.fcs,OLD,P4,baseline,T,3100,1500,1200,300,130,,,
        e.fcs,NODRAW,P5,baseline,T,3100,1500,1200,300,,,1990-01-01,
        f.fcs,AGED,P6,baseline,T,3100,1500,1200,300,30,,1990-01-01,
        g.fcs,DIS,P7,baseline,T,3100,1500,1200,300,40,,1990-01-01,2020-06-01
        h.fcs,BEFORE,P8,baseline,T,3100,1500,1200,300,,,2020-01-01,2019-01-01
        i.fcs,AGES,P9,baseline,T,3100,1500,1200,300,30,,,
        i2.fcs,AGES,P9,baseline,B,,,,,31,,,
        j.fcs,BADDAY,P10,baseline,T,3100,1500,1200,300,,,,2021-02-30
    """,
    )
    tubes, problems = read_manifest(path)
    assert sorted(set(tubes.specimen)) == ["AGED", "OK"]
    assert tubes.set_index("specimen").age.to_dict() == {"OK": 20.0, "AGED": 30.0}
    text = _problems(problems)
    assert (
        "row 4 (specimen CONF), column sex: sex of specimen CONF is F on an earlier row and M here"
        in text
    )
    assert "row 5 (specimen SEX), column sex: sex='Q' is not F, M, female, male or empty" in text
    assert (
        "row 6 (specimen DATE), column birth_date: birth_date='03/05/1990' is not a date in ISO 8601 "
        "form (YYYY-MM-DD)" in text
    )
    assert (
        "row 7 (specimen OLD), column age: age='130': expected years, a number >= 0 and < 130"
        in text
    )
    assert "row 8 (specimen NODRAW), column birth_date: birth_date without draw_date" in text
    assert "row 10 (specimen DIS), column age: age 40 disagrees with birth_date 1990-01-01" in text
    assert (
        "row 11 (specimen BEFORE), column draw_date: draw_date 2019-01-01 is before birth_date"
        in text
    )
    assert (
        "row 13 (specimen AGES), column age: age of specimen AGES is 30 on an earlier row and 31 here"
        in text
    )
    assert (
        "row 14 (specimen BADDAY), column draw_date: draw_date='2021-02-30' is not a date" in text
    )
    assert len(problems) == 9


def test_age_header_in_other_units_is_refused(tmp_path):
    path = _manifest(
        tmp_path,
        f"""
        {CBC_HEADER},WBC,ANC,ALC,AMC,age (months)
        a.fcs,S1,P1,baseline,T,3100,1500,1200,300,18
        b.fcs,S2,P2,baseline,T,3100,1500,1200,300,
    """,
    )
    tubes, problems = read_manifest(path)
    assert list(tubes.specimen) == ["S2"]
    assert "column age: the header 'age (months)' gives age in 'months'; give it in years" in str(
        problems[0]
    )


def test_unspecified_sex_is_kept_as_unknown_and_future_dates_are_refused(tmp_path):
    """Review of issue 9: sex 'U' dropped the whole specimen; a draw in 2099 gave age 109."""
    path = tmp_path / "m.csv"
    path.write_text(
        "file,specimen,patient,timepoint,tube,WBC,ALC,sex,birth_date,draw_date\n"
        "a.fcs,S1,P1,t0,T,4000,1500,U,,\n"
        "b.fcs,S2,P2,t0,T,4000,1500,X,,\n"
        "c.fcs,S3,P3,t0,T,4000,1500,F,1990-01-01,2099-01-01\n",
        encoding="utf-8",
    )
    tubes, problems = read_manifest(path)
    assert list(tubes.specimen) == ["S1", "S2"] and list(tubes.sex) == ["", ""]
    s3 = [p for p in problems if p.specimen == "S3"]
    assert len(s3) == 1 and "draw_date=2099-01-01 is in the future" in s3[0].message
    assert not [p for p in problems if p.column == "sex"]


def test_a_bad_cbc_repeated_on_every_tube_row_is_named_once(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "file,specimen,patient,timepoint,tube,WBC,ALC\n"
        "a.fcs,S1,P1,t0,T,4000,abc\nb.fcs,S1,P1,t0,B,4000,abc\nc.fcs,S1,P1,t0,mono,4000,abc\n",
        encoding="utf-8",
    )
    _, problems = read_manifest(path)
    assert [(p.row, p.column) for p in problems] == [(2, "ALC")]

"""Reference intervals: the bundled Table 1 ranges, a lab's CSV with age/sex bands, H/L flags."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cytowhim.reference import BUNDLED_SOURCE, ReferenceIntervals, ReferenceTableError

LAB_CSV = """\
# our lab's intervals
population,low,high,age_min,age_max,sex,units,source
CD4+ T cells,500,1500,,,,cells/uL,adults
CD4+ T cells,1000,3000,0,6,,cells/µL,children
CD4+ T cells,600,1400,,,F,,women
CD4+ T cells,1200,2800,0,6,f,,girls
B cells,0.1,0.5,,,,x10^9/L,
NK cells,90,,,,,,open-ended
"""


@pytest.fixture
def lab(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text(LAB_CSV, encoding="utf-8")
    return ReferenceIntervals.load(path)


def test_bundled_table1_ranges():
    ref = ReferenceIntervals.bundled()
    assert len(ref) == 19
    assert ref.lookup("CD4+ T cells") == (359.0, 1565.0)
    assert ref.lookup("CD8 central memory") == (0.0, 12.0)
    assert ref.lookup("inflammatory monocytes") == (14.0, 30.0)
    assert ref.flag("CD4+ T cells", 300) == "L"
    assert ref.flag("CD4+ T cells", 2000) == "H"
    assert ref.flag("CD4+ T cells", 800) == ""
    assert ref.flag("CD4+ T cells", 359) == ""  # bounds are inside
    assert ref.flag("NK cells", 80) == "L"  # WHIM baseline mean, below 126
    assert ref.lookup("granulocytes") is None and ref.flag("granulocytes", 1e6) == ""
    assert set(ref.frame["source"]) == {BUNDLED_SOURCE} and "Table 1" in BUNDLED_SOURCE
    assert set(ref.frame["units"]) == {"cells/µL"}


def test_most_specific_band_wins(lab):
    assert lab.lookup("CD4+ T cells") == (500.0, 1500.0)
    assert lab.lookup("CD4+ T cells", age=30) == (500.0, 1500.0)
    assert lab.lookup("CD4+ T cells", age=3) == (1000.0, 3000.0)
    assert lab.lookup("CD4+ T cells", age=6) == (500.0, 1500.0)  # age_max is exclusive
    assert lab.lookup("CD4+ T cells", age=30, sex="F") == (600.0, 1400.0)
    assert lab.lookup("CD4+ T cells", sex="F") == (600.0, 1400.0)
    assert lab.lookup("CD4+ T cells", age=3, sex="F") == (1200.0, 2800.0)
    assert lab.lookup("CD4+ T cells", age=3, sex="M") == (1000.0, 3000.0)
    assert lab.lookup("CD4+ T cells", age=math.nan) == (500.0, 1500.0)


def test_flags_with_age_and_sex(lab):
    assert lab.flag("CD4+ T cells", 900) == ""
    assert lab.flag("CD4+ T cells", 900, age=3) == "L"
    assert lab.flag("CD4+ T cells", 1450, sex="F") == "H"
    assert lab.flag("CD4+ T cells", 2900, age=4, sex="F") == "H"
    assert lab.flag("CD4+ T cells", math.nan) == ""
    assert lab.flag("singlets/lymphocytes/CD4+ T cells", 100) == "L"  # a gate path's last part


def test_units_and_open_sides(lab):
    assert lab.lookup("B cells") == (100.0, 500.0)  # x10^9/L -> cells/µL
    low, high = lab.lookup("NK cells")
    assert low == 90.0 and math.isnan(high)
    assert lab.flag("NK cells", 1e5) == "" and lab.flag("NK cells", 50) == "L"


def test_flag_table_by_specimen_and_patient(lab):
    table = pd.DataFrame(
        {
            "specimen": ["S1", "S2", "S3", "S3"],
            "patient": ["P1", "P2", "P3", "P3"],
            "population": ["CD4+ T cells", "CD4+ T cells", "CD4+ T cells", "granulocytes"],
            "absolute_per_uL": [900.0, 900.0, math.nan, 1.0],
        }
    )
    out = lab.flag_table(table, ages={"S1": 3, "S2": 40}, sexes={"P2": "F"})
    assert list(out["reference_flag"]) == ["L", "", "", ""]
    assert "reference_flag" not in table.columns  # a copy
    one_age = lab.flag_table(table, ages=3)
    assert list(one_age["reference_flag"]) == ["L", "L", "", ""]
    with pytest.raises(ReferenceTableError, match="no column 'absolute_per_uL'"):
        lab.flag_table(table.drop(columns="absolute_per_uL"))


def test_bundled_flag_table():
    table = pd.DataFrame({"population": ["CD4+ T cells"] * 3, "absolute_per_uL": [300, 2000, 800]})
    assert list(ReferenceIntervals.bundled().flag_table(table)["reference_flag"]) == ["L", "H", ""]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("population,low,high\nCD4+ T cells,500,lots\n", r"lab\.csv, line 2, column high: 'lots'"),
        ("population,low,high\nCD4+ T cells,500,-1\n", "line 2, column high: must be"),
        ("population,low,high\nCD4+ T cells,1500,500\n", "line 2: low 1500 > high 500"),
        ("population,low,high\nCD4+ T cells,,\n", "line 2: low and high are both empty"),
        ("population,low\nCD4+ T cells,1\n", "no column 'high'"),
        ("population,low,high,colour\nX,1,2,red\n", "line 1: unknown column.*'colour'"),
        ("# c\npopulation,low,high\nX,1,2,3\n", "line 3: 4 fields, the header has 3"),
        ("population,low,high,sex\nX,1,2,X\n", "line 2, sex: 'X' is not 'F', 'M'"),
        ("population,low,high,units\nX,1,2,mg/dL\n", "line 2, column units: unit 'mg/dL'"),
        ("population,low,high,age_min,age_max\nX,1,2,6,2\n", r"line 2: age band \[6, 2\)"),
        (
            "population,low,high,age_min,age_max\nX,1,2,0,6\nX,1,3,12,\nX,1,2,2,12\n",
            r"line 4: interval for 'X', ages \[2, 12\), overlaps the one at line 2, ages \[0, 6\)",
        ),
        ("population,low,high\nX,1,2\nX,1,3\n", "line 3: a second interval for 'X' without"),
        (
            "population,low,high,age_min,sex\nX,1,2,18,F\nX,1,3,,F\nX,1,3,0,F\n",
            r"line 4: interval for 'X' \(sex F\), ages \[0, \), overlaps the one at line 2",
        ),
        ("# only a comment\n", "no header row"),
        ("population,low,high,low\nX,1,2,3\n", "line 1: column.*'low' appear more than once"),
    ],
)
def test_load_errors_name_file_line_and_column(tmp_path, text, message):
    path = tmp_path / "lab.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReferenceTableError, match=message):
        ReferenceIntervals.load(path)


def test_load_missing_file_and_dataframe_constructor(tmp_path):
    with pytest.raises(ReferenceTableError, match="absent.csv: cannot read"):
        ReferenceIntervals.load(tmp_path / "absent.csv")
    ref = ReferenceIntervals(
        pd.DataFrame({"population": ["T cells"], "low": [700.0], "high": [2100.0]})
    )
    assert ref.lookup("T cells") == (700.0, 2100.0)
    with pytest.raises(ReferenceTableError, match="reference table, row 1, column population"):
        ReferenceIntervals(pd.DataFrame({"population": [""], "low": [1], "high": [2]}))
    with pytest.raises(ReferenceTableError, match="lookup, sex: 'X'"):
        ref.lookup("T cells", sex="X")

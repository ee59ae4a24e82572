"""Manifest parsing pieces: numbers with declared decimal separators, units, ages, file dialects."""

from __future__ import annotations

import re
import textwrap
from datetime import date, datetime

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from cytowhim.manifest import (
    ManifestError,
    age_in_years,
    parse_number,
    parse_unit,
    read_manifest,
    read_table,
)

SPACES = [" ", "\u00a0", "\u2009", "\u202f"]  # space, no-break, thin, narrow no-break
MODES = [None, ".", ","]


def _grouping(mode):
    """The thousands separators allowed with a declared decimal separator."""
    return SPACES + ([","] if mode == "." else ["."] if mode == "," else [])


def _render(whole: int, fraction: str, mode, sep: str) -> str:
    """``whole.fraction`` written with ``sep`` grouping thousands in the ``mode`` convention."""
    text = f"{whole:,}".replace(",", sep)
    return text + ((mode or ".") + fraction if fraction else "")


@settings(max_examples=300, deadline=None)
@given(
    whole=st.integers(0, 10**12),
    fraction=st.text("0123456789", max_size=4),
    mode=st.sampled_from(MODES),
    data=st.data(),
    sign=st.sampled_from(["", "-", "+"]),
)
def test_formatted_numbers_round_trip(whole, fraction, mode, data, sign):
    sep = data.draw(st.sampled_from(["", *_grouping(mode)]))
    text = sign + _render(whole, fraction, mode, sep)
    expected = float(f"{sign}{whole}.{fraction or '0'}")
    assert parse_number(text, mode) == expected
    assert parse_number(f"  {text} ", mode) == expected


def _canonical(text: str, mode) -> str:
    """The text without grouping, with '.' as decimal point and no leading zeros."""
    point = mode or "."
    for sep in _grouping(mode):
        text = text.replace(sep, "")
    text = text.replace(point, "#").replace("#", ".")
    sign = text[0] if text[:1] in "+-" and text else ""
    body = text[len(sign) :].lstrip("0")
    return sign + ("0" + body if body[:1] in (".", "") else body)


@settings(max_examples=1500, deadline=None)
@given(text=st.text("0123456789.,- \u2009", min_size=1, max_size=12), mode=st.sampled_from(MODES))
@example("0,66", ".")
@example("1,17", ".")
@example("1.17", ",")
@example("0,123", ".")
@example("1 1760", None)
@example("1 000\u2009000", None)
def test_no_string_is_silently_read_as_another_number(text, mode):
    """Accepted text is exactly how its value is written in the declared convention: grouping
    in threes only, one decimal separator, never a comma without a declaration."""
    try:
        value = parse_number(text, mode)
    except ValueError:
        return
    assert mode is not None or "," not in text
    assert value == float(_canonical(text.strip(), mode))
    # every kind of space groups alike ('1 000\u2009000' is 1,000,000)
    body = re.sub("[\u00a0\u2009\u202f]", " ", text.strip().lstrip("+-"))
    whole, _, fraction = body.partition(mode or ".")
    number = int(re.sub(r"[^0-9]", "", whole) or 0)
    rendered = [_render(number, fraction, mode, sep) for sep in ["", *_grouping(mode)]]
    rendered = [re.sub("[\u00a0\u2009\u202f]", " ", r) for r in rendered]
    assert body.lstrip("0") in [r.lstrip("0") for r in rendered]


@settings(max_examples=1000, deadline=None)
@given(text=st.text("0123456789., ", min_size=1, max_size=10))
def test_only_x_comma_or_point_three_digits_depends_on_the_declaration(text):
    """A wrong declaration can change the reading only of text like '1.176' or '12,500'."""
    try:
        as_point, as_comma = parse_number(text, "."), parse_number(text, ",")
    except ValueError:
        return
    assume(as_point != as_comma)
    assert re.fullmatch(r"[1-9][0-9]{0,2}[.,][0-9]{3}", text.strip())


@pytest.mark.parametrize(
    "text, mode, value",
    [
        ("1,176", ".", 1176.0),
        ("12,500.5", ".", 12500.5),
        ("1.176,5", ",", 1176.5),
        ("1 176", None, 1176.0),
        ("1\u2009176,25", ",", 1176.25),
        ("0,66", ",", 0.66),
        (".5", None, 0.5),
        ("1e-05", None, 1e-05),
        ("0082", None, 82.0),
    ],
)
def test_parse_number_examples(text, mode, value):
    assert parse_number(text, mode) == value


@pytest.mark.parametrize(
    "text, mode, message",
    [
        ("0,66", None, "ambiguous comma"),
        ("1,176", None, "ambiguous comma"),
        ("0,66", ".", "may only group thousands"),
        ("1,17", ".", "may only group thousands"),
        ("0,660", ".", "may only group thousands"),  # 660 or 0.66? a group never starts with 0
        ("1.17", ",", "may only group thousands"),
        ("1.176.5", ".", "more than one decimal separator"),
        ("1 176,500", ".", "may only group thousands"),  # mixed separators
        ("5.", None, "needs digits"),
        ("lots", None, "is not a number"),
        ("nan", None, "is not a number"),
        ("", None, "is not a number"),
        ("1'176", ".", "is not a number"),
    ],
)
def test_parse_number_refusals(text, mode, message):
    with pytest.raises(ValueError, match=message):
        parse_number(text, mode)


@pytest.mark.parametrize(
    "text, label, factor",
    [
        ("cells/µL", "cells/uL", 1),
        ("/uL", "cells/uL", 1),
        ("(/μL)", "cells/uL", 1),
        ("cells/ul", "cells/uL", 1),
        ("/mm³", "cells/uL", 1),
        ("x10^3/uL", "x10^3/uL", 1000),
        ("[10^3/µL]", "x10^3/uL", 1000),
        ("10³/µL", "x10^3/uL", 1000),
        ("× 10³ / µL", "x10^3/uL", 1000),
        ("K/µL", "x10^3/uL", 1000),
        ("thousand/uL", "x10^3/uL", 1000),
        ("x10^9/L", "x10^9/L", 1000),
        ("10^9/l", "x10^9/L", 1000),
        ("G/L", "x10^9/L", 1000),
        ("cells/mL", "cells/mL", 0.001),
        ("/mL", "cells/mL", 0.001),
        ("x10^6/L", "x10^6/L", 0.001),
    ],
)
def test_parse_unit(text, label, factor):
    unit = parse_unit(text)
    assert (unit.label, unit.factor) == (label, factor)


@pytest.mark.parametrize(
    "text", ["x10^3/mL", "10e3/uL", "103/uL", "g/L", "mmol/L", "%", "cells/L", "x10^6/mL"]
)
def test_parse_unit_refuses_the_rest(text):
    with pytest.raises(ValueError, match="not understood; accepted units: cells/uL"):
        parse_unit(text)


def test_parse_unit_blank():
    assert parse_unit("") is None and parse_unit(" () ") is None


@settings(max_examples=300, deadline=None)
@given(
    birth=st.dates(date(1900, 1, 1), date(2030, 12, 31)),
    days=st.integers(0, 120 * 366),
)
def test_age_in_years_is_completed_years_plus_a_fraction(birth, days):
    draw = date.fromordinal(birth.toordinal() + days)
    age = age_in_years(birth, draw)
    years = int(age)
    birthday = (birth.month, birth.day)
    completed = draw.year - birth.year - ((draw.month, draw.day) < birthday)
    if birthday == (2, 29) and (draw.month, draw.day) == (2, 28):
        completed = draw.year - birth.year  # birthday on 28 February in common years
        if draw.year % 4 == 0 and (draw.year % 100 != 0 or draw.year % 400 == 0):
            completed -= 1
    assert years == completed and 0 <= age - years < 1


def test_age_in_years_examples():
    assert age_in_years(date(2000, 3, 1), date(2024, 3, 1)) == 24.0
    assert age_in_years(date(2000, 1, 1), date(2000, 7, 2)) == pytest.approx(183 / 366)
    assert age_in_years(date(2000, 2, 29), date(2001, 2, 28)) == 1.0
    with pytest.raises(ValueError, match="before the birth date"):
        age_in_years(date(2000, 1, 2), date(2000, 1, 1))


# --- file dialects ---------------------------------------------------------------------------


def _write(tmp_path, text, name="manifest.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(textwrap.dedent(text).lstrip().encode(encoding))
    return path


def test_hash_is_data_and_rows_are_lines_of_the_file(tmp_path):
    path = _write(
        tmp_path,
        """
        # run 12, checked by AB
        file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC

        tube#1.fcs,S#1,P1,baseline,T,3100,1500,1200,300
        # the next one is wrong
        b.fcs,S2,P2,baseline,T,3100,1500,lots,300
    """,
    )
    tubes, problems = read_manifest(path)
    assert tubes.file[0].endswith("tube#1.fcs") and tubes.specimen[0] == "S#1"
    assert tubes.row[0] == 4
    assert str(problems[0]).startswith(f"{path}: row 6 (specimen S2), column ALC: ALC='lots'")
    assert len(read_table(path)) == 2


def test_semicolon_csv_with_decimal_commas_and_windows_encoding(tmp_path):
    path = _write(
        tmp_path,
        """
        file;specimen;patient;timepoint;tube;WBC (x10³/µL);ANC (x10³/µL);ALC (x10³/µL);AMC (x10³/µL)
        a.fcs;S1;P1;baseline;T;3,1;1,5;0,66;0,12
    """,
        encoding="cp1252",
    )
    tubes, problems = read_manifest(path, decimal=",")
    assert problems == []
    assert tubes.ALC[0] == pytest.approx(660.0) and tubes.AMC[0] == pytest.approx(120.0)


def test_header_normalisation(tmp_path):
    path = _write(
        tmp_path,
        """
        File,Specimen ID,Patient,Timepoint,Tube,wbc [10^9/L],ANC (x10^3/uL),ALC (x10^3/uL),AMC (cells/µL),Age (years),SEX,Birth_Date,Draw-Date,Notes A,Notes B
        a.fcs,S1,P1,baseline,T,3.1,1.5,1.2,300,,f,2000-01-01,2020-01-01,x,y
    """,
    )
    tubes, problems = read_manifest(path)
    assert problems == []
    row = tubes.iloc[0]
    assert (row.specimen, row.WBC, row.ALC, row.AMC) == ("S1", 3100.0, 1200.0, 300.0)
    assert (row.age, row.sex, row.draw_date) == (20.0, "F", "2020-01-01")
    assert row.cbc_units == "WBC x10^9/L; ANC x10^3/uL; ALC x10^3/uL; AMC cells/uL"


def test_bad_beads_and_ragged_rows_are_problems(tmp_path):
    path = _write(
        tmp_path,
        """
        file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC,beads_per_tube,volume_uL
        a.fcs,S1,P1,baseline,T,,,,,"50,000",50
        b.fcs,S2,P2,baseline,T,,,,,50000,50,extra
        c.fcs,S3,P3,baseline,T,,,,,50000,50,,
    """,
    )
    tubes, problems = read_manifest(path)
    assert list(tubes.specimen) == ["S3"]
    text = "\n".join(map(str, problems))
    assert (
        "row 2 (specimen S1), column beads_per_tube: beads_per_tube='50,000' has an ambiguous comma"
        in text
    )
    assert "row 3 (specimen S2): the row has more cells than the header's 11 columns" in text
    tubes, problems = read_manifest(path, decimal=".")
    assert tubes.beads_per_tube.tolist() == [50000.0, 50000.0]


def test_xlsx_numbers_dates_and_row_numbers(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["file", "specimen", "patient", "timepoint", "tube", "WBC (x10^3/uL)", "ANC (x10^3/uL)", "ALC (x10^3/uL)", "AMC (x10^3/uL)", "birth_date", "draw_date", "sex"])  # fmt: skip
    sheet.append(["a.fcs", "S1", "P1", "baseline", "T", 3.1, 1.5, 1.176, 0.3, datetime(2000, 1, 1), datetime(2010, 1, 1), "M"])  # fmt: skip
    sheet.append([None] * 12)
    sheet.append(["b.fcs", "S2", "P2", "baseline", "T", "3,1", 1.5, 1.2, 0.3, None, None, None])  # fmt: skip
    path = tmp_path / "m.xlsx"
    book.save(path)
    # numeric cells are numbers: the declared decimal separator applies to text only
    tubes, problems = read_manifest(path, decimal=",")
    assert tubes.ALC[0] == pytest.approx(1176.0) and tubes.age[0] == 10.0
    assert tubes.WBC.tolist() == pytest.approx([3100.0, 3100.0])
    tubes, problems = read_manifest(path)
    assert list(tubes.specimen) == ["S1"]
    assert str(problems[0]).startswith(f"{path}: row 4 (specimen S2), column WBC: WBC='3,1'")


def test_empty_or_unreadable_manifests(tmp_path):
    with pytest.raises(ManifestError, match="the manifest is empty"):
        read_manifest(_write(tmp_path, "# nothing\n\n"))
    with pytest.raises(ManifestError, match=r"columns \['ALC'\] appear twice"):
        read_manifest(_write(tmp_path, "file,specimen,patient,timepoint,tube,ALC,ALC (x10^3/uL)\n"))
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ManifestError, match="cannot read the manifest"):
        read_manifest(bad)

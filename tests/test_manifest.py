"""The run manifest: units, CBC once per specimen, and bad rows named without stopping the run."""

from __future__ import annotations

import textwrap

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
    assert (
        "row 9 (specimen SMALL), column WBC: WBC=3.0 with no unit stated looks like x10^3/µL"
        in text
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

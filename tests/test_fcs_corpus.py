"""read_fcs against real instrument files that other people wrote (../shared/corpus/fcs ...).

expected_decode.json gives, per file, the sha256 of the raw event matrix as little-endian float64
that independent readers (fcsparser on numpy 1.26, flowio, FlowCal) agreed on.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

import cytowhim as cw

from .conftest import CORPUS

EXPECTED = json.loads((CORPUS / "expected_decode.json").read_text())


def sha_f8(events: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(events, dtype="<f8").tobytes()).hexdigest()


def _cases(kind: str) -> list[str]:
    out = []
    for rel, v in EXPECTED.items():
        if kind == "single" and "shape" in v and "sha256_f8" in v:
            out.append(rel)
        elif kind == "multi" and "multiple_data_sets" in v:
            out.append(rel)
        elif kind == "unreadable" and "unreadable_by_anchors" in v:
            out.append(rel)
        elif kind == "ambiguous" and "ambiguous" in v:
            out.append(rel)
    return out


def test_corpus_has_all_kinds():
    assert len(_cases("single")) >= 30
    assert _cases("multi") and _cases("unreadable") and _cases("ambiguous")


@pytest.mark.parametrize("rel", _cases("single"))
def test_decoded_matrix_matches_independent_readers(rel):
    exp = EXPECTED[rel]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        s = cw.read_fcs(CORPUS / rel)
    assert list(s.events.shape) == exp["shape"]
    assert sha_f8(s.events) == exp["sha256_f8"]
    assert s.events.flags.c_contiguous and s.events.dtype.isnative
    np.testing.assert_array_equal(s.events[0].astype("f8"), exp["first_row"])
    np.testing.assert_array_equal(s.events[-1].astype("f8"), exp["last_row"])
    # expected names come from readers that prefer $PnS where present
    for want, channel, marker in zip(exp["channels_pnn"], s.channels, s.markers):
        assert want in (channel, marker)
    assert len(set(s.channels)) == len(s.channels)


@pytest.mark.parametrize("rel", _cases("multi"))
def test_every_data_set_of_a_multi_data_set_file(rel):
    sets = EXPECTED[rel]["multiple_data_sets"]
    for index, exp in enumerate(sets):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cw.FCSWarning)
            s = cw.read_fcs(CORPUS / rel, data_set=index)
        assert list(s.events.shape) == exp["shape"]
        assert sha_f8(s.events) == exp["sha256_f8"]
        assert s.data_set == index
    with pytest.raises(cw.FCSError, match=f"holds {len(sets)} data sets"):
        cw.read_fcs(CORPUS / rel, data_set=len(sets))


def test_coulter_first_data_set_off_by_one_end_warns():
    with pytest.warns(cw.FCSWarning, match=r"289761 bytes.*289760"):
        cw.read_fcs(CORPUS / "fcs/flowio/coulter.lmd")


@pytest.mark.parametrize("rel", _cases("unreadable"))
def test_file_no_anchor_could_read_raises_fcserror(rel):
    with pytest.raises(cw.FCSError) as info:
        cw.read_fcs(CORPUS / rel)
    assert str(CORPUS / rel) in str(info.value)
    assert "not an FCS file" in str(info.value)


@pytest.mark.parametrize("rel", _cases("ambiguous"))
def test_ambiguous_offsets_are_named_in_a_warning(rel):
    exp = EXPECTED[rel]
    with pytest.warns(cw.FCSWarning) as record:
        s = cw.read_fcs(CORPUS / rel)
    text = " ".join(str(w.message) for w in record)
    # HEADER says DATA starts at 5555, inside TEXT (74-6080); TEXT's $BEGINDATA=6081 fits $TOT
    assert "5555" in text and "6081-6188" in text and "using TEXT" in text
    assert sha_f8(s.events) == exp["flowio"]["sha256_f8"]


def test_stop_offset_discrepancy_uses_text_and_says_so():
    with pytest.warns(cw.FCSWarning, match=r"HEADER: 6081-6944.*using TEXT offsets 6081-6188"):
        cw.read_fcs(CORPUS / "fcs/flowio/data_stop_offset_discrepancy_example.fcs")


def test_24_bit_integers_and_range_masks():
    s = cw.read_fcs(CORPUS / "fcs/flowcal/test/Data003.fcs")
    assert s.events.dtype == np.uint32
    assert int(s.events[:, 0].max()) < 262144  # $P1R=262144 masks the 24-bit time to 18 bits


def test_mixed_widths_widen_to_common_type():
    s = cw.read_fcs(CORPUS / "fcs/flowio/variable_int_example.fcs")
    kw = s.keywords
    assert {kw["$P1B"], kw["$P26B"]} == {"16", "32"}
    assert s.events.dtype == np.uint32


def test_supplemental_text_is_merged():
    rel = "fcs/fcsparser/MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        kw = cw.read_fcs_metadata(CORPUS / rel)
    assert kw["$BEGINSTEXT"] == "2722"
    assert "@MB_P1_BASE" in kw  # only in the supplemental TEXT (bytes 2722-127220)


@pytest.mark.parametrize(
    ("rel", "key", "first", "spill01"),
    [
        ("fcs/flowio/B01 KC-A-W---91-US.fcs", "$SPILLOVER", "FL1-A", 0.1203),
        ("fcs/flowkit/test_comp_example.fcs", "SPILL", "Ax488-A", 0.0),
        ("fcs/flowio/100715.fcs", "SPILL", None, None),
    ],
)
def test_spillover_by_name(rel, key, first, spill01):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        s = cw.read_fcs(CORPUS / rel)
    sp = s.spillover
    assert sp is not None and key in s.keywords
    assert list(sp.index) == list(sp.columns)
    assert set(sp.columns) <= set(s.channels)
    np.testing.assert_allclose(np.diag(sp.to_numpy()), 1.0)
    if first is not None:
        assert sp.columns[0] == first
        assert sp.iloc[0, 1] == spill01


def test_malformed_spillover_warns_and_reads_events():
    rel = "fcs/fcsparser/MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs"
    with pytest.warns(cw.FCSWarning, match=r"\$SPILLOVER says 6 parameters"):
        s = cw.read_fcs(CORPUS / rel)
    assert s.spillover is None and s.n_events == 10000


def test_every_corpus_fcs_file_reads_or_raises_fcserror():
    files = [p for p in (CORPUS / "fcs").rglob("*") if p.suffix.lower() in (".fcs", ".lmd")]
    files += list((CORPUS / "flowjo").rglob("*.fcs")) + list((CORPUS / "gatingml").rglob("*.fcs"))
    assert len(files) >= 30
    read = 0
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cw.FCSWarning)
            try:
                s = cw.read_fcs(path)
            except cw.FCSError as exc:
                assert str(path) in str(exc)
                continue
        assert s.events.shape[1] == len(s.channels)
        read += 1
    assert read == len(files) - 1  # only fcsparser/corrupted/corrupted.fcs is not FCS


def test_metadata_matches_manifest_facts():
    import csv

    rows = list(csv.DictReader((CORPUS / "MANIFEST.tsv").open(), delimiter="\t"))
    checked = 0
    for row in rows:
        if not row["version"].startswith("FCS"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cw.FCSWarning)
            kw = cw.read_fcs_metadata(CORPUS / row["path"])
        assert int(kw["$TOT"]) == int(row["tot"])
        assert int(kw["$PAR"]) == int(row["par"])
        assert kw["$DATATYPE"] == row["datatype"]
        checked += 1
    assert checked >= 30

"""read_fcs on hand-built files: layouts and quirks the corpus has few or no examples of."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import cytowhim as cw

from .fcs_builder import params, write

BASE = {"$MODE": "L", "$NEXTDATA": "0"}


def test_ascii_fixed_width(tmp_path):
    kw = {**BASE, "$DATATYPE": "A", "$TOT": "3", **params(["a", "b"], 4)}
    data = b"  12 345   7   8  99   0"
    s = cw.read_fcs(write(tmp_path / "a.fcs", kw, data))
    np.testing.assert_array_equal(s.events, [[12, 345], [7, 8], [99, 0]])


def test_ascii_delimited(tmp_path):
    kw = {**BASE, "$DATATYPE": "A", "$TOT": "2", **params(["a", "b", "c"], 8)}
    for i in (1, 2, 3):
        kw[f"$P{i}B"] = "*"
    s = cw.read_fcs(write(tmp_path / "a.fcs", kw, b"1,2.5,3\n4 5 6.25\n"))
    np.testing.assert_array_equal(s.events, [[1, 2.5, 3], [4, 5, 6.25]])


def test_spillover_by_parameter_index(tmp_path):
    kw = {
        **BASE,
        "$DATATYPE": "F",
        "$BYTEORD": "1,2,3,4",
        "$TOT": "1",
        **params(["FSC-A", "FL1-A", "FL2-A"], 32),
        "$SPILLOVER": "2,2,3,1,0.25,0.0625,1",
    }
    s = cw.read_fcs(write(tmp_path / "s.fcs", kw, struct.pack("<3f", 1, 2, 3)))
    assert list(s.spillover.columns) == ["FL1-A", "FL2-A"]
    assert s.spillover.loc["FL1-A", "FL2-A"] == 0.25
    assert s.spillover.loc["FL2-A", "FL1-A"] == 0.0625


def test_spillover_by_marker_name(tmp_path):
    kw = {
        **BASE,
        "$DATATYPE": "F",
        "$BYTEORD": "1,2,3,4",
        "$TOT": "1",
        **params(["FL1-A", "FL2-A"], 32, S=["CD3", "CD4"]),
        "SPILL": "2,CD3,CD4,1,0.5,0,1",
    }
    s = cw.read_fcs(write(tmp_path / "s.fcs", kw, struct.pack("<2f", 1, 2)))
    assert list(s.spillover.index) == ["FL1-A", "FL2-A"]
    assert s.markers == ["CD3", "CD4"]


def test_duplicate_channel_names_are_made_unique(tmp_path):
    kw = {
        **BASE,
        "$DATATYPE": "I",
        "$BYTEORD": "1,2",
        "$TOT": "1",
        **params(["FL1", "FL1", "FL1_2", "FL1"], 16),
    }
    with pytest.warns(cw.FCSWarning, match="repeat"):
        s = cw.read_fcs(write(tmp_path / "d.fcs", kw, struct.pack("<4H", 1, 2, 3, 4)))
    assert len(set(s.channels)) == 4
    assert s.channels[0] == "FL1" and s.channels[2] == "FL1_2"
    assert s.keywords["$P2N"] == "FL1"  # keywords stay as in the file


def test_blank_header_data_offsets_use_text_without_warning(tmp_path, recwarn):
    kw = {**BASE, "$DATATYPE": "F", "$BYTEORD": "4,3,2,1", "$TOT": "2", **params(["x"], 32)}
    path = write(tmp_path / "b.fcs", kw, struct.pack(">2f", 1.5, -2), blank_header_data=True)
    s = cw.read_fcs(path)
    np.testing.assert_array_equal(s.events[:, 0], [1.5, -2])
    assert s.events.dtype == np.float32 and s.events.dtype.isnative
    assert not [w for w in recwarn if issubclass(w.category, cw.FCSWarning)]


def test_unusual_byte_order_permutation(tmp_path):
    value = 0x0A0B0C0D
    # $BYTEORD 3,4,1,2: the bytes in the file are the 3rd, 4th, 1st, 2nd least significant
    raw = bytes([0x0B, 0x0A, 0x0D, 0x0C])
    kw = {**BASE, "$DATATYPE": "I", "$BYTEORD": "3,4,1,2", "$TOT": "1", **params(["x"], 32)}
    s = cw.read_fcs(write(tmp_path / "p.fcs", kw, raw))
    assert int(s.events[0, 0]) == value


def test_utf8_and_latin1_text(tmp_path):
    kw = {
        **BASE,
        "$DATATYPE": "I",
        "$BYTEORD": "1,2",
        "$TOT": "1",
        **params(["FL1"], 16, S=["CD3 – µ"]),
        "OPERATOR": "Zoë",
    }
    s = cw.read_fcs(write(tmp_path / "u.fcs", kw, b"\x01\x00"))
    assert s.markers == ["CD3 – µ"] and s.keywords["OPERATOR"] == "Zoë"
    kw["$P1S"] = "CD3 µ"
    s = cw.read_fcs(write(tmp_path / "l.fcs", kw, b"\x01\x00", encoding="latin-1"))
    assert s.markers == ["CD3 µ"] and s.keywords["OPERATOR"] == "Zoë"


def test_fcs32_per_parameter_datatype(tmp_path):
    kw = {
        **BASE,
        "$DATATYPE": "F",
        "$BYTEORD": "1,2,3,4",
        "$TOT": "2",
        **params(["Time", "FSC-A", "count"], [32, 32, 16], DATATYPE=["I", "", "I"]),
    }
    data = struct.pack("<IfH", 7, 1.25, 3) + struct.pack("<IfH", 9, -0.5, 65535)
    s = cw.read_fcs(write(tmp_path / "v32.fcs", kw, data, version="FCS3.2"))
    assert s.version == "FCS3.2"
    assert s.events.dtype == np.float64
    np.testing.assert_array_equal(s.events, [[7, 1.25, 3], [9, -0.5, 65535]])


def test_fcs2_without_tot_derives_events(tmp_path):
    kw = {**BASE, "$DATATYPE": "I", "$BYTEORD": "4,3,2,1", **params(["a", "b"], 16)}
    kw.pop("$NEXTDATA")
    s = cw.read_fcs(write(tmp_path / "n.fcs", kw, struct.pack(">6H", *range(6)), version="FCS2.0"))
    np.testing.assert_array_equal(s.events, [[0, 1], [2, 3], [4, 5]])


def test_zero_events(tmp_path):
    kw = {**BASE, "$DATATYPE": "F", "$BYTEORD": "1,2,3,4", "$TOT": "0", **params(["a", "b"], 32)}
    s = cw.read_fcs(write(tmp_path / "z.fcs", kw, b""))
    assert s.events.shape == (0, 2)


def test_eight_bit_integers_with_range_mask(tmp_path):
    kw = {**BASE, "$DATATYPE": "I", "$BYTEORD": "1", "$TOT": "3", **params(["a"], 8, R=["16"])}
    s = cw.read_fcs(write(tmp_path / "e.fcs", kw, bytes([3, 0x1F, 0xFF])))
    np.testing.assert_array_equal(s.events[:, 0], [3, 15, 15])  # $P1R=16: 4 bits kept


def test_histogram_mode_is_refused(tmp_path):
    kw = {
        **BASE,
        "$MODE": "C",
        "$DATATYPE": "I",
        "$BYTEORD": "1,2",
        "$TOT": "1",
        **params(["a"], 16),
    }
    with pytest.raises(cw.FCSError, match=r"\$MODE='C'"):
        cw.read_fcs(write(tmp_path / "c.fcs", kw, b"\x00\x00"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"$DATATYPE": "Q"}, r"\$DATATYPE='Q'"),
        ({"$BYTEORD": "1,1"}, "not a permutation"),
        ({"$P1B": "twelve"}, r"\$P1B='twelve'"),
        ({"$P1B": "65"}, "1 to 64 bits"),
        ({"$PAR": "3"}, r"\$P3B"),
        ({"$TOT": "1000"}, "truncated|needs"),
        ({"$TOT": "x"}, r"\$TOT='x'"),
    ],
)
def test_bad_keywords_raise_fcserror_naming_them(tmp_path, change, message):
    kw = {**BASE, "$DATATYPE": "I", "$BYTEORD": "1,2", "$TOT": "2", **params(["a", "b"], 16)}
    kw.update(change)
    path = write(tmp_path / "bad.fcs", kw, b"\x00" * 8)
    with pytest.raises(cw.FCSError, match=message) as info:
        cw.read_fcs(path)
    assert str(path) in str(info.value)

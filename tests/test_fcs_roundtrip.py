"""write_fcs -> read_fcs round trips (hypothesis properties and explicit cases), and the TEXT
segment parser/builder (cytowhim.fcs.text) on its own."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cytowhim as cw
from cytowhim.fcs import write as fcs_write
from cytowhim.fcs.spillover import SPILLOVER_KEYS
from cytowhim.fcs.text import _DELIMITER_CHOICES, build_text, parse_text

from .fcs_builder import params
from .fcs_builder import write as write_by_hand

# Deterministic: derandomized, no example database; sized for a slow 2-core machine.
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPES = ["float32", "float64", "uint8", "uint16", "uint32", "uint64"]
DELIMS = "".join(d.decode() for d in _DELIMITER_CHOICES)  # '/|\\\x0c\x1e\x1f\x1d^~'
LAYOUT_KEYS = {
    "$BEGINANALYSIS", "$ENDANALYSIS", "$BEGINDATA", "$ENDDATA", "$BEGINSTEXT", "$ENDSTEXT",
    "$NEXTDATA", "$TOT", "$PAR", "$DATATYPE", "$BYTEORD", "$MODE",
}  # fmt: skip
PARAM_KEY = re.compile(r"\$P\d", re.IGNORECASE)

# Text heavy in delimiter characters, commas, '$' and non-ASCII (no surrogates: not encodable).
chars = st.one_of(
    st.sampled_from(list(DELIMS + ",$ .-_0123456789AZaz")),
    st.sampled_from(list("éßµ–ǅ中🙂\x00\r\n\t")),
    st.characters(exclude_categories=("Cs",)),
)
text = st.text(chars, max_size=12)
stripped = text.map(str.strip).filter(bool)  # non-empty, no surrounding white space
# every delimiter choice somewhere in one value: forces build_text to double delimiters
all_delims = st.tuples(text, st.permutations(list(DELIMS)), text).map(
    lambda t: t[0] + "".join(t[1]) + t[2]
)
delim_runs = st.text(st.sampled_from(list(DELIMS + "a")), min_size=1, max_size=6)
delim_keys = delim_runs.map(str.strip).filter(bool)


def norm(key: str) -> str:
    """How FCS keywords come back: standard '$' keywords upper-cased."""
    return key.upper() if key.startswith("$") else key


def user_key_ok(key: str) -> bool:
    k = norm(key)
    return (
        k not in LAYOUT_KEYS
        and not PARAM_KEY.match(k)
        and k.upper() not in SPILLOVER_KEYS
        and norm(k) == k  # str.upper() settled (idempotent) for this key
    )


user_keys = st.one_of(stripped, stripped.map(lambda s: "$" + s)).filter(user_key_ok)
user_keywords = st.dictionaries(
    st.one_of(user_keys, delim_keys.filter(user_key_ok)),
    st.one_of(st.just(""), text, all_delims, delim_runs),
    max_size=6,
).filter(lambda d: len({norm(k) for k in d}) == len(d))


def bits_of(a: np.ndarray) -> np.ndarray:
    """Raw bits, so NaN payloads, signed zeros and infinities compare exactly."""
    return a.view(f"u{a.dtype.itemsize}")


def delimiters_exhausted(keywords: dict[str, str]) -> bool:
    """build_text's documented refusal: every delimiter choice is in a keyword or starts a value."""
    keys = "".join(keywords)
    return all(d in keys or any(v.startswith(d) for v in keywords.values()) for d in DELIMS)


@st.composite
def samples(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.integers(0, 50))
    p = draw(st.integers(1, 8))
    raw = draw(hnp.arrays(np.dtype(f"u{dtype.itemsize}"), (n, p)))
    events = raw.view(dtype)  # floats: every bit pattern, NaN payloads and infinities included
    channels = draw(st.lists(stripped, min_size=p, max_size=p, unique=True))
    markers = draw(st.lists(st.one_of(st.just(""), stripped), min_size=p, max_size=p))
    keywords = draw(user_keywords)
    ranges = {}
    for i in range(1, p + 1):  # $PnE / $PnR / $PnG of the sample's own parameters are kept
        if draw(st.booleans()):
            keywords[f"$P{i}E"] = draw(st.sampled_from(["0,0", "4,1", "5,0.01"]))
        if draw(st.booleans()):
            keywords[f"$p{i}g"] = draw(st.sampled_from(["1", "2.5"]))  # lower case on purpose
        if draw(st.booleans()):
            ranges[i] = draw(
                st.one_of(
                    st.integers(1, 2**64).map(str),
                    st.sampled_from(["1024", "1", "0", "-5", "2.5", "nan", "inf", "1e400", "x"]),
                )
            )
            keywords[f"$P{i}R"] = ranges[i]
    spill = None
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(channels), min_size=1, max_size=p, unique=True))
        values = draw(
            hnp.arrays(np.float64, (len(names), len(names)), elements=st.floats(-1e6, 1e6))
        )
        spill = pd.DataFrame(values, index=pd.Index(names), columns=pd.Index(names))
    sample = cw.Sample(events, channels, markers, keywords=keywords, spillover=spill)
    return sample, draw(st.sampled_from(["little", "big"])), ranges


def spill_ambiguous(sample: cw.Sample) -> bool:
    """A channel name with a comma must go into $SPILLOVER by number; that number is taken."""
    ch = sample.channels
    return sample.spillover is not None and any(
        "," in c and str(ch.index(c) + 1) in ch for c in sample.spillover.columns
    )


def written_keywords(sample: cw.Sample) -> dict[str, str]:
    """The sample's keywords as they come back, but $PnR (which the writer may replace)."""
    return {
        norm(k): v
        for k, v in sample.keywords.items()
        if v != "" and not re.fullmatch(r"\$P\d+R", norm(k))
    }


@SETTINGS
@given(samples())
def test_write_read_roundtrip(case):
    sample, byteorder, ranges = case
    n, p = sample.events.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rt.fcs"
        all_text = {
            **{f"$P{i + 1}N": c for i, c in enumerate(sample.channels)},
            **{f"$P{i + 1}S": m for i, m in enumerate(sample.markers) if m},
            **{norm(k): v for k, v in sample.keywords.items() if v != ""},
        }
        event(f"{sample.events.dtype} {byteorder}, spillover: {sample.spillover is not None}")
        if sample.events.dtype.kind == "f" and n:
            event(f"NaN in events: {bool(np.isnan(sample.events).any())}")
        if delimiters_exhausted(all_text):
            event("every delimiter used: ValueError")
            with pytest.raises(ValueError, match="delimiter"):
                cw.write_fcs(path, sample, byteorder=byteorder)
            return
        if spill_ambiguous(sample):
            event("comma channel in spillover with its number taken: ValueError")
            with pytest.raises(ValueError, match="comma"):
                cw.write_fcs(path, sample, byteorder=byteorder)
            return
        cw.write_fcs(path, sample, byteorder=byteorder)
        assert os.listdir(tmp) == ["rt.fcs"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a file we wrote must read without any warning
            back = cw.read_fcs(path)
            meta = cw.read_fcs_metadata(path)

    assert back.events.dtype == sample.events.dtype and back.events.shape == (n, p)
    assert np.array_equal(bits_of(back.events), bits_of(sample.events))
    assert back.channels == sample.channels
    assert back.markers == sample.markers
    assert meta == back.keywords
    kw = back.keywords
    assert kw["$PAR"] == str(p) and kw["$TOT"] == str(n) and kw["$MODE"] == "L"
    assert kw["$BYTEORD"] == ("1,2,3,4" if byteorder == "little" else "4,3,2,1")
    assert all(kw[f"$P{i}B"] == str(8 * sample.events.itemsize) for i in range(1, p + 1))
    for key, value in written_keywords(sample).items():
        assert kw[key] == value, key
    assert not any(v == "" for v in kw.values())  # empty-valued keywords are dropped
    for i, given_range in ranges.items():
        # integers: a $PnR that holds the column (values 0..PnR-1) is kept, otherwise the writer
        # puts one that does (events equal above: nothing was cut); floats: kept as given
        col_max = int(sample.events[:, i - 1].max()) if n and sample.events.dtype.kind == "u" else 0
        if sample.events.dtype.kind != "u" or (
            given_range.isdigit() and int(given_range) > col_max
        ):
            assert kw[f"$P{i}R"] == given_range
        elif kw[f"$P{i}R"] != given_range:
            assert int(kw[f"$P{i}R"]) >= col_max  # 64 bits: 2**64-1, which masks nothing
    if sample.spillover is None:
        assert back.spillover is None
    else:
        pd.testing.assert_frame_equal(back.spillover, sample.spillover, check_exact=True)
        assert np.array_equal(
            bits_of(back.spillover.to_numpy()), bits_of(sample.spillover.to_numpy())
        )


# -- explicit round trips --------------------------------------------------------------------------


def _sample(n: int = 5, dtype: str = "uint16") -> cw.Sample:
    events = (np.arange(n * 3).reshape(n, 3) * 7).astype(dtype)
    return cw.Sample(events, ["FSC-A", "SSC-A", "FL1-A"], ["", "", "CD3"], keywords={"$CYT": "x"})


def test_header_data_offsets_are_zero_past_header_max(tmp_path, monkeypatch):
    s = _sample(40)
    cw.write_fcs(tmp_path / "small.fcs", s)
    raw = (tmp_path / "small.fcs").read_bytes()
    kw = cw.read_fcs_metadata(tmp_path / "small.fcs")
    assert (int(raw[26:34]), int(raw[34:42])) == (int(kw["$BEGINDATA"]), int(kw["$ENDDATA"]))

    monkeypatch.setattr(fcs_write, "_HEADER_MAX", 100)
    cw.write_fcs(tmp_path / "big.fcs", s)
    raw = (tmp_path / "big.fcs").read_bytes()
    assert raw[26:34] == b"       0" and raw[34:42] == b"       0"
    kw = cw.read_fcs_metadata(tmp_path / "big.fcs")
    begin, end = int(kw["$BEGINDATA"]), int(kw["$ENDDATA"])
    assert end > 100 and end - begin + 1 == s.events.nbytes and end == len(raw) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = cw.read_fcs(tmp_path / "big.fcs")
    assert np.array_equal(back.events, s.events)


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "a.fcs"
    cw.write_fcs(target, _sample(3))
    assert sorted(os.listdir(tmp_path)) == ["a.fcs"]
    before = target.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(fcs_write.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        cw.write_fcs(target, _sample(9))
    assert sorted(os.listdir(tmp_path)) == ["a.fcs"]  # no '.part' left, old file untouched
    assert target.read_bytes() == before


def test_zero_events_and_zero_parameters(tmp_path):
    for dtype in DTYPES:
        s = cw.Sample(np.zeros((0, 2), dtype), ["a", "b"], ["", "m"])
        cw.write_fcs(tmp_path / "z.fcs", s, byteorder="big")
        back = cw.read_fcs(tmp_path / "z.fcs")
        assert back.events.shape == (0, 2) and back.events.dtype == np.dtype(dtype)
        assert back.keywords["$TOT"] == "0" and back.markers == ["", "m"]
    with pytest.raises(ValueError, match="no parameters"):
        cw.write_fcs(tmp_path / "p.fcs", cw.Sample(np.zeros((3, 0)), [], []))
    assert not (tmp_path / "p.fcs").exists()


def test_data_set_1_of_a_single_data_set_file(tmp_path):
    path = tmp_path / "one.fcs"
    cw.write_fcs(path, _sample())
    for read in (cw.read_fcs, cw.read_fcs_metadata):
        with pytest.raises(
            cw.FCSError, match=r"data_set=1 requested but the file holds 1 data set"
        ):
            read(path, data_set=1)
    with pytest.raises(cw.FCSError) as err:
        cw.read_fcs(path, data_set=1)
    assert str(err.value).startswith(str(path))


def test_reading_masks_integers_by_range_and_writer_keeps_values(tmp_path):
    # a hand-built file: $P1R=1024 keeps 10 bits of 0xFFFF; $P2R=65536 masks nothing
    kw = {
        "$BYTEORD": "1,2", "$DATATYPE": "I", "$MODE": "L", "$TOT": "1",
        **params(["a", "b"], 16, R=["1024", "65536"]),
    }  # fmt: skip
    s = cw.read_fcs(write_by_hand(tmp_path / "m.fcs", kw, b"\xff\xff\xff\xff"))
    assert s.events.tolist() == [[1023, 65535]]

    # $PnR=2**60+1 allows values up to 2**60: a 61-bit mask (as a float it would round to 2**60)
    kw = {"$BYTEORD": "1,2,3,4,5,6,7,8", "$DATATYPE": "I", "$TOT": "1"}
    kw.update(params(["big"], 64, R=[str(2**60 + 1)]))
    s = cw.read_fcs(write_by_hand(tmp_path / "b.fcs", kw, (2**60).to_bytes(8, "little")))
    assert s.events.tolist() == [[2**60]]

    # write_fcs keeps a $PnR that holds the data and replaces one that would cut it
    events = np.array([[1023, 5000], [0, 1]], dtype=np.uint16)
    sample = cw.Sample(events, ["a", "b"], ["", ""], keywords={"$P1R": "1024", "$P2R": "1024"})
    cw.write_fcs(tmp_path / "w.fcs", sample)
    back = cw.read_fcs(tmp_path / "w.fcs")
    assert back.events.tolist() == events.tolist()
    assert back.keywords["$P1R"] == "1024" and int(back.keywords["$P2R"]) > 5000


@pytest.mark.parametrize("rng", ["nan", "inf", "-inf", "1e400", "0", "-3"])
def test_non_finite_or_negative_range(tmp_path, rng):
    kw = {"$BYTEORD": "1,2", "$DATATYPE": "I", "$TOT": "1", **params(["a"], 16, R=[rng])}
    s = cw.read_fcs(write_by_hand(tmp_path / "r.fcs", kw, b"\x34\x12"))
    assert s.events.tolist() == [[0x1234]]  # such a range masks nothing
    sample = cw.Sample(s.events, ["a"], [""], keywords={"$P1R": rng})
    cw.write_fcs(tmp_path / "w.fcs", sample)
    back = cw.read_fcs(tmp_path / "w.fcs")
    assert back.events.tolist() == [[0x1234]] and back.keywords["$P1R"] == "65536"


def test_spillover_with_comma_in_channel_name(tmp_path):
    spill = pd.DataFrame([[1.0, 0.125], [0.0, 1.0]], index=["FL1,A", "2"], columns=["FL1,A", "2"])
    s = cw.Sample(np.ones((2, 3), "f4"), ["x", "FL1,A", "2"], ["", "", ""], spillover=spill)
    with pytest.raises(ValueError, match="comma"):  # 'FL1,A' would be written as '2': taken
        cw.write_fcs(tmp_path / "s.fcs", s)
    assert os.listdir(tmp_path) == []
    s = cw.Sample(np.ones((2, 3), "f4"), ["x", "FL1,A", "3"], ["", "", ""], spillover=spill)
    spill.index = spill.columns = ["FL1,A", "3"]
    cw.write_fcs(tmp_path / "s.fcs", s)
    pd.testing.assert_frame_equal(cw.read_fcs(tmp_path / "s.fcs").spillover, spill)


def test_keywords_with_every_delimiter_character(tmp_path):
    kw = {
        "OPERATOR": DELIMS,
        "NOTE/1": "ends with a delimiter/",
        "PATH": "C:\\data\\run|1\\",
        "$comment": "/starts with a slash",
        "Zoë": "non-ASCII – µ 中",
        "$P\u0661X": "Arabic-Indic digit, not a parameter keyword",
    }
    s = cw.Sample(np.ones((1, 1), "f8"), ["a/b|c\\d"], ["x^y~z"], keywords=kw)
    cw.write_fcs(tmp_path / "d.fcs", s)
    back = cw.read_fcs(tmp_path / "d.fcs")
    assert back.channels == ["a/b|c\\d"] and back.markers == ["x^y~z"]
    for key, value in kw.items():
        assert back.keywords[norm(key)] == value


# -- TEXT parser and builder -----------------------------------------------------------------------


def test_doubled_delimiters_inside_values():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_text(b"/A/x//y/B/z/") == {"A": "x/y", "B": "z"}
        assert parse_text(b"/A/x///B/z/") == {"A": "x/", "B": "z"}  # value ending with '/'
        assert parse_text(b"/A/a////b/B/z///") == {"A": "a//b", "B": "z/"}
        assert parse_text(b"|A|C:\\x||y|") == {"A": "C:\\x|y"}


def test_empty_values_fallback_warns():
    with pytest.warns(cw.FCSWarning, match=r"empty values for \$P3S"):
        kw = parse_text(b"/$P3S//$P4N/FSC/", "f.fcs")
    assert kw == {"$P3S": "", "$P4N": "FSC"}
    with pytest.warns(cw.FCSWarning, match="empty values for A, C"):
        kw = parse_text(b"\\A\\\\B\\1\\C\\\\")
    assert kw == {"A": "", "B": "1", "C": ""}


def test_empty_values_in_a_real_file(corpus):
    with pytest.warns(cw.FCSWarning, match="empty values"):
        kw = cw.read_fcs_metadata(corpus / "fcs/flowio/data1.fcs")
    assert kw["&8Acquisition Doc."] == "LYMPH SUBSET ACQ"
    for k in ("&5Data File Prefix Part #1", "&6Data File Prefix Part #2", "&13Analysis Doc."):
        assert kw[k] == ""
    assert not any("\\" in k for k in kw)


def test_trailing_padding_after_last_delimiter():
    for pad in (b"", b"   ", b"\x00\x00\x00", b" \r\n\x00"):
        assert parse_text(b"/A/1/B/two/" + pad) == {"A": "1", "B": "two"}
    assert parse_text(b"/A/1/B/two\x00\x00") == {"A": "1", "B": "two"}  # no final delimiter
    assert parse_text(b"/A/1/B/ two /  ") == {"A": "1", "B": " two "}  # values kept as written
    assert parse_text(b"/  \x00") == {} and parse_text(b"/") == {}  # no keywords, padded


def test_latin1_fallback_and_keyword_case():
    kw = parse_text(b"/$op/Zo\xeb/Name/Zo\xc3\xab/$p1n/FSC/")
    assert kw == {"$OP": "Zoë", "Name": "Zoë", "$P1N": "FSC"}


def test_text_errors():
    with pytest.raises(cw.FCSError, match=r"^f\.fcs: .*keyword/value pairs"):
        parse_text(b"/A/1/B/", "f.fcs")
    with pytest.raises(cw.FCSError, match="cannot be a delimiter"):
        parse_text(b"1A1B1", "f.fcs")
    with pytest.raises(ValueError, match="empty value"):
        build_text({"A": ""})
    with pytest.raises(ValueError, match="white space"):
        build_text({" A": "1"})
    with pytest.raises(ValueError, match="every delimiter"):
        build_text({DELIMS: "1"})


def test_build_text_picks_a_free_delimiter():
    assert build_text({"A": "1"}) == b"/A/1/"
    assert build_text({"A": "x/y"}) == b"|A|x/y|"
    # every choice used: a delimiter no keyword holds and no value starts with, doubled in values
    seg = build_text({"K": DELIMS, "L": "|x", "M": "x/"})
    assert seg.startswith(b"\\") and parse_text(seg) == {"K": DELIMS, "L": "|x", "M": "x/"}


text_keywords = st.dictionaries(
    st.one_of(stripped, stripped.map(lambda s: "$" + s), delim_keys),
    st.one_of(st.text(chars, min_size=1, max_size=12), all_delims, delim_runs),
    max_size=8,
).filter(lambda d: len({norm(k) for k in d}) == len(d) and all(norm(k) == norm(norm(k)) for k in d))


@SETTINGS
@given(text_keywords)
def test_parse_text_inverts_build_text(kw):
    if delimiters_exhausted(kw):
        event("every delimiter used: ValueError")
        with pytest.raises(ValueError, match="every delimiter"):
            build_text(kw)
        return
    segment = build_text(kw)
    event(f"delimiter {segment[:1]!r}, doubled inside: {segment[:1] * 2 in segment}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_text(segment) == {norm(k): v for k, v in kw.items()}
        assert parse_text(segment + b"  \x00") == {norm(k): v for k, v in kw.items()}

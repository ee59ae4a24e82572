"""Robustness of read_fcs / read_fcs_metadata on damaged real files.

Real corpus files (FCS 2.0 int16, FCS 3.1 float, 24-bit, two data sets, mixed widths) are mutated
with a seeded generator: HEADER bytes and offsets, TEXT bytes and delimiters, the values of layout
keywords, DATA bytes, truncation. Every call must return a valid result or raise
:class:`cytowhim.FCSError` naming the file; any other exception (or warning other than
FCSWarning) is a failure that names the mutation.
"""

from __future__ import annotations

import random
import re
import time
import tracemalloc
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw

from .conftest import CORPUS

FILES = {
    "int16-fcs2": "fcs/flowio/data1.fcs",
    "float-fcs31": "fcs/flowkit/test_data_2d_01.fcs",
    "int24": "fcs/flowcal/test/Data003.fcs",
    "two-data-sets": "fcs/flowio/coulter.lmd",
    "mixed-width": "fcs/flowio/variable_int_example.fcs",
}
KINDS = ["header", "header_offset", "text_bytes", "delimiter", "keyword", "data", "truncate"]
CASES_PER_KIND = 10  # x 5 files x 7 kinds = 350 mutated files

LAYOUT_KEYWORDS = [
    "$TOT", "$PAR", "$DATATYPE", "$BYTEORD", "$MODE", "$BEGINDATA", "$ENDDATA", "$NEXTDATA",
    "$BEGINSTEXT", "$ENDSTEXT", "$P1B", "$P2B", "$P{n}B", "$P1R", "$P{n}R", "$P1N", "$SPILL",
    "SPILL", "$SPILLOVER", "$TIMESTEP",
]  # fmt: skip
SPECIAL_VALUES = {
    "$DATATYPE": ["I", "F", "D", "A", "X", "i", " "],
    "$BYTEORD": ["1,2,3,4", "4,3,2,1", "1,2", "2,1", "1,3,2,4", "1,1", "0,1", "1,2,3", "1,,2"],
    "$MODE": ["C", "U", "L", "l"],
    "B": ["8", "16", "24", "32", "64", "0", "12", "*", "128", "-8"],
    "R": ["0", "1", "-1", "nan", "inf", "1e400", "2.5", "18446744073709551616"],
    "SPILL": ["1000000000,a", "2,1,2,1,0,0,1", "x", "0", "1,FSC-A,nan"],
}
NUMBERS = ["0", "1", "-1", "1.5", "1e3", "999999999999", "1000000000", "", "abc", "²", "١٢", " 7 "]


@dataclass
class Layout:
    """Where things are in the original (valid) file."""

    size: int
    headers: list[int]  # HEADER offset of each data set
    texts: list[tuple[int, int]]  # absolute TEXT spans (inclusive)
    data: list[tuple[int, int]]  # absolute DATA spans (inclusive)
    n_par: list[int]


def layout_of(raw: bytes, path: Path) -> Layout:
    headers, texts, data, n_par = [0], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        for ds in (0, 1):
            if ds >= len(headers):
                break
            off = headers[ds]
            t0, t1 = int(raw[off + 10 : off + 18]), int(raw[off + 18 : off + 26])
            texts.append((off + t0, off + t1))
            kw = cw.read_fcs_metadata(path, ds)
            b0 = int(kw.get("$BEGINDATA", "0") or 0) or int(raw[off + 26 : off + 34])
            b1 = int(kw.get("$ENDDATA", "0") or 0) or int(raw[off + 34 : off + 42])
            data.append((off + b0, off + b1))
            n_par.append(int(kw["$PAR"]))
            if int(kw.get("$NEXTDATA", "0")):
                headers.append(off + int(kw["$NEXTDATA"]))
    return Layout(len(raw), headers, texts, data, n_par)


ORIGINALS = {name: (CORPUS / rel).read_bytes() for name, rel in FILES.items()}
LAYOUTS = {name: layout_of(ORIGINALS[name], CORPUS / rel) for name, rel in FILES.items()}


def _value_span(raw: bytes, text: tuple[int, int], key: str) -> tuple[int, int] | None:
    """[start, end) of ``key``'s value inside the TEXT span, found in the raw bytes."""
    t0, t1 = text
    delim = raw[t0 : t0 + 1]
    pattern = re.escape(delim) + re.escape(key.encode()) + re.escape(delim)
    m = re.search(pattern, raw[t0 : t1 + 1], re.IGNORECASE)
    if not m:
        return None
    start = t0 + m.end()
    return start, raw.index(delim, start)


def _new_value(key: str, old: bytes, rng: random.Random) -> bytes:
    kind = "B" if re.fullmatch(r"\$P\d+B", key) else "R" if re.fullmatch(r"\$P\d+R", key) else key
    kind = "SPILL" if "SPILL" in kind else kind
    pick = rng.random()
    if kind in SPECIAL_VALUES and pick < 0.4:
        return rng.choice(SPECIAL_VALUES[kind]).encode()
    digits = [i for i, c in enumerate(old) if chr(c).isdigit()]
    if digits and pick < 0.7:  # change one digit: same length, offsets of everything else hold
        i = rng.choice(digits)
        return old[:i] + str(rng.randrange(10)).encode() + old[i + 1 :]
    if old.strip().isdigit() and pick < 0.8:
        return str(int(old) + rng.choice([-2, -1, 1, 2, 10**6])).encode()
    return rng.choice(NUMBERS).encode()


def _set_header_field(raw: bytearray, off: int, field: int, value: int | None) -> None:
    pos = off + 10 + 8 * field
    raw[pos : pos + 8] = b" " * 8 if value is None else f"{value:>8d}"[-8:].encode()


def mutate(name: str, kind: str, rng: random.Random) -> tuple[bytes, str]:
    """A damaged copy of the file and a description of the damage (to report failures)."""
    raw = bytearray(ORIGINALS[name])
    lay = LAYOUTS[name]
    ds = rng.randrange(len(lay.headers))
    off, (t0, t1), (d0, d1) = lay.headers[ds], lay.texts[ds], lay.data[ds]
    if kind == "header":
        notes = []
        for _ in range(rng.randint(1, 3)):
            pos = off + rng.randrange(58)
            byte = rng.choice([*b"0123456789 -+.eE/", 0x00, 0xFF, 0xB2, rng.randrange(256)])
            raw[pos] = byte
            notes.append(f"byte {pos}={byte:#04x}")
        return bytes(raw), f"data set {ds} HEADER: {', '.join(notes)}"
    if kind == "header_offset":
        field = rng.randrange(6)
        value = rng.choice(
            [0, None, 57, 58, t0, t1, t1 + 1, d0, d1, d1 + 1, lay.size - 1, lay.size, 99_999_999]
            + [rng.randrange(lay.size), rng.randrange(lay.size) + rng.choice([-1, 0, 1])]
        )
        _set_header_field(raw, off, field, value)
        return bytes(raw), f"data set {ds} HEADER offset field {field} = {value}"
    if kind == "text_bytes":
        notes = []
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(t0, t1 + 1)
            op = rng.choice(["replace", "insert", "delete"])
            byte = rng.choice([rng.randrange(256), raw[t0], 0x00, 0xFF, *b"09$ "])
            if op == "replace":
                raw[pos] = byte
            elif op == "insert":
                raw.insert(pos, byte)
            else:
                del raw[pos]
            notes.append(f"{op} {pos} {byte:#04x}")
        return bytes(raw), f"data set {ds} TEXT bytes: {', '.join(notes)}"
    if kind == "delimiter":
        delim = raw[t0]
        where = [i for i in range(t0 + 1, t1 + 1) if raw[i] == delim]
        pos = rng.choice(where)
        op = rng.choice(["delete", "double", "to space"])
        if op == "delete":
            del raw[pos]
        elif op == "double":
            raw.insert(pos, delim)
        else:
            raw[pos] = 0x20
        return bytes(raw), f"data set {ds} TEXT delimiter at {pos}: {op}"
    if kind == "keyword":
        keys = [
            k.replace("{n}", str(lay.n_par[ds]))
            for k in LAYOUT_KEYWORDS
            if _value_span(bytes(raw), (t0, t1), k.replace("{n}", str(lay.n_par[ds])))
        ]
        key = rng.choice(keys)
        a, b = _value_span(bytes(raw), (t0, t1), key)
        old = bytes(raw[a:b])
        new = _new_value(key, old, rng)
        raw[a:b] = new
        note = f"data set {ds} {key}: {old!r} -> {new!r}"
        delta = len(new) - len(old)
        if delta and rng.random() < 0.5:  # keep the HEADER's TEXT end in step
            _set_header_field(raw, off, 1, t1 - off + delta)
            note += f", HEADER TEXT end {t1 - off + delta}"
        return bytes(raw), note
    if kind == "data":
        notes = []
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(d0, d1 + 1)
            raw[pos] = rng.randrange(256)
            notes.append(str(pos))
        return bytes(raw), f"data set {ds} DATA bytes {', '.join(notes)} replaced"
    assert kind == "truncate"
    region = rng.choice([(0, 58), (t0, t1 + 1), (d0, d1 + 1), (0, lay.size)])
    cut = rng.randrange(*region)
    return bytes(raw[:cut]), f"truncated to {cut} of {lay.size} bytes"


def check_sample(s: cw.Sample) -> None:
    """What every Sample must look like."""
    assert isinstance(s, cw.Sample)
    assert isinstance(s.events, np.ndarray) and s.events.ndim == 2
    assert s.events.shape[1] == len(s.channels) == len(s.markers) >= 1
    assert len(set(s.channels)) == len(s.channels)
    assert all(isinstance(c, str) and c for c in s.channels)
    assert all(isinstance(m, str) for m in s.markers)
    check_keywords(s.keywords)
    if s.spillover is not None:
        assert isinstance(s.spillover, pd.DataFrame)
        assert set(s.spillover.columns) <= set(s.channels)


def check_keywords(kw: dict) -> None:
    assert isinstance(kw, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in kw.items())


def outcome(call, path: Path, data_set: int) -> str | None:
    """None if ``call`` behaved (valid result or FCSError naming the file), else the problem."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy RuntimeWarnings etc. are failures too
            warnings.simplefilter("ignore", cw.FCSWarning)
            result = call(path, data_set)
        (check_sample if call is cw.read_fcs else check_keywords)(result)
    except cw.FCSError as exc:
        if str(path) not in str(exc):
            return f"FCSError without the path: {exc}"
    except Exception as exc:  # any other exception is what we look for
        return f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    if elapsed > 5:
        return f"took {elapsed:.1f} s"
    return None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FILES)
def test_mutated_files_fail_cleanly(tmp_path, name, kind):
    failures = []
    n_sets = len(LAYOUTS[name].headers)
    for i in range(CASES_PER_KIND):
        rng = random.Random(f"{name}/{kind}/{i}")  # str seeds are stable across runs
        raw, what = mutate(name, kind, rng)
        path = tmp_path / f"{i}.fcs"
        path.write_bytes(raw)
        for data_set in range(n_sets):
            for call in (cw.read_fcs, cw.read_fcs_metadata):
                problem = outcome(call, path, data_set)
                if problem:
                    failures.append(
                        f"{FILES[name]} [{what}] {call.__name__}(data_set={data_set}): {problem}"
                    )
        path.unlink()
    assert not failures, "\n".join(failures)


def test_data_mutations_still_read(tmp_path):
    """Damaged DATA bytes are still events: the reader cannot (and must not) object."""
    for name in FILES:
        raw, what = mutate(name, "data", random.Random(f"{name}/data/read"))
        path = tmp_path / f"{name}.fcs"
        path.write_bytes(raw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cw.FCSWarning)
            damaged = cw.read_fcs(path)
            original = cw.read_fcs(CORPUS / FILES[name])
        assert damaged.events.shape == original.events.shape, what
        assert damaged.channels == original.channels


# -- explicit cases --------------------------------------------------------------------------------


def _replace_value(name: str, key: str, value: bytes) -> bytes:
    """The file with one keyword value of data set 0 replaced and the HEADER's TEXT end moved
    along. The padding between TEXT and DATA (if any) absorbs the change so DATA stays in place;
    otherwise DATA moves and the HEADER's DATA offsets are off (fine for the error cases)."""
    raw, lay = ORIGINALS[name], LAYOUTS[name]
    (t0, t1), d0 = lay.texts[0], lay.data[0][0]
    a, b = _value_span(raw, (t0, t1), key)
    delta = len(value) - (b - a)
    gap = d0 - t1 - 1
    pad = b" " * (gap - delta) if 0 <= gap - delta else raw[t1 + 1 : d0]
    out = bytearray(raw[:a] + value + raw[b : t1 + 1] + pad + raw[d0:])
    _set_header_field(out, 0, 1, t1 + delta)
    return bytes(out)


def _measured(call, *args):
    """(result or FCSError, FCSWarning messages, seconds, peak bytes allocated)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = call(*args)
            except cw.FCSError as exc:
                result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(issubclass(w.category, cw.FCSWarning) for w in caught), caught
    return result, [str(w.message) for w in caught], time.perf_counter() - started, peak


@pytest.mark.parametrize("name", FILES)
def test_truncated_data(tmp_path, name):
    lay = LAYOUTS[name]
    path = tmp_path / "cut.fcs"
    path.write_bytes(ORIGINALS[name][: lay.data[0][0] + (lay.data[0][1] - lay.data[0][0]) // 2])
    with pytest.raises(cw.FCSError) as err:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cw.FCSWarning)
            cw.read_fcs(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "truncated" in msg
    assert re.search(rf"needs bytes up to \d+ but the file ends at {path.stat().st_size - 1}", msg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        kw = cw.read_fcs_metadata(path)  # HEADER and TEXT are intact
        assert kw == cw.read_fcs_metadata(CORPUS / FILES[name])


def test_not_an_fcs_file(corpus):
    path = corpus / "fcs/fcsparser/corrupted/corrupted.fcs"
    for call in (cw.read_fcs, cw.read_fcs_metadata):
        with pytest.raises(cw.FCSError, match="not an FCS file") as err:
            call(path)
        assert str(err.value).startswith(str(path))


@pytest.mark.filterwarnings("ignore::cytowhim.errors.FCSWarning")  # data1's empty values
def test_tot_larger_than_the_file(tmp_path):
    path = tmp_path / "tot.fcs"
    path.write_bytes(_replace_value("int16-fcs2", "$TOT", b"99999"))  # was 13367: same length
    with pytest.raises(cw.FCSError, match=r"\$TOT=99999 events x 16 bytes = 1599984 bytes") as e:
        cw.read_fcs(path)
    assert str(e.value).startswith(str(path)) and "truncated file or wrong keywords" in str(e.value)
    assert cw.read_fcs_metadata(path)["$TOT"] == "99999"


def test_empty_file_and_directory(tmp_path):
    empty = tmp_path / "empty.fcs"
    empty.write_bytes(b"")
    for call in (cw.read_fcs, cw.read_fcs_metadata):
        with pytest.raises(cw.FCSError, match="not an FCS file") as err:
            call(empty)
        assert str(err.value).startswith(str(empty))
        with pytest.raises(cw.FCSError, match="is a directory") as err:
            call(tmp_path)
        assert str(err.value).startswith(str(tmp_path))


def test_short_files(tmp_path):
    path = tmp_path / "short.fcs"
    for cut in (3, 20, 57, 58, 300):
        path.write_bytes(ORIGINALS["float-fcs31"][:cut])
        with pytest.raises(cw.FCSError, match="truncated") as err:
            cw.read_fcs_metadata(path)
        assert str(err.value).startswith(str(path))


def test_non_ascii_digits_in_header_offsets(tmp_path):
    raw = bytearray(ORIGINALS["float-fcs31"])
    raw[17] = 0xB2  # latin-1 '²', which str.isdigit() accepts and int() refuses
    path = tmp_path / "h.fcs"
    path.write_bytes(bytes(raw))
    with pytest.raises(
        cw.FCSError, match=r"TEXT start offset '25²' \(bytes 10-17\) is not a number"
    ):
        cw.read_fcs(path)


HUGE = [
    ("int16-fcs2", "$TOT", b"999999999999", r"\$TOT=999999999999 events x 16 bytes"),
    ("int16-fcs2", "$PAR", b"1000000000", r"\$PAR=1000000000 but keyword \$P9B .* is missing"),
    ("float-fcs31", "$TOT", b"999999999999", r"\$TOT=999999999999 events x 8 bytes"),
    ("float-fcs31", "$PAR", b"1000000000", r"\$PAR=1000000000 but keyword \$P3B .* is missing"),
    ("int24", "$P1B", b"1000000000", r"\$P1B=1000000000: integer parameters must be 1 to 64"),
    ("int24", "$TOT", b"1" + b"0" * 30, r"\$TOT=10{30} events x 24 bytes"),
    ("two-data-sets", "$TOT", b"1" + b"0" * 30, r"\$TOT=10{30} events x 16 bytes"),
    ("mixed-width", "$TOT", b"1e300", r"\$TOT=\d{301} events x 54 bytes"),
]


@pytest.mark.parametrize(("name", "key", "value", "match"), HUGE)
def test_huge_numbers_fail_fast(tmp_path, name, key, value, match):
    path = tmp_path / "huge.fcs"
    path.write_bytes(_replace_value(name, key, value))
    for call in (cw.read_fcs, cw.read_fcs_metadata):
        result, _, seconds, peak = _measured(call, path)
        if call is cw.read_fcs_metadata:
            assert result[key] == value.decode()  # TEXT itself is fine
        else:
            assert isinstance(result, cw.FCSError), result
            assert str(result).startswith(str(path)) and re.search(match, str(result))
        assert seconds < 2 and peak < 20_000_000  # nothing sized by the bogus number


READ_AROUND = [
    ("int24", "$NEXTDATA", b"999999999999", None),  # only followed for data_set >= 1
    ("int24", "$BEGINSTEXT", b"999999999999", "supplemental TEXT offsets 999999999999-0"),
    ("int24", "$ENDDATA", b"999999999999999", "HEADER and TEXT disagree on where DATA is"),
    ("int16-fcs2", "$P1R", b"1e400", None),  # not a range: no mask (the values fit 10 bits)
    ("int16-fcs2", "$P1R", b"nan", None),
]


@pytest.mark.parametrize(("name", "key", "value", "warning"), READ_AROUND)
def test_huge_numbers_that_are_read_around(tmp_path, name, key, value, warning):
    path = tmp_path / "huge.fcs"
    path.write_bytes(_replace_value(name, key, value))
    s, caught, seconds, peak = _measured(cw.read_fcs, path)
    assert isinstance(s, cw.Sample), s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)
        original = cw.read_fcs(CORPUS / FILES[name])
    assert np.array_equal(s.events, original.events) and s.channels == original.channels
    if warning:
        assert any(re.search(warning, w) for w in caught), caught
    assert seconds < 2 and peak < 50_000_000
    if key == "$NEXTDATA":
        result, caught, _, _ = _measured(cw.read_fcs, path, 1)
        assert isinstance(result, cw.FCSError) and "the file holds 1 data set" in str(result)
        assert any("$NEXTDATA points to byte 999999999999" in w for w in caught), caught

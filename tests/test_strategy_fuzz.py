"""Robustness of the strategy readers (YAML, Gating-ML, FlowJo workspaces) on damaged files,
beside the FCS reader's fuzz test (tests/test_fcs_fuzz.py).

Real strategies (the default WHIM strategies, a fixed-gate strategy with every gate kind, the
ISAC Gating-ML compliance file with every gate, Cytobank's export, two FlowJo workspaces) are
mutated: bytes, numbers and names swapped for hostile values, nodes replaced by random values,
elements deleted or duplicated. Every load must give a strategy whose numbers are finite where
gates need them, or a :class:`gating.StrategyError` naming the file, within a few seconds; any
other exception (or warning) is a failure that names the mutation.
"""

from __future__ import annotations

import math
import random
import re
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gating import EllipsoidGate, PolygonGate, RectangleGate, Strategy, StrategyError
from gating.flowjo import list_samples, read_flowjo
from gating.gatingml import read_gatingml
from gating.limits import MAX_DEPTH, MAX_POLYGON_VERTICES, MAX_POPULATIONS
from gating.strategy import name_problem
from gating.transforms import Ratio, Transform
from gating.yaml_format import load_yaml

from .conftest import CORPUS, REPO

SECONDS = 5  # per load

FIXED = """\
name: every gate
compensation: FCS
transforms:
  fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}
  soft: {asinh: {T: 262144, M: 4.5, A: 0}}
  hl: {hyperlog: {T: 262144, W: 0.5, M: 4.5, A: 0}}
  lin: {linear: {T: 262144, A: 0}}
  lg: {log: {T: 262144, M: 4.5}}
  r: {ratio: {numerator: FSC-A, denominator: SSC-A, A: 1, B: 0, C: 0}}
populations:
  - name: cells
    gate: {polygon: {x: FSC-A, y: SSC-A, vertices: [[2e4, 0], [9e4, 0], [9e4, 5e4], [2e4, 5e4]]}}
  - name: T cells
    parent: cells
    gate: {range: {dimension: CD3, transform: fluor, min: 0.35}}
  - name: box
    parent: cells
    label: the box
    gate: {rectangle: {dimensions: [CD4, {name: CD8, transform: soft}], min: [0.1, 0.2],
                       max: [0.8, null]}}
  - quadrant: {parent: T cells, x: CD4, y: CD8, transform: fluor, at: [0.4, 0.4],
               populations: {CD4+: "+-", CD8+: "-+", DP: "++", DN: "--"}}
  - name: blob
    gate: {ellipse: {dimensions: [FSC-A, SSC-A], mean: [5e4, 2e4],
                     covariance: [[1e8, 2e7], [2e7, 5e7]], distance_square: 1}}
  - name: NK
    parent: cells
    gate: {and: [T cells, {not: box}]}
  - name: not T
    gate: {not: T cells}
  - name: either
    gate: {or: [CD4+, CD8+]}
  - name: ratio high
    gate: {range: {dimension: {name: r, transform: lin}, min: 0.5}}
  - name: upper
    parent: T cells
    gate: {threshold: {dimension: CD3, transform: fluor, search: [0.2, 0.8], fallback: 0.5,
                       depth: 0.6, peaks: 2, prefer: lowest}}
  - name: tail
    parent: cells
    gate: {tail: {dimension: SSC-A, k: 3, side: upper, keep: rest}}
  - name: q
    parent: cells
    gate: {quantile: {dimension: {name: CD3, transform: hl}, lower: 0.1, upper: 0.9}}
  - name: lg
    gate: {range: {dimension: {name: FSC-A, transform: lg}, max: 0.9}}
  - scatter: {parent: cells, x: FSC-A, y: SSC-A, components: 4,
              populations: {lymphs: [6e4, 1e4], monos: {at: [9e4, 4e4], required: false}}}
"""

YAML_SEEDS = {
    "fixed": FIXED,
    **{
        p.stem: p.read_text(encoding="utf-8")
        for p in sorted((REPO / "data/strategies").glob("*.yaml"))
    },
}
XML_SEEDS = {
    "gml_all_gates": (CORPUS / "gatingml/gml/gml_all_gates.xml").read_bytes(),
    "cytobank": (CORPUS / "gatingml/cytobank_cytotrol/cytotrol_tcell_cytobank.xml").read_bytes(),
    "transforms": (
        CORPUS / "gatingml/gml/gml_matrix_transform_logicle_rect1_gate.xml"
    ).read_bytes(),
}
WORKSPACES = {
    "quad": CORPUS / "flowjo/flowkit_simple_diamond_example/simple_diamond_example_quad_gate.wsp",
    "asinh": CORPUS / "flowjo/flowkit_simple_diamond_example/test_data_diamond_asinh_rect.wsp",
}

HOSTILE_NUMBERS = [
    ".nan", ".inf", "-.inf", "1e309", "-1e309", "-0", "1e-320", "abc", "null", "[]", "{}",
    "99999999999999999999999", "0x1F", "'1'", "''", "true", "-1", "0", "1e9", "[1, [2, [3]]]",
    "!!binary aGVsbG8=", "!!python/object/apply:os.system ['true']", "*undefined", "&a 1",
]  # fmt: skip
HOSTILE_NAMES = [
    "''", "'a/b'", '"a\\0b"', '"tab\\there"', '"\\x7f"', "[a]", "{a: b}", "~", "'" + "x" * 300 + "'",
    "'-'", "'=HYPERLINK(\"x\")'", "CD4+", "'T cells'", "'  '", '"\\u2028"', "cells",
]  # fmt: skip
YAML_BYTES = [*b":-[]{},&*!|>'\"#%@`\t\n ", 0x00, 0xE9, 0xFF, 0x85]
XML_VALUES = [
    "nan", "NaN", "inf", "-INF", "1e309", "", "abc", "-0", "1" * 200, "0x10", " 1 ", "1e-400",
    "-1", "0", "2", "100000000", "true", "FL1-H", "&amp;", "R1", "cells/T",
]  # fmt: skip


def outcome(load, path: Path) -> str | None:
    """None if ``load(path)`` behaved (a sane strategy, or a StrategyError naming the file),
    else what went wrong."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy RuntimeWarnings etc. are failures too
            strategy = load(path)
        problem = check_strategy(strategy)
        if problem:
            return f"loaded, but {problem}"
    except StrategyError as exc:
        if not str(exc).startswith(str(path)):
            return f"StrategyError without the path: {str(exc)[:300]}"
        if len(str(exc)) > 5000:
            return f"a message of {len(str(exc))} characters"
    except Exception as exc:  # any other exception is what we look for
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    elapsed = time.perf_counter() - started
    if elapsed > SECONDS:
        return f"took {elapsed:.1f} s"
    return None


def _finite(values) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


def check_strategy(st: Strategy) -> str | None:
    """What is wrong with a loaded strategy (None if nothing): the limits and the numbers gates
    need, so that a damaged file never gates nothing silently."""
    if not isinstance(st, Strategy) or len(st) > MAX_POPULATIONS:  # a FlowJo sample may have none
        return f"{len(st)} populations"
    for p in st:
        problem = name_problem(p.display)
        if problem:
            return f"population {p.display!r} {problem}"
        if st.path(p.name).count("/") >= MAX_DEPTH and p.label is None:
            return f"population {p.name!r} nested too deep"
        gate = getattr(p.gate, "gate", p.gate)  # FlowJo's wrappers hold the geometric gate
        if isinstance(gate, RectangleGate):
            if not (_finite(gate.mins) and _finite(gate.maxs)):
                return f"{p.name!r}: bounds {gate.mins}, {gate.maxs}"
            if any(
                lo is not None and hi is not None and lo > hi
                for lo, hi in zip(gate.mins, gate.maxs)
            ):
                return f"{p.name!r}: min above max"
        if isinstance(gate, PolygonGate):
            flat = [c for v in gate.vertices for c in v]
            if not _finite(flat) or not 3 <= len(gate.vertices) <= MAX_POLYGON_VERTICES:
                return f"{p.name!r}: {len(gate.vertices)} vertices"
        if isinstance(gate, EllipsoidGate):
            flat = [*gate.mean, *(c for r in gate.covariance for c in r), gate.distance_square]
            if not _finite(flat) or gate.distance_square <= 0:
                return f"{p.name!r}: ellipsoid {gate.mean}"
    for tid, tr in st.transforms.items():
        params = tr.params() if isinstance(tr, (Transform, Ratio)) else {}
        if not _finite(params.values()):
            return f"transform {tid!r}: {params}"
    return None


# --- YAML --------------------------------------------------------------------------------------------


def _yaml_text_mutation(text: str, rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(["bytes", "number", "name", "line"])
    raw = bytearray(text.encode("utf-8"))
    if kind == "bytes":
        notes = []
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(raw))
            op = rng.choice(["replace", "insert", "delete"])
            byte = rng.choice([*YAML_BYTES, rng.randrange(256)])
            if op == "replace":
                raw[pos] = byte
            elif op == "insert":
                raw.insert(pos, byte)
            else:
                del raw[pos]
            notes.append(f"{op} {pos} {byte:#04x}")
        return bytes(raw), f"bytes: {', '.join(notes)}"
    if kind == "number":
        numbers = list(re.finditer(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?(?![\w.])", text))
        m = rng.choice(numbers)
        new = rng.choice(HOSTILE_NUMBERS)
        return (text[: m.start()] + new + text[m.end() :]).encode(), f"{m.group()!r} -> {new!r}"
    if kind == "name":
        names = list(re.finditer(r"(?<=name: )[^,}\n]+|(?<=parent: )[^,}\n]+", text))
        m = rng.choice(names)
        new = rng.choice(HOSTILE_NAMES)
        return (text[: m.start()] + new + text[m.end() :]).encode(), f"{m.group()!r} -> {new!r}"
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    op = rng.choice(["delete", "duplicate", "indent", "dedent"])
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "indent":
        lines[i] = "  " + lines[i]
    else:
        lines[i] = lines[i].lstrip(" ")
    return "".join(lines).encode(), f"line {i + 1}: {op}"


@pytest.mark.parametrize("seed", sorted(YAML_SEEDS))
def test_mutated_yaml_strategies(tmp_path, seed):
    text = YAML_SEEDS[seed]
    path = tmp_path / f"{seed}.yaml"
    path.write_text(text, encoding="utf-8")
    assert outcome(load_yaml, path) is None  # the original loads
    failures = []
    for i in range(120):
        rng = random.Random(f"{seed}/{i}")
        raw, what = _yaml_text_mutation(text, rng)
        path.write_bytes(raw)
        problem = outcome(load_yaml, path)
        if problem:
            failures.append(f"{seed} [{what}]: {problem}")
    assert not failures, "\n".join(failures)


# values a mutated node may become: anything YAML can say, hostile where it can be
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "a/b", "\x00", "\u2028", "=SUM(A1)", "FSC-A", "T cells", "+", "auto"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _nodes(doc, path=()):
    """Every (path, value) in a parsed document."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, (*path, i))


def _replace(doc, path, value):
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


_DELETE = object()


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_yaml_nodes_replaced_by_random_values(tmp_path, data):
    seed = data.draw(st.sampled_from(sorted(YAML_SEEDS)), label="seed")
    doc = yaml.safe_load(YAML_SEEDS[seed])
    nodes = list(_nodes(doc))
    where, _ = data.draw(st.sampled_from(nodes[1:]), label="node")
    value = data.draw(st.one_of(st.just(_DELETE), _values), label="value")
    doc = _replace(doc, where, value)
    path = tmp_path / "mutated.yaml"
    try:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:  # e.g. a key YAML cannot write back
        return
    path.write_text(text, encoding="utf-8")
    problem = outcome(load_yaml, path)
    assert problem is None, f"{seed} {where} -> {value!r}: {problem}"


# --- Gating-ML -----------------------------------------------------------------------------------------


def _xml_mutation(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(["attribute", "attribute", "element", "bytes"])
    if kind == "attribute":
        attrs = list(re.finditer(rb'(\w[\w:-]*)="([^"]*)"', raw))
        m = rng.choice(attrs)
        new = rng.choice(XML_VALUES).encode()
        out = raw[: m.start(2)] + new + raw[m.end(2) :]
        return out, f"{m.group(1).decode()}={m.group(2).decode()!r} -> {new.decode()!r}"
    if kind == "bytes":
        out = bytearray(raw)
        notes = []
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(out))
            byte = rng.choice([*b"<>/=\"'&;:! ", 0x00, 0xFF, rng.randrange(256)])
            out[pos] = byte
            notes.append(f"{pos}={byte:#04x}")
        return bytes(out), f"bytes {', '.join(notes)}"
    root = ET.fromstring(raw)
    parents = [(p, c) for p in root.iter() for c in p]
    parent, child = rng.choice(parents)
    op = rng.choice(["delete", "duplicate", "drop attributes", "empty"])
    if op == "delete":
        parent.remove(child)
    elif op == "duplicate":
        parent.append(child)
    elif op == "drop attributes":
        child.attrib.clear()
    else:
        for c in list(child):
            child.remove(c)
    return ET.tostring(root), f"{op} {child.tag.split('}')[-1]}"


@pytest.mark.parametrize("seed", sorted(XML_SEEDS))
def test_mutated_gatingml(tmp_path, seed):
    raw = XML_SEEDS[seed]
    path = tmp_path / f"{seed}.xml"
    path.write_bytes(raw)
    assert outcome(read_gatingml, path) is None
    failures = []
    for i in range(100):
        rng = random.Random(f"{seed}/{i}")
        mutated, what = _xml_mutation(raw, rng)
        path.write_bytes(mutated)
        problem = outcome(read_gatingml, path)
        if problem:
            failures.append(f"{seed} [{what}]: {problem}")
    assert not failures, "\n".join(failures)


def test_our_own_gatingml_mutated(tmp_path):
    """What :func:`gating.gatingml.write_gatingml` writes (names kept in cytowhim:name)."""
    source = tmp_path / "fixed.yaml"
    source.write_text(FIXED, encoding="utf-8")
    strategy = load_yaml(source)
    fixed = Strategy(
        [p for p in strategy if isinstance(p.gate, (RectangleGate, PolygonGate, EllipsoidGate))],
        strategy.transforms,
    )
    written = tmp_path / "ours.xml"
    fixed.to_gatingml(written)
    raw = written.read_bytes()
    path = tmp_path / "mutated.xml"
    failures = []
    for i in range(80):
        mutated, what = _xml_mutation(raw, random.Random(f"ours/{i}"))
        path.write_bytes(mutated)
        problem = outcome(read_gatingml, path)
        if problem:
            failures.append(f"[{what}]: {problem}")
    assert not failures, "\n".join(failures)


# --- FlowJo workspaces -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", sorted(WORKSPACES))
def test_mutated_flowjo_workspaces(tmp_path, seed):
    raw = WORKSPACES[seed].read_bytes()
    path = tmp_path / f"{seed}.wsp"
    failures = []
    for i in range(40):
        mutated, what = _xml_mutation(raw, random.Random(f"{seed}/{i}"))
        path.write_bytes(mutated)

        def load(p):
            try:
                samples = list_samples(p)
            except StrategyError:
                raise
            if not samples:
                raise StrategyError(f"{p}: no samples")
            return read_flowjo(p, samples[0])

        problem = outcome(load, path)
        if problem:
            failures.append(f"{seed} [{what}]: {problem}")
    assert not failures, "\n".join(failures)

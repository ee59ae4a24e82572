"""The project's YAML strategy format, checked against masks computed independently with numpy."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from flowutils import transforms as fut

import cytowhim as cw
from gating import GatingError, Strategy, StrategyError, register_gate
from gating.errors import MissingDimensionError
from gating.yaml_format import strategy_to_dict

from .conftest import REPO

EXAMPLE = REPO / "data" / "examples" / "example_tbnk.fcs"

TBNK = """
name: small TBNK
compensation: FCS
transforms:
  fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}
populations:
  - name: lymphocytes
    gate:
      polygon: {x: FSC-A, y: SSC-A,
                vertices: [[35000, 2000], [85000, 2000], [85000, 22000], [35000, 22000]]}
  - name: CD45+
    parent: lymphocytes
    gate: {range: {dimension: CD45, transform: fluor, min: 0.45}}
  - name: T cells
    parent: CD45+
    gate: {range: {dimension: CD3, transform: fluor, min: 0.5}}
  - quadrant:
      parent: T cells
      x: CD4
      y: CD8
      transform: fluor
      at: [0.5, 0.5]
      populations: {CD4+: "+-", CD8+: "-+", CD4+CD8+: "++", CD4-CD8-: "--"}
  - name: not T
    parent: CD45+
    gate: {not: T cells}
  - name: B cells
    parent: not T
    gate: {range: {dimension: {name: APC-A, transform: fluor}, min: 0.5}}
  - name: T or B
    gate: {or: [T cells, B cells]}
  - name: lymphs not T
    parent: lymphocytes
    gate: {and: [CD45+, {not: T cells}]}
"""


@pytest.fixture(scope="module")
def sample():
    return cw.read_fcs(EXAMPLE)


def _write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_strategy_matches_numpy(tmp_path, sample):
    st = Strategy.load(_write(tmp_path, TBNK))
    r = st.apply(sample)

    # independent computation: compensate with the file's spillover, logicle with flowutils
    ev = sample.events.astype(np.float64)
    spill = sample.spillover
    cols = [sample.channels.index(c) for c in spill.columns]
    comp = ev.copy()
    comp[:, cols] = ev[:, cols] @ np.linalg.inv(spill.to_numpy())

    def scaled(marker):
        j = sample.index(marker)
        return fut.logicle(comp[:, j], None, t=262144, m=4.5, w=0.5, a=0)

    fsc, ssc = ev[:, 0], ev[:, 2]
    lymph = (fsc >= 35000) & (fsc <= 85000) & (ssc >= 2000) & (ssc <= 22000)
    cd45 = lymph & (scaled("CD45") >= 0.45)
    t = cd45 & (scaled("CD3") >= 0.5)
    cd4, cd8 = scaled("CD4"), scaled("CD8")
    assert np.array_equal(r.mask("lymphocytes"), lymph)
    assert np.array_equal(r.mask("CD45+"), cd45)
    assert np.array_equal(r.mask("T cells"), t)
    assert np.array_equal(r.mask("CD4+"), t & (cd4 >= 0.5) & (cd8 < 0.5))
    assert np.array_equal(r.mask("CD8+"), t & (cd4 < 0.5) & (cd8 >= 0.5))
    assert np.array_equal(r.mask("CD4+CD8+"), t & (cd4 >= 0.5) & (cd8 >= 0.5))
    assert np.array_equal(r.mask("CD4-CD8-"), t & (cd4 < 0.5) & (cd8 < 0.5))
    b = cd45 & ~t & (scaled("CD19") >= 0.5)
    assert np.array_equal(r.mask("B cells"), b)
    assert np.array_equal(r.mask("T or B"), t | b)
    assert np.array_equal(r.mask("lymphs not T"), cd45 & ~t)
    assert t.sum() > 100 and (t & (cd4 >= 0.5) & (cd8 < 0.5)).sum() > 50  # data fit the gates

    counts = r.counts()
    assert counts["lymphocytes/CD45+/T cells/CD4+"] == r.count("CD4+")
    stats = r.stats(medians=True)
    row = stats.set_index("name").loc["T cells"]
    assert row["percent_of_parent"] == pytest.approx(100 * t.sum() / cd45.sum())
    assert row["median CD3"] == pytest.approx(np.median(comp[t, sample.index("CD3")]))
    geometry = r.geometry()
    assert geometry["lymphocytes/CD45+/T cells"]["min"] == [0.5]


def test_yaml_round_trip(tmp_path, sample):
    st = Strategy.load(_write(tmp_path, TBNK))
    out = tmp_path / "again.yaml"
    st.to_yaml(out)
    again = Strategy.load(out)
    a, b = st.apply(sample), again.apply(sample)
    for p in st.populations:
        assert np.array_equal(a.mask(p.name), b.mask(p.name))
    assert strategy_to_dict(again) == strategy_to_dict(st)


def test_missing_marker_names_strategy_file_and_marker(tmp_path, sample):
    path = _write(tmp_path, TBNK.replace("dimension: CD3,", "dimension: CD45RA,"))
    st = Strategy.load(path)
    with pytest.raises(MissingDimensionError) as info:
        st.apply(sample)
    msg = str(info.value)
    assert str(path) in msg and "'CD45RA'" in msg and "example_tbnk.fcs" in msg
    assert "FITC-A (CD3)" in msg  # lists what the sample has


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("populations: []", "expected a list of populations"),
        ("populations:\n  - name: a\n    gate: {blob: {}}", "gate must be one of"),
        ("populations:\n  - name: a\n    gate: {range: {min: 1}}", "range gate lacks 'dimension'"),
        (
            "populations:\n  - name: a\n    parent: b\n    gate: {range: {dimension: X, min: 1}}",
            "unknown population 'b'",
        ),
        ("transforms: {f: {logicle: {Q: 1}}}\npopulations: []", "transform 'f'"),
        (
            "populations:\n  - name: a\n    gate: {range: {dimension: X, min: 1, transform: t}}",
            "refers to transform 't'",
        ),
        ("compensation: nothere.csv\npopulations: []", "nothere.csv"),
        (
            "populations:\n  - quadrant: {x: A, y: B, at: [1, 1], populations: {q: '+x'}}",
            "must be two of",
        ),
        (
            "populations:\n  - name: a\n    gate: {range: {dimension: X, min: 1}}\n"
            "  - name: a\n    gate: {range: {dimension: X, min: 2}}",
            "defined twice",
        ),
        ("populations:\n  - name: a\n    gate: {custom: {function: nobody}}", "no custom gate"),
        ("populations: [", "not valid YAML"),
    ],
)
def test_bad_strategy_files_name_file_and_place(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(StrategyError, match=message) as info:
        Strategy.load(path)
    assert str(path) in str(info.value)


def test_custom_gates_by_registered_name(tmp_path, sample):
    @register_gate("test_upper_quantile")
    def upper(values, q=0.9):
        return values[:, 0] >= np.quantile(values[:, 0], q)

    path = _write(
        tmp_path,
        """
        populations:
          - name: bright
            gate: {custom: {function: test_upper_quantile, dimensions: [SSC-A], params: {q: 0.75}}}
          - name: bright lymphs
            parent: bright
            gate: {range: {dimension: FSC-A, max: 80000}}
    """,
    )
    r = Strategy.load(path).apply(sample)
    ssc = sample.events[:, 2].astype(np.float64)
    expected = ssc >= np.quantile(ssc, 0.75)
    assert np.array_equal(r.mask("bright"), expected)
    assert np.array_equal(r.mask("bright lymphs"), expected & (sample.events[:, 0] < 80000))

    @register_gate("test_bad_return")
    def bad(values):
        return np.zeros(3)

    path = _write(
        tmp_path,
        """
        populations:
          - name: x
            gate: {custom: {function: test_bad_return, dimensions: [SSC-A]}}
    """,
        "bad.yaml",
    )
    with pytest.raises(GatingError, match="must return a bool array"):
        Strategy.load(path).apply(sample)


def test_custom_gate_subclass_from_python_and_yaml(tmp_path, sample):
    from gating import Dimension, Gate, Population

    @register_gate("test_band")
    @dataclass(frozen=True)
    class Band(Gate):
        """Events whose first dimension lies within `width` of `centre`."""

        kind: ClassVar[str] = "band"
        dimensions: tuple
        centre: float = 0.0
        width: float = 1.0

        def contains(self, values):
            return np.abs(values[:, 0] - self.centre) <= self.width

        def geometry(self):
            return {"centre": self.centre, "width": self.width}

    fsc = sample.events[:, 0].astype(np.float64)
    expected = np.abs(fsc - 60000) <= 5000
    direct = Strategy([Population("band", Band((Dimension("FSC-A"),), 60000, 5000))])
    assert np.array_equal(direct.apply(sample).mask("band"), expected)
    path = _write(
        tmp_path,
        """
        populations:
          - name: band
            gate: {custom: {function: test_band, dimensions: [FSC-A],
                            params: {centre: 60000, width: 5000}}}
    """,
    )
    result = Strategy.load(path).apply(sample)
    assert np.array_equal(result.mask("band"), expected)
    assert result.geometry()["band"]["width"] == 5000

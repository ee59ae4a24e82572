"""cytowhim.export: CSV / XLSX of a results file, and .h5ad of a gated sample."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw
from cytowhim.export import OBS_SEPARATOR, UNGATED, population_labels, to_anndata, to_csv, to_xlsx
from cytowhim.spreadsheet import safe_cell
from cytowhim.store import (
    PROVENANCE_COLUMNS,
    QC_COLUMNS,
    assemble,
    part_path,
    read_results,
    write_part,
)
from gating import Strategy

from .conftest import REPO
from .test_store import make_record

EXAMPLE = REPO / "data" / "examples" / "example_tbnk.fcs"

TINY = """
name: tiny TBNK
compensation: FCS
transforms:
  fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}
populations:
  - name: lymphocytes
    gate:
      polygon: {x: FSC-A, y: SSC-A,
                vertices: [[35000, 2000], [85000, 2000], [85000, 22000], [35000, 22000]]}
  - name: T cells
    parent: lymphocytes
    gate: {range: {dimension: CD3, transform: fluor, min: 0.5}}
  - quadrant:
      parent: T cells
      x: CD4
      y: CD8
      transform: fluor
      at: [0.5, 0.5]
      populations: {CD4+: "+-", CD8+: "-+", CD4+CD8+: "++", CD4-CD8-: "--"}
  - name: not T
    parent: lymphocytes
    gate: {not: T cells}
  - name: CD19+ B
    parent: not T
    gate: {range: {dimension: CD19, transform: fluor, min: 0.5}}
  - name: FSC high
    gate: {range: {dimension: FSC-A, min: 30000}}
"""


@pytest.fixture()
def results(tmp_path):
    parts = tmp_path / "parts"
    for spec in ("S1", "S2"):
        records = [make_record(spec, "TBNK"), make_record(spec, "B", seed=1)]
        records[1].qc_flags[0]["message"] = "=SUM(A1:A2) is text, not a formula"
        write_part(part_path(parts, spec), spec, records, f"key {spec}")
    return read_results(assemble(parts, tmp_path / "results.h5"))


def test_to_csv(results, tmp_path):
    written = to_csv(results, tmp_path / "csv")
    assert [p.name for p in written] == ["populations.csv", "qc_flags.csv", "provenance.csv"]
    table = pd.read_csv(tmp_path / "csv" / "populations.csv", keep_default_na=False)
    want = results.populations()
    assert list(table.columns) == list(want.columns) and len(table) == len(want) == 12
    assert table["population"].tolist() == want["population"].tolist()
    assert "CD27- B cells" in set(table["population"])
    assert table["events"].tolist() == want["events"].tolist()
    assert np.allclose(
        pd.to_numeric(table["absolute_per_uL"]), want["absolute_per_uL"], equal_nan=True
    )
    flags = pd.read_csv(tmp_path / "csv" / "qc_flags.csv")
    assert list(flags.columns) == list(QC_COLUMNS) and len(flags) == 4
    # text a spreadsheet would run as a formula gets a leading apostrophe (CSV injection)
    messages = results.qc_flags()["message"].tolist()
    assert flags["message"].tolist() == [safe_cell(m) for m in messages]
    assert "'=SUM(A1:A2) is text, not a formula" in flags["message"].tolist()
    prov = pd.read_csv(tmp_path / "csv" / "provenance.csv")
    assert list(prov.columns) == list(PROVENANCE_COLUMNS)
    assert prov["file"].tolist()[:2] == ["/data/S1_TBNK.fcs", "/data/S1_B.fcs"]
    assert prov[["specimen", "tube"]].values.tolist() == [
        ["S1", "TBNK"],
        ["S1", "B"],
        ["S2", "TBNK"],
        ["S2", "B"],
    ]


def test_to_xlsx(results, tmp_path):
    path = to_xlsx(results.path, tmp_path / "out" / "results.xlsx")  # a path works too
    sheets = pd.read_excel(path, sheet_name=None)
    assert list(sheets) == ["populations", "qc_flags", "provenance"]
    table, want = sheets["populations"], results.populations()
    assert list(table.columns) == list(want.columns) and len(table) == len(want)
    assert table["population"].tolist() == want["population"].tolist()
    assert table["events"].tolist() == want["events"].tolist()
    # rounded as reported (2 decimals), full precision stays in results.h5
    assert np.allclose(table["percent_of_parent"], want["percent_of_parent"], atol=0.005)
    assert (table["percent_of_parent"] == table["percent_of_parent"].round(2)).all()
    assert table["reference_flag"].isna().sum() == want["reference_flag"].isna().sum()
    flags = sheets["qc_flags"]
    assert flags["message"].tolist() == results.qc_flags()["message"].tolist()
    assert "=SUM(A1:A2) is text, not a formula" in flags["message"].tolist()
    assert sheets["provenance"]["file_sha256"].tolist() == (
        results.provenance_table()["file_sha256"].tolist()
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.xlsx"]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("strategy")
    (folder / "tiny.yaml").write_text(textwrap.dedent(TINY))
    sample = cw.read_fcs(EXAMPLE)
    return sample, Strategy.load(folder / "tiny.yaml").apply(sample)


def test_population_labels_pick_the_deepest(gated):
    _, result = gated
    st = result.strategy
    labels = np.asarray(population_labels(result))
    depth = {p.name: st.path(p.name).count("/") for p in st.populations}
    for i, label in enumerate(labels):
        inside = [p.name for p in st.populations if result.masks[p.name][i]]
        if not inside:
            assert label == UNGATED
            continue
        deepest = max(depth[n] for n in inside)
        last = [n for n in inside if depth[n] == deepest][-1]
        assert label == st.path(last)
    # the top-level 'FSC high' (later in strategy order) labels only events in no deeper gate
    fsc_high = labels == "FSC high"
    assert fsc_high.any() and not (fsc_high & result.mask("lymphocytes")).any()
    assert (labels == "lymphocytes/T cells/CD4+").sum() == result.count("CD4+")


def test_to_anndata(gated, tmp_path):
    anndata = pytest.importorskip("anndata")
    sample, result = gated
    path = to_anndata(sample, result, tmp_path / "tbnk.h5ad")
    adata = anndata.read_h5ad(path)
    assert adata.shape == (3000, 11)
    assert adata.X.dtype == np.float32
    assert np.array_equal(adata.X, sample.events.astype(np.float32))
    assert list(adata.var_names) == sample.channels
    assert adata.var["marker"].tolist() == sample.markers
    paths = [result.strategy.path(p.name) for p in result.strategy.populations]
    columns = [p.replace("/", OBS_SEPARATOR) for p in paths]
    assert list(adata.obs.columns) == [*columns, "population"]
    for col, p in zip(columns, result.strategy.populations):
        assert adata.obs[col].dtype == bool
        assert np.array_equal(adata.obs[col].to_numpy(), result.masks[p.name])
    pop = adata.obs["population"]
    assert isinstance(pop.dtype, pd.CategoricalDtype)
    assert list(pop.cat.categories) == [UNGATED, *paths]
    assert np.array_equal(pop.to_numpy().astype(str), np.asarray(population_labels(result)))
    assert (pop == UNGATED).sum() == (~result.mask("lymphocytes") & ~result.mask("FSC high")).sum()
    assert json.loads(adata.uns["geometry"]) == json.loads(json.dumps(result.geometry()))
    assert list(adata.uns["populations"]["path"]) == paths
    assert adata.uns["strategy"] == "tiny TBNK"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tbnk.h5ad"]

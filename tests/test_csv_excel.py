"""Every CSV written for people opens in Excel with its µ, ≈ and − intact: UTF-8 with a
byte-order mark. Every reader in the project (and pandas) reads them back with clean column
names (no '\\ufeff' glued to the first one)."""

from __future__ import annotations

import csv
import dataclasses

import pandas as pd
import pytest

from cytowhim.cli import main

from .conftest import REPO

BOM = b"\xef\xbb\xbf"

STRATEGY = """
populations:
  - name: lymphocytes
    gate:
      polygon: {x: FSC-A, y: SSC-A,
                vertices: [[35000, 2000], [85000, 2000], [85000, 22000], [35000, 22000]]}
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The CSV files of run (with a failed input), compare, export and gate --out."""
    from cytowhim.simulate import simulate

    folder = tmp_path_factory.mktemp("excel")
    simulate(folder / "in", "whim-trial", seed=7, events=(8_000, 10_000))
    manifest = folder / "in" / "manifest.csv"
    m = pd.read_csv(manifest)
    broken = m.iloc[[0]].assign(file="missing_T.fcs", specimen="P9-baseline", patient="P9")
    pd.concat([m, broken]).to_csv(manifest, index=False)
    out = folder / "run"
    assert main(["run", str(manifest), "-o", str(out), "-q"]) == 1  # missing_T.fcs failed
    assert main(["compare", str(out), "--baseline", "baseline", "--peak", "peak"]) == 0
    assert main(["export", str(out), "--csv", str(folder / "export")]) == 0
    strategy = folder / "s.yaml"
    strategy.write_text(STRATEGY)
    example = REPO / "data" / "examples" / "example_tbnk.fcs"
    assert main(["gate", str(example), "-s", str(strategy), "-o", str(folder / "gate")]) == 0
    return {
        "populations": out / "populations.csv",
        "qc_flags": out / "qc_flags.csv",
        "errors": out / "errors.csv",
        "table1": out / "table1.csv",
        "export/populations": folder / "export" / "populations.csv",
        "export/qc_flags": folder / "export" / "qc_flags.csv",
        "export/provenance": folder / "export" / "provenance.csv",
        "gate": folder / "gate" / "example_tbnk.populations.csv",
    }


def test_every_csv_starts_with_a_bom_and_reads_back_with_clean_names(written):
    for name, path in written.items():
        raw = path.read_bytes()
        assert raw[:3] == BOM, name
        assert raw[3:6] != BOM, name  # one BOM, not two
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f))
        assert header and not any("\ufeff" in h for h in header), name
        for kwargs in ({}, {"encoding": "utf-8-sig"}, {"dtype": str, "keep_default_na": False}):
            columns = list(pd.read_csv(path, **kwargs).columns)
            assert columns == header, (name, kwargs)


def test_column_names_are_as_before(written):
    from cytowhim.compare import CSV_LEADING
    from cytowhim.qc import QCFlag
    from cytowhim.run import COLUMNS

    def header(key):
        return list(pd.read_csv(written[key], nrows=0).columns)

    assert header("populations") == COLUMNS
    assert header("qc_flags") == [f.name for f in dataclasses.fields(QCFlag)]
    assert header("errors") == ["error"]
    assert header("table1")[: len(CSV_LEADING)] == list(CSV_LEADING)
    assert header("export/populations")[0] == "specimen"
    errors = pd.read_csv(written["errors"])
    assert errors.error.str.contains("missing_T.fcs").any()


def test_non_ascii_text_survives(written):
    flags = written["qc_flags"].read_text(encoding="utf-8-sig")
    messages = pd.read_csv(written["qc_flags"]).message
    assert any(ch in flags for ch in "≈µ−±%")
    assert "\ufffd" not in flags and messages.str.len().gt(0).all()


def test_project_readers_read_them(written):
    from cytowhim.compare import compare_folder
    from cytowhim.report import _read_errors, _read_flags, _read_populations

    folder = written["populations"].parent
    table = _read_populations(written["populations"])
    assert list(table.columns[:2]) == ["specimen", "patient"]
    assert list(_read_flags(written["qc_flags"]).columns)[0] == "specimen"
    assert any("missing_T.fcs" in e for e in _read_errors(written["errors"]))
    comparison = compare_folder(folder, "baseline", "peak")
    assert len(comparison.table) > 0

"""The command line as a technician uses it: `cytowhim inspect`, exit codes, start-up time."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pandas as pd
import pytest

from cytowhim.cli import main
from cytowhim.resources import data_path

from .conftest import CORPUS, REPO

DATA1 = CORPUS / "fcs/flowio/data1.fcs"
CORRUPT = CORPUS / "fcs/fcsparser/corrupted/corrupted.fcs"


def test_inspect_prints_header_facts(capsys):
    assert main(["inspect", str(DATA1)]) == 0
    out = capsys.readouterr().out
    assert "FCS2.0" in out and "FACSCalibur" in out and "13,367" in out
    assert "FSC-H" in out and "FSC-Height" in out and "spillover   none" in out


def test_inspect_json(capsys):
    coulter = CORPUS / "fcs/flowio/coulter.lmd"
    assert main(["inspect", "--json", str(DATA1), str(coulter)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [len(i["data_sets"]) for i in info] == [1, 2]
    ds = info[0]["data_sets"][0]
    assert ds["events"] == 13367 and ds["version"] == "FCS2.0" and ds["byte_order"] == "big"
    assert [p["channel"] for p in ds["parameters"]][:2] == ["FSC-H", "SSC-H"]
    assert info[1]["data_sets"][1]["events"] == 18110
    assert any("289761" in w for w in info[1]["warnings"])  # off-by-one DATA end, reported
    # numbers are numbers, not strings
    assert [p["range"] for p in ds["parameters"]][:2] == [1024, 1024]
    assert all(
        isinstance(p["bits"], int) for i in info for d in i["data_sets"] for p in d["parameters"]
    )
    assert isinstance(ds["data_offsets"][0], int) and info[0]["readable"] is True


def test_inspect_spillover_listed(capsys):
    assert main(["inspect", str(CORPUS / "fcs/flowio/B01 KC-A-W---91-US.fcs")]) == 0
    out = capsys.readouterr().out
    assert "$SPILLOVER (8 channels: FL1-A" in out and "BD Accuri C6 Plus" in out


def test_broken_file_is_named_and_others_still_inspected(capsys, tmp_path):
    truncated = tmp_path / "cut.fcs"
    truncated.write_bytes(DATA1.read_bytes()[:5000])
    code = main(["inspect", str(CORRUPT), str(DATA1), str(truncated), str(tmp_path / "nope.fcs")])
    captured = capsys.readouterr()
    assert code == 1
    assert "13,367" in captured.out  # the good file was still inspected
    err = captured.err.strip().splitlines()
    assert len(err) == 3
    assert str(CORRUPT) in err[0] and "not an FCS file" in err[0]
    assert str(truncated) in err[1] and "truncated" in err[1]
    assert "nope.fcs" in err[2]


def _truncated(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(DATA1.read_bytes()[:5000])  # HEADER and TEXT whole, DATA cut short
    return path


def test_inspect_truncated_file_shows_its_keywords_with_a_warning(capsys, tmp_path):
    cut = _truncated(tmp_path / "cut.fcs")
    assert main(["inspect", str(cut)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0] == str(cut)
    assert out[1].startswith("  warning: the events cannot be read") and "truncated" in out[1]
    assert "FACSCalibur" in captured.out and "13,367" in captured.out  # from TEXT ($CYT, $TOT)
    assert "CD4 FITC" in captured.out and "bytes unknown" in captured.out
    assert str(cut) in captured.err and "truncated" in captured.err


def test_inspect_folder_is_a_table_with_a_summary(capsys):
    folder = CORPUS / "fcs/flowio"
    assert main(["inspect", str(folder)]) == 0  # warnings alone leave exit status 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == [
        "file",
        "version",
        "instrument",
        "events",
        "parameters",
        "spillover",
        "problems",
    ]
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".fcs", ".lmd"))
    rows = lines[1 : 1 + len(names)]
    assert [r.split("  ")[0].strip() for r in rows] == names  # one line per file, truth/ skipped
    assert lines[len(names) + 1] == ""
    assert lines[-1].startswith(f"{len(names)} files, {len(names)} readable, ")
    data1 = next(r for r in rows if r.startswith("data1.fcs"))
    assert data1.split()[:6] == ["data1.fcs", "FCS2.0", "FACSCalibur", "13,367", "8", "no"]
    assert "warning: TEXT has empty values" in data1
    b01 = next(r for r in rows if r.startswith("B01 KC-A-W---91-US.fcs"))
    assert "BD Accuri C6 Plus" in b01 and b01.split()[-1] == "yes"
    assert "36,220 (2 sets)" in next(r for r in rows if r.startswith("coulter.lmd"))


def test_inspect_folder_walks_subfolders_and_finds_files_by_content(capsys, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "tube1.FCS").write_bytes(DATA1.read_bytes())
    (tmp_path / "a" / "tube2").write_bytes(DATA1.read_bytes())  # no extension: the 'FCS' magic
    (tmp_path / "a" / "._tube1.FCS").write_bytes(b"\x00\x05\x16\x07")  # macOS copy: hidden
    (tmp_path / "a" / "notes.txt").write_text("FCS files of the day\n")
    (tmp_path / "a" / "manifest.csv").write_text("file\ntube1.FCS\n")
    _truncated(tmp_path / "b" / "c" / "cut.fcs")
    code = main(["inspect", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1 and captured.err == ""  # the table says it all
    lines = captured.out.strip().splitlines()
    rows = lines[1:-2]
    assert [r.split()[0] for r in rows] == ["a/tube1.FCS", "a/tube2", "b/c/cut.fcs"]
    cut = rows[2]
    assert cut.split()[1:4] == ["FCS2.0", "FACSCalibur", "13,367"]  # its keywords
    assert "unreadable: " in cut and "truncated" in cut
    assert lines[-1] == "3 files, 2 readable, 3 with problems (1 unreadable, 2 with warnings)"

    assert main(["inspect", "--json", str(tmp_path)]) == 1
    info = json.loads(capsys.readouterr().out)
    assert [i["readable"] for i in info] == [True, True, False]
    assert info[2]["problems"] and "truncated" in info[2]["problems"][0]
    ds = info[2]["data_sets"][0]
    assert ds["events"] == 13367 and ds["parameters"][2]["marker"] == "CD4 FITC"
    assert ds["parameters"][0]["range"] == 1024 and ds["data_offsets"] is None


def test_inspect_json_lists_files_that_cannot_be_read(capsys, tmp_path):
    code = main(["inspect", "--json", str(CORRUPT), str(DATA1)])
    captured = capsys.readouterr()
    assert code == 1 and str(CORRUPT) in captured.err
    info = json.loads(captured.out)
    assert [i["readable"] for i in info] == [False, True]
    assert info[0]["data_sets"] == [] and "not an FCS file" in info[0]["problems"][0]


def test_inspect_empty_folder(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    assert main(["inspect", str(tmp_path)]) == 1
    assert "no FCS files" in capsys.readouterr().err


def test_inspect_bundled_example(capsys):
    assert main(["inspect", "--example"]) == 0
    out = capsys.readouterr().out
    assert "example_tbnk.fcs" in out and "3,000" in out and "$SPILLOVER" in out


def test_usage_errors_exit_2(capsys):
    assert main(["inspect"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_python_cli_py_runs_the_same_code():
    out = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "inspect", "--json", str(DATA1)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert json.loads(out.stdout)[0]["data_sets"][0]["events"] == 13367


def test_import_is_light_and_help_is_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import cytowhim, cytowhim.cli; "
        "cytowhim.read_fcs; heavy = [m for m in ('flowkit', 'bokeh', 'matplotlib', 'sklearn', "
        "'pandas') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, str(REPO / "cli.py"), "--help"],
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        times.append(time.perf_counter() - t)
    assert min(times) < 0.5, times


STRATEGY = """
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
"""


def test_gate_writes_a_table_per_file_and_names_failures(tmp_path, capsys):
    import pandas as pd

    import cytowhim as cw
    from gating import Strategy

    strategy = tmp_path / "s.yaml"
    strategy.write_text(STRATEGY)
    example = REPO / "data" / "examples" / "example_tbnk.fcs"
    out = tmp_path / "out"
    code = main(
        [
            "gate",
            str(example),
            str(DATA1),
            str(CORRUPT),
            "--strategy",
            str(strategy),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    table = pd.read_csv(out / "example_tbnk.populations.csv")
    expected = Strategy.load(strategy).apply(cw.read_fcs(example)).counts()
    assert table.set_index("population")["count"].to_dict() == expected.to_dict()
    assert list(table["population"]) == ["lymphocytes", "lymphocytes/T cells"]
    err = captured.err
    assert "data1.fcs has no channel or marker 'FSC-A'" in err  # missing marker, named
    assert "corrupted.fcs: not an FCS file" in err
    assert not (out / "data1.populations.csv").exists()


def test_gate_with_gatingml_prints_table(capsys):
    gml = CORPUS / "gatingml"
    code = main(["gate", str(gml / "data1.fcs"), "--strategy", str(gml / "gml/gml_rect1_gate.xml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Rectangle1" in out and " 252 " in out  # the compliance suite's count


def test_gate_bad_strategy_is_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("populations: []")
    assert main(["gate", str(DATA1), "--strategy", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_gate_prints_every_population_and_marks_a_failed_gate(tmp_path, capsys):
    """Issue 12: a gate that finds no valley fails its population; the table still lists the
    others, the failed row says NOT GATED, stderr says why, and the exit code is 1."""
    strategy = tmp_path / "s.yaml"
    strategy.write_text(
        "transforms: {fluor: {logicle: {T: 262144, W: 0.5, M: 4.5, A: 0}}}\n"
        "populations:\n"
        "  - name: CD3+\n"
        "    gate: {threshold: {dimension: CD3, transform: fluor, search: [0.3, 0.75]}}\n"
        "  - name: CD4 (no valley)\n"
        "    parent: CD3+\n"
        "    gate: {threshold: {dimension: CD4, transform: fluor, search: [0.97, 0.99]}}\n"
        "  - name: CD8+\n"
        "    parent: CD3+\n"
        "    gate: {threshold: {dimension: CD8, transform: fluor, search: [0.3, 0.75]}}\n",
        encoding="utf-8",
    )
    example = str(data_path("examples", "example_tbnk.fcs"))
    assert main(["gate", example, "--strategy", str(strategy)]) == 1
    out, err = capsys.readouterr()
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip().startswith("CD3+")}
    assert "NOT GATED" in lines["CD3+/CD4"] and lines["CD3+/CD8+"].split()[4].isdigit()
    assert "population 'CD4 (no valley)' was not gated: no density valley for CD4" in err
    csv_dir = tmp_path / "out"
    assert main(["gate", example, "--strategy", str(strategy), "--out", str(csv_dir)]) == 1
    table = pd.read_csv(csv_dir / "example_tbnk.populations.csv", keep_default_na=False)
    row = table.set_index("name").loc["CD4 (no valley)"]
    assert row["count"] == "" and row["failed"].startswith("no density valley for CD4")

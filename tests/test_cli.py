"""The command line as a technician uses it: `cytowhim inspect`, exit codes, start-up time."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from cytowhim.cli import main

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

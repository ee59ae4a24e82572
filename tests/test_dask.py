"""`cytowhim run --executor dask` when the cluster is not there: one line naming the scheduler and
what to do, exit status 2, quickly and without a traceback. (The Dask run itself is checked
against the local one in tests/test_run.py.)"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cytowhim.cli import main
from cytowhim.errors import ExecutorError

from .conftest import REPO

UNREACHABLE = "tcp://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from cytowhim.simulate import simulate

    out = tmp_path_factory.mktemp("dask")
    simulate(out, "whim-trial", seed=5, events=(2_000, 3_000))
    return out / "manifest.csv"


def _cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    return proc, time.monotonic() - start


def test_unreachable_scheduler_is_one_line_quickly(manifest, tmp_path):
    out = tmp_path / "out"
    proc, seconds = _cli(
        "run", str(manifest), "-o", str(out), "-q", "--executor", "dask", "--scheduler", UNREACHABLE
    )
    assert proc.returncode == 2, proc.stderr
    assert seconds < 25  # distributed alone waits 30 s
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert UNREACHABLE in lines[0] and "check the address" in lines[0]
    assert "scheduler is running" in lines[0]
    assert not (out / "populations.csv").exists()


@pytest.mark.parametrize("address", ["notanaddress", "xyz://host:1", "tcp://host:port"])
def test_malformed_address_is_one_line_without_a_hang(manifest, tmp_path, address):
    proc, seconds = _cli(
        "run",
        str(manifest),
        "-o",
        str(tmp_path),
        "-q",
        "--executor",
        "dask",
        "--scheduler",
        address,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no traceback from a half-built Client at exit
    assert repr(address) in lines[0] and "tcp://HOST:PORT" in lines[0]
    assert seconds < 15


def test_dask_not_installed_says_what_to_install(manifest, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code = main(
        ["run", str(manifest), "-o", str(tmp_path), "-q", "--executor", "dask"]
        + ["--scheduler", "tcp://10.0.0.5:8786"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "tcp://10.0.0.5:8786" in err[0] and "pip install 'cytowhim[dask]'" in err[0]


def test_scheduler_without_dask_executor_is_a_usage_error(manifest, tmp_path, capsys):
    code = main(["run", str(manifest), "-o", str(tmp_path), "--scheduler", UNREACHABLE])
    assert code == 2
    err = capsys.readouterr().err
    assert "--executor dask" in err and not (tmp_path / "populations.csv").exists()


def test_cluster_failing_while_gating_is_named(tmp_path):
    """An exception from the cluster rather than from gate_tube (which returns its own failures)
    becomes one ExecutorError naming the scheduler and the file."""
    distributed = pytest.importorskip("distributed")
    from cytowhim.run import TubeTask, _gate_on_dask

    bad = TubeTask(str(tmp_path / "a.fcs"), "T", panels=123)  # type: ignore[arg-type]
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        with pytest.raises(ExecutorError) as exc:
            _gate_on_dask([bad], cluster.scheduler_address, None)
    message = str(exc.value)
    assert cluster.scheduler_address in message and "a.fcs" in message
    assert "\n" not in message and "TypeError" in message


def test_empty_scheduler_does_not_start_a_local_cluster():
    from cytowhim.run import _gate_on_dask

    with pytest.raises(ExecutorError, match="scheduler address"):
        _gate_on_dask([], "", None)

"""Fault injection for `cytowhim run` (issue 13 items 1, 5 and 7): kill -9 at random points (the
parent alone, and the whole process group), a full disk while a part or an output is written, a
file vanishing between the manifest and its reading, two runs into one folder, leftovers of a
killed run. Each checks that the rerun ends with the outputs of an uninterrupted run: the CSV
files byte for byte, results.h5 by value (its bytes differ: it records when each part and the file
were written)."""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest

from cytowhim import store
from cytowhim.batch_lock import TEMPORARY
from cytowhim.cli import main

from .conftest import REPO

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
N_SPECIMENS = 8


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """8 healthy specimens x 3 tubes, small, and a T strategy whose CD8 naive gate fails on
    every file (BROKEN_T): each part holds error lines, so errors.csv is checked too."""
    from cytowhim.resources import data_path
    from cytowhim.simulate import simulate

    out = tmp_path_factory.mktemp("faults")
    simulate(out, "healthy", seed=11, n_healthy=N_SPECIMENS, events=(5000, 6000))
    text = data_path("strategies", "T.yaml").read_text(encoding="utf-8")
    old = "name: CD8 naive\n    parent: CD8+ T cells\n    gate: {threshold: {dimension: CD45RA"
    assert old in text
    (out / BROKEN_T).write_text(
        text.replace(old + ", transform: fluor, search: [0.3, 0.75]}}", old + SEARCH), "utf-8"
    )
    assert SEARCH in (out / BROKEN_T).read_text(encoding="utf-8")
    return out


BROKEN_T = "T-cd8-naive-fails.yaml"
SEARCH = ", transform: fluor, search: [0.97, 0.99]}}"


def _args(batch: Path, out: Path) -> list[str]:
    """cytowhim run's arguments for the batch (after 'cytowhim')."""
    manifest = batch / "manifest.csv"
    return ["run", str(manifest), "--out", str(out), "-q", "--strategy", f"T={batch / BROKEN_T}"]


@pytest.fixture(scope="module")
def reference(batch, tmp_path_factory) -> Path:
    """The outputs of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(_args(batch, out)) == 1
    errors = (out / "errors.csv").read_text(encoding="utf-8-sig")
    assert errors.count("population 'CD8 naive' was not gated") == N_SPECIMENS
    return out


def _run_cmd(batch: Path, out: Path) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), *_args(batch, out)]


def _parts(out: Path) -> list[Path]:
    return sorted((out / "parts").glob("*.h5")) if (out / "parts").is_dir() else []


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the workers and multiprocessing's resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited


def _h5_values(path: Path) -> dict:
    """Everything results.h5 holds except when it was written (written_utc, created_utc)."""
    values: dict = {}

    def visit(name, obj):
        attrs = {
            k: (v.tolist() if hasattr(v, "tolist") else v)
            for k, v in obj.attrs.items()
            if k not in ("written_utc", "created_utc")
        }
        data = None
        if isinstance(obj, h5py.Dataset):
            data = obj.asstr()[()] if obj.dtype.kind == "O" else obj[()]
            data = data.tolist() if hasattr(data, "tolist") else data
        values[name] = (attrs, data)

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    return values


def assert_same_outputs(out: Path, reference: Path) -> None:
    for name in ("populations.csv", "qc_flags.csv", "errors.csv"):
        assert (out / name).is_file() == (reference / name).is_file(), name
        if (reference / name).is_file():
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert (out / "run.json").is_file()
    got, want = _h5_values(out / "results.h5"), _h5_values(reference / "results.h5")
    assert sorted(got) == sorted(want)
    for key in want:
        assert repr(got[key]) == repr(want[key]), key  # repr: NaN == NaN
    assert not [p for p in out.rglob("*.tmp") if TEMPORARY.fullmatch(p.name)]


def _rerun(batch: Path, out: Path) -> None:
    assert main(_args(batch, out)) == 1


# --- parts as each specimen finishes ------------------------------------------------------------


def test_each_specimen_is_written_as_soon_as_its_tubes_are_gated(batch, tmp_path):
    """Issue 13: no part was written until every file was gated; a kill at 60 % kept nothing."""
    from cytowhim.run import run_manifest

    out = tmp_path / "out"
    seen = []
    run_manifest(batch / "manifest.csv", out=out, progress=lambda _: seen.append(len(_parts(out))))
    # the progress line of a tube comes before its specimen is written: after the 3rd tube of
    # specimen k, k-1 parts exist (k parts by the next tube)
    assert seen == [k // 3 for k in range(3 * N_SPECIMENS)]


# --- kill -9 ------------------------------------------------------------------------------------


@linux_only
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_of_the_parent_alone_kills_its_workers_and_the_rerun_finishes(
    batch, reference, tmp_path, seed
):
    """kill -9 of the parent only (2 workers), at a random point: the workers die with it (they
    kept running, reparented to init), the finished specimens are kept, the rerun ends with the
    outputs of an uninterrupted run."""
    rng = random.Random(seed)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*_run_cmd(batch, out), "-j", "2"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wanted = rng.randint(1, N_SPECIMENS - 3)
    deadline = time.monotonic() + 120
    while len(_parts(out)) < wanted and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.1))
    workers = _children(proc.pid)
    assert proc.poll() is None, "the run ended before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(workers) >= 2
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    kept = len(_parts(out))
    assert wanted <= kept < N_SPECIMENS
    assert not (out / "run.json").exists()  # not a complete run
    _rerun(batch, out)
    assert_same_outputs(out, reference)


@linux_only
def test_kill_9_of_the_whole_group_then_rerun_into_a_complete_folder(batch, reference, tmp_path):
    """A rerun into a folder holding a complete run, its parts removed, killed with its process
    group: run.json (the mark of a complete run) is gone at once, the rerun restores the outputs."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    shutil.rmtree(out / "parts")
    proc = subprocess.Popen(
        [*_run_cmd(batch, out), "-j", "2"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(_parts(out)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None
    group = [proc.pid, *_children(proc.pid)]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists()
    assert 3 <= len(_parts(out)) < N_SPECIMENS
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in group if _alive(p)]
    _rerun(batch, out)
    assert_same_outputs(out, reference)


@linux_only
@pytest.mark.parametrize("group", [False, True], ids=["parent", "terminal"])
def test_ctrl_c_stops_the_workers(batch, tmp_path, group):
    """SIGINT to the parent alone, or to the whole group as a terminal's Ctrl-C: exit 130, one
    line, no traceback (from a worker either), no worker left."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*_run_cmd(batch, out), "-j", "2"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not _parts(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    workers = _children(proc.pid)
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "cytowhim: interrupted", err
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)]


# --- disk full ----------------------------------------------------------------------------------


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_disk_full_while_writing_a_part(batch, reference, tmp_path, monkeypatch, capsys):
    """The 4th part hits a full disk mid-write: one line, exit 2, the 3 finished parts kept,
    no temporary file left; the rerun (space freed) ends as an uninterrupted run."""
    out = tmp_path / "out"
    real = store._write_tube
    written = []

    def full(parent, rec):
        if len(written) == 3 * 3 + 1:  # the second tube of the 4th specimen
            raise _enospc(parent.file.filename)
        written.append(rec.tube)
        real(parent, rec)

    monkeypatch.setattr(store, "_write_tube", full)
    code = main(_args(batch, out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "No space left on device" in err[0] and "rerun" in err[0], err
    fourth = store.part_path(out / "parts", pd.read_csv(batch / "manifest.csv").specimen[9])
    assert err[0].startswith(f"cytowhim: {fourth}: cannot be written (No space left"), err
    assert len(_parts(out)) == 3
    assert not list(out.rglob("*.tmp"))
    assert not (out / "run.json").exists() and not (out / "populations.csv").exists()
    monkeypatch.setattr(store, "_write_tube", real)
    _rerun(batch, out)
    assert_same_outputs(out, reference)


def test_disk_full_while_writing_the_tables_keeps_the_old_ones(
    batch, reference, tmp_path, monkeypatch, capsys
):
    """A full disk while qc_flags.csv is written: the previous populations.csv and qc_flags.csv
    stay whole (written to a temporary name, then renamed), run.json is not written."""
    import pandas.core.generic as generic

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = (out / "qc_flags.csv").read_bytes()
    real = generic.NDFrame.to_csv

    def full(self, path=None, *args, **kwargs):
        if path is not None and ".qc_flags.csv." in str(path):
            raise _enospc(path)
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(generic.NDFrame, "to_csv", full)
    code = main(_args(batch, out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0]
    assert err[0].startswith(f"cytowhim: {out / 'qc_flags.csv'}: cannot be written"), err
    assert (out / "qc_flags.csv").read_bytes() == before
    assert not (out / "run.json").exists()
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(generic.NDFrame, "to_csv", real)
    _rerun(batch, out)
    assert_same_outputs(out, reference)


# --- a file vanishing ---------------------------------------------------------------------------


def test_a_file_vanishing_between_the_manifest_and_its_reading(batch, reference, tmp_path, capsys):
    """A file deleted while the run is under way is one error line (its tube left out, the others
    processed; its specimen gets no part); put back, the rerun redoes only that specimen and
    ends as a whole run."""
    from cytowhim.panels import Panels
    from cytowhim.run import run_manifest, write_run

    folder = tmp_path / "batch"
    shutil.copytree(batch, folder)
    manifest = pd.read_csv(folder / "manifest.csv")
    victim = folder / manifest.file.iloc[-2]  # a tube of the last specimen
    saved = victim.read_bytes()
    out = tmp_path / "out"

    def vanish(name):
        if victim.exists():
            victim.unlink()

    panels = Panels.load().with_strategies({"T": str(batch / BROKEN_T)})
    result = run_manifest(folder / "manifest.csv", panels=panels, out=out, progress=vanish)
    write_run(result, out, manifest=folder / "manifest.csv", panels=panels)
    lost = [e for e in result.errors if victim.name in e]
    assert len(lost) == 1 and "No such file or directory" in lost[0]
    spec, tube = manifest.specimen.iloc[-2], manifest.tube.iloc[-2]
    done = set(zip(result.table.specimen, result.table.tube))
    assert (spec, tube) not in done and len(done) == 3 * N_SPECIMENS - 1
    assert len(_parts(out)) == N_SPECIMENS - 1
    victim.write_bytes(saved)
    gated = []
    again = run_manifest(folder / "manifest.csv", panels=panels, out=out, progress=gated.append)
    write_run(again, out, manifest=folder / "manifest.csv", panels=panels)
    assert sorted(gated) == sorted(manifest.file.iloc[-3:])
    # the manifest's folder differs from the reference's: the paths in the outputs too
    for name in ("populations.csv", "qc_flags.csv"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    errors = (out / "errors.csv").read_text(encoding="utf-8-sig")
    assert errors == (reference / "errors.csv").read_text(encoding="utf-8-sig").replace(
        str(batch), str(folder)
    )


# --- two runs, one folder -----------------------------------------------------------------------


def test_a_second_run_into_the_same_folder_refuses_or_waits(batch, reference, tmp_path, capsys):
    """Two runs into one --out overwrote each other: the second now refuses (exit 2, naming the
    process holding the folder), or with --wait waits for the first and then finishes."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _run_cmd(batch, out),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock = out / ".cytowhim.lock"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.is_file() and f"pid {proc.pid} " in lock.read_text():
            break
        time.sleep(0.01)
    assert proc.poll() is None
    code = main(_args(batch, out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "another cytowhim run is writing into this folder" in err[0]
    assert f"pid {proc.pid} " in err[0] and "--wait" in err[0]
    code = main([*_args(batch, out), "--wait"])
    assert code in (0, 1)
    assert proc.wait(timeout=120) in (0, 1)  # the first finished before the second went on
    assert "waiting for the run" in capsys.readouterr().err
    assert_same_outputs(out, reference)


def test_the_lock_is_per_run_not_per_call(tmp_path):
    from cytowhim.batch_lock import output_lock
    from cytowhim.errors import OutputInUseError

    with output_lock(tmp_path):
        with output_lock(tmp_path):  # run_manifest and write_run inside cytowhim run
            pass
        failures = []

        def other():
            try:
                with output_lock(tmp_path):
                    pass
            except OutputInUseError as exc:
                failures.append(str(exc))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(failures) == 1 and str(tmp_path) in failures[0]
    with output_lock(tmp_path):  # released
        pass


# --- leftovers ----------------------------------------------------------------------------------


def test_temporary_files_of_a_killed_run_are_cleaned(batch, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    stale = [
        out / f".results.h5.{'a' * 32}.tmp",
        out / f".populations.csv.{'0123456789abcdef' * 2}.tmp",
        out / "parts" / f".{store.part_path(out, 'H1').name}.{'f' * 32}.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half written")
    mine = out / "notes.tmp"
    mine.write_text("not cytowhim's")
    _rerun(batch, out)
    assert not [p for p in stale if p.exists()] and mine.exists()
    assert_same_outputs(out, reference)

"""Benchmark: what ``kill -9`` of a ``cytowhim run`` costs, and whether the rerun makes it whole.

Goal (issue 13): a kill loses at most the specimens in flight; the worker processes die with
their parent; the rerun gates only what is missing and ends with the outputs of an uninterrupted
run (``populations.csv``, ``qc_flags.csv``, ``errors.csv`` byte for byte; ``results.h5`` by
value, since it records when each part was written).

What it does

1. Simulates a batch (``cytowhim simulate --preset healthy``: ``--specimens`` specimens x 3 tubes
   of ``--events`` events each) and times an uninterrupted ``python cli.py run ... --jobs N`` in a
   fresh process, the faster of two runs (the reference outputs).
2. For each fraction of that time (20, 40, 60, 80 %): starts the same run into a new folder,
   sleeps that long, notes the run's child processes (workers and multiprocessing's resource
   tracker), ``kill -9``'s the parent alone, and counts the specimens kept (complete parts in
   ``DIR/parts``) and the child processes still alive 5 s later.
3. Reruns the same command into that folder, times it, and compares its outputs with the
   reference.
4. Prints a table; exit status 1 if a worker survived or an output differs.

Run it from the repository root::

    python benchmarks/kill_resume.py                   # 10 specimens x 3 tubes x 60-120k events
    python benchmarks/kill_resume.py --quick           # 6 specimens x 3 tubes x 10-15k events
    python benchmarks/kill_resume.py --specimens 20 --jobs 1

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRACTIONS = (0.2, 0.4, 0.6, 0.8)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _parts(out: Path) -> int:
    return len(list((out / "parts").glob("*.h5"))) if (out / "parts").is_dir() else 0


def _h5_values(path: Path) -> dict:
    import h5py

    values: dict = {}

    def visit(name, obj):
        attrs = {
            k: repr(v) for k, v in obj.attrs.items() if k not in ("written_utc", "created_utc")
        }
        data = None
        if isinstance(obj, h5py.Dataset):
            data = repr(obj.asstr()[()] if obj.dtype.kind == "O" else obj[()])
        values[name] = (attrs, data)

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    return values


def _same(out: Path, reference: Path) -> list[str]:
    """Names of the outputs that differ from the reference's."""
    differ = []
    for name in ("populations.csv", "qc_flags.csv", "errors.csv"):
        a, b = out / name, reference / name
        if a.is_file() != b.is_file() or (b.is_file() and a.read_bytes() != b.read_bytes()):
            differ.append(name)
    if _h5_values(out / "results.h5") != _h5_values(reference / "results.h5"):
        differ.append("results.h5")
    if not (out / "run.json").is_file():
        differ.append("run.json missing")
    return differ


def _command(manifest: Path, out: Path, jobs: int) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "run", str(manifest), "-o", str(out), "-q"] + [
        "--jobs",
        str(jobs),
    ]


def _run(manifest: Path, out: Path, jobs: int) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(_command(manifest, out, jobs), cwd=ROOT, capture_output=True)
    return time.perf_counter() - start, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specimens", type=int, default=10)
    parser.add_argument("--events", default="60000,120000", help="MIN,MAX events per tube")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="6 specimens, 10-15k events")
    parser.add_argument("--out", help="work folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.specimens, args.events = 6, "10000,15000"
    low, high = (int(v) for v in args.events.split(","))
    work = Path(args.out or tempfile.mkdtemp(prefix="kill_resume-"))
    try:
        return _measure(work, args, (low, high))
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


def _measure(work: Path, args, events: tuple[int, int]) -> int:
    sys.path.insert(0, str(ROOT))
    from cytowhim.simulate import simulate

    batch = work / "batch"
    if not (batch / "manifest.csv").is_file():
        simulate(batch, "healthy", seed=args.seed, n_healthy=args.specimens, events=events)
    manifest = batch / "manifest.csv"
    reference = work / "reference"
    times = []
    for _ in range(2):  # the faster of two: the fractions are of a run undisturbed by others
        shutil.rmtree(reference, ignore_errors=True)
        seconds, code = _run(manifest, reference, args.jobs)
        if code not in (0, 1):
            print(f"the reference run failed (exit {code})", file=sys.stderr)
            return 1
        times.append(seconds)
    full = min(times)
    n = args.specimens
    print(
        f"{n} specimens x 3 tubes, {events[0]:,}-{events[1]:,} events per tube, --jobs "
        f"{args.jobs}; an uninterrupted run takes {full:.1f} s (whole process)\n"
    )
    header = (
        "| killed at | specimens kept | workers alive 5 s after | rerun | rerun / full run |"
        " rerun outputs |"
    )
    print(header)
    print("|---|---|---|---|---|---|")
    bad = False
    for fraction in FRACTIONS:
        out = work / f"killed-{int(fraction * 100)}"
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(
            _command(manifest, out, args.jobs),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(fraction * full)
        children = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(5)
        alive = [c for c in children if _alive(c)]
        kept = _parts(out)
        again, code = _run(manifest, out, args.jobs)
        differ = _same(out, reference) if code in (0, 1) else [f"exit {code}"]
        bad |= bool(alive or differ)
        print(
            f"| {fraction:.0%} ({fraction * full:.1f} s) | {kept} of {n} | {len(alive)} of "
            f"{len(children)} | {again:.1f} s | {again / full:.2f} | "
            + ("identical" if not differ else "DIFFER: " + ", ".join(differ))
            + " |"
        )
        for pid in alive:  # do not leave them behind
            os.kill(pid, signal.SIGKILL)
    print(
        "\nspecimens kept: complete parts in DIR/parts at the kill; children: the worker "
        "processes and multiprocessing's resource tracker"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

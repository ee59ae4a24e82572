"""Benchmark: a whole batch through ``cytowhim run`` versus a FlowKit ``Session``.

Goal: on 48 files x 200,000 events gated with the 25-population TBNK-and-memory strategy, the
whole ``cytowhim run`` process is at least 10x faster (wall time) than a FlowKit Session over the
same files, with a lower peak memory of the whole process tree, and both find the same events.

What it does

1. Writes ``--files`` synthetic FCS files of ``--events`` events with the file writer of
   ``benchmarks/gating.py`` (imported by path, as are its strategy builders), a ``manifest.csv``
   (one 'TBNK' tube per specimen, a plausible CBC in cells/uL) and the cytowhim strategy as YAML.
2. Times whole fresh processes, imports included, each started with ``subprocess``:
   ``python cli.py run manifest.csv --out DIR --strategy TBNK=strategy.yaml --jobs N -q`` for
   each ``--jobs`` (output folder deleted before every run, so nothing is resumed), and a FlowKit
   script: ``Session(gating_strategy, fcs_samples=[...])``, ``analyze_samples(use_mp=...,
   cache_events=True)`` and the analysis report written to CSV. FlowKit leaves one CPU free, so on
   a machine with 2 CPUs ``use_mp=True`` gates in one process just like ``use_mp=False``; by
   default ``use_mp=True`` is measured only where it can use more than one process.
3. Peak memory of each whole process tree: a thread polls ``/proc`` every 50 ms and sums
   ``VmRSS`` of the process and all its descendants (worker processes included); the largest sum
   is reported.
4. Compares the event counts of every population in every file: cytowhim's ``populations.csv``
   against FlowKit's report.
5. Prints a table (engine, wall s, peak MB of the process tree, speed-up vs FlowKit) and a
   verdict against the goals. Exit status 1 if a run fails or counts differ.

Run it from the repository root::

    python benchmarks/batch.py                        # 48 files x 200,000 events
    python benchmarks/batch.py --quick                # smoke run: 8 files x 50,000 events
    python benchmarks/batch.py --files 24 --events 100k --jobs 1,2
    python benchmarks/batch.py --out /tmp/batch       # keep (and reuse) the files there
    python benchmarks/batch.py --flowkit-mp both      # FlowKit with use_mp False and True

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this file's folder comes first on sys.path, where benchmarks/gating.py would
# shadow the ``gating`` package: drop that folder.
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]

MB = 1_000_000
TUBE = "TBNK"
DEFAULT_FILES, DEFAULT_EVENTS = 48, 200_000
QUICK_FILES, QUICK_EVENTS = 8, 50_000
GOAL_SPEED = 10.0  # FlowKit wall time / cytowhim wall time at least this
POLL_S = 0.05


def load_gating_bench() -> Any:
    """benchmarks/gating.py as a module (its file writer and strategy builders)."""
    spec = importlib.util.spec_from_file_location("_bench_gating", HERE / "gating.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- inputs


def write_inputs(folder: Path, n_files: int, n_events: int, seed: int) -> tuple[Path, Path]:
    """FCS files (reused when there), manifest.csv and strategy.yaml in ``folder``."""
    import numpy as np
    import pandas as pd

    bench = load_gating_bench()
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_files):
        name = f"tbnk_{i + 1:03d}_{n_events}.fcs"
        path = folder / name
        if not path.exists():
            bench.write_test_file(path, n_events, seed + i)
        alc = int(rng.uniform(1000, 3500))
        amc = int(rng.uniform(200, 900))
        anc = int(rng.uniform(1800, 7000))
        rows.append(
            {
                "file": name,
                "specimen": f"S{i + 1:03d}",
                "patient": f"P{i // 2 + 1:03d}",
                "timepoint": "baseline" if i % 2 == 0 else "peak",
                "tube": TUBE,
                "WBC": alc + amc + anc + int(rng.uniform(50, 400)),  # + eosinophils, basophils
                "ANC": anc,
                "ALC": alc,
                "AMC": amc,
            }
        )
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    strategy = folder / "strategy.yaml"
    bench.cytowhim_strategy().to_yaml(strategy)
    return manifest, strategy


def warm_page_cache(folder: Path) -> None:
    """Read every file once so that every engine finds them in the OS page cache."""
    for path in sorted(folder.glob("*.fcs")):
        with open(path, "rb", buffering=0) as f:
            while f.read(16 * 1024 * 1024):
                pass


# --------------------------------------------------------------------------- process tree


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from one scan of /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def _rss(pid: int) -> int:
    """VmRSS of a process in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(root: int) -> int:
    """Summed VmRSS of ``root`` and all its descendants."""
    children = _children()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss(pid)
        todo.extend(children.get(pid, ()))
    return total


def measure(args: list[str], label: str) -> dict[str, Any]:
    """Run ``args`` (cwd: repository root); wall time and peak VmRSS of its process tree."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    out: dict[str, Any] = {"engine": label, "wall": wall, "peak": peak[0], "stdout": stdout}
    if proc.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        out["error"] = f"exit {proc.returncode}: {last[:300]}"
    return out


# --------------------------------------------------------------------------- the engines

_FLOWKIT = """
import importlib.util, sys, warnings
warnings.simplefilter("ignore")
import flowkit
spec = importlib.util.spec_from_file_location("_bench_gating", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench
spec.loader.exec_module(bench)
files = sys.argv[4:]
session = flowkit.Session(gating_strategy=bench.flowkit_strategy(), fcs_samples=files)
session.analyze_samples(use_mp=sys.argv[3] == "1", cache_events=True)
report = session.get_analysis_report()
report.to_csv(sys.argv[2], index=False)
"""


def run_cytowhim(manifest: Path, strategy: Path, out: Path, jobs: int) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)  # nothing to resume
    args = [sys.executable, str(ROOT / "cli.py"), "run", str(manifest), "--out", str(out)]
    args += ["--strategy", f"{TUBE}={strategy}", "--jobs", str(jobs), "-q"]
    return measure(args, f"cytowhim run --jobs {jobs}")


def run_flowkit(files: list[Path], report: Path, use_mp: bool) -> dict[str, Any]:
    report.unlink(missing_ok=True)
    args = [sys.executable, "-c", _FLOWKIT, str(HERE / "gating.py"), str(report)]
    args += ["1" if use_mp else "0", *map(str, files)]
    return measure(args, f"FlowKit Session use_mp={use_mp}")


# --------------------------------------------------------------------------- counts


def compare_counts(
    cyto_csv: Path, flowkit_csv: Path, manifest: Path, names: list[str]
) -> list[str]:
    """Mismatches between cytowhim's populations.csv and FlowKit's report (empty: identical)."""
    import pandas as pd

    specimen_file = pd.read_csv(manifest).set_index("specimen")["file"].to_dict()
    cyto = pd.read_csv(cyto_csv)
    ours = {
        (specimen_file[s], p): int(c)
        for s, p, c in zip(cyto["specimen"], cyto["population"], cyto["events"], strict=True)
    }
    fk = pd.read_csv(flowkit_csv)
    theirs = {
        (s, g): int(c)
        for s, g, c in zip(fk["sample_id"], fk["gate_name"], fk["count"], strict=True)
    }
    problems = []
    for f in specimen_file.values():
        for name in names:
            a, b = ours.get((f, name)), theirs.get((f, name))
            if a is None or b is None or a != b:
                problems.append(f"{f} {name}: cytowhim {a}, FlowKit {b}")
    return problems


# --------------------------------------------------------------------------- main


def parse_count(text: str) -> int:
    """'200k' -> 200_000, '1M' -> 1_000_000, '5000' -> 5000."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    n = int(round(float(t[:-1] if factor > 1 else t) * factor))
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, help=f"number of files (default {DEFAULT_FILES})")
    p.add_argument("--events", type=parse_count, help="events per file (default 200k)")
    p.add_argument("--quick", action="store_true", help="smoke run: 8 files x 50k events")
    p.add_argument(
        "--jobs",
        default="1,2",
        help="comma-separated cytowhim run --jobs values to time (default 1,2)",
    )
    p.add_argument(
        "--flowkit-mp",
        choices=["auto", "false", "true", "both"],
        default="auto",
        help="FlowKit analyze_samples(use_mp=...): auto = False, and also True when there are "
        "more than 2 CPUs (FlowKit leaves one free, so with 2 it gates in one process anyway)",
    )
    p.add_argument("--out", type=Path, help="write (keep, reuse) the files in this folder")
    p.add_argument("--seed", type=int, default=20240312)
    args = p.parse_args(argv)
    args.files = args.files or (QUICK_FILES if args.quick else DEFAULT_FILES)
    args.events = args.events or (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    try:
        args.jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
    except ValueError:
        p.error("--jobs takes comma-separated integers, e.g. 1,2")
    if not args.jobs or min(args.jobs) < 1 or args.files < 1:
        p.error("--jobs and --files must be at least 1")
    cpus = os.cpu_count() or 1
    args.flowkit_mp = {
        "auto": [False, True] if cpus > 2 else [False],
        "false": [False],
        "true": [True],
        "both": [False, True],
    }[args.flowkit_mp]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import flowkit
    import numpy as np

    import cytowhim

    print(
        f"cytowhim {cytowhim.__version__}, FlowKit {flowkit.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs"
    )
    names = load_gating_bench().population_names()
    with tempfile.TemporaryDirectory(prefix="cytowhim-batch-") as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        manifest, strategy = write_inputs(folder, args.files, args.events, args.seed)
        files = sorted(folder.glob(f"tbnk_*_{args.events}.fcs"))[: args.files]
        size = sum(f.stat().st_size for f in files)
        print(
            f"{args.files} files x {args.events:,} events ({size / MB:,.0f} MB), "
            f"{len(names)}-population TBNK strategy; inputs ready in "
            f"{time.perf_counter() - t0:.1f} s in {folder}"
        )
        warm_page_cache(folder)
        runs = []
        for jobs in args.jobs:
            runs.append(run_cytowhim(manifest, strategy, folder / f"run_j{jobs}", jobs))
            print(f"  {runs[-1]['engine']}: {runs[-1].get('error', 'ok')}", flush=True)
        for use_mp in args.flowkit_mp:
            report = folder / f"flowkit_mp{int(use_mp)}.csv"
            runs.append(run_flowkit(files, report, use_mp))
            runs[-1]["report"] = report
            print(f"  {runs[-1]['engine']}: {runs[-1].get('error', 'ok')}", flush=True)

        ok_runs = [r for r in runs if "error" not in r]
        cyto = [r for r in ok_runs if r["engine"].startswith("cytowhim")]
        fks = [r for r in ok_runs if r["engine"].startswith("FlowKit")]
        fk_best = min(fks, key=lambda r: r["wall"]) if fks else None

        # counts: every cytowhim run against the fastest FlowKit run
        problems: list[str] = []
        if cyto and fk_best is not None:
            for r in cyto:
                jobs = r["engine"].rsplit(" ", 1)[1]
                csv = folder / f"run_j{jobs}" / "populations.csv"
                problems += [
                    f"[{r['engine']}] {m}"
                    for m in compare_counts(csv, fk_best["report"], manifest, names)
                ]
            n_cmp = len(cyto) * args.files * len(names)
            same = not problems
            print(
                f"\ncounts: {n_cmp:,} (run, file, population) counts compared with FlowKit: "
                f"identical {'yes' if same else 'NO'}"
            )
            for line in problems[:20]:
                print(f"  {line}")
            if len(problems) > 20:
                print(f"  ... and {len(problems) - 20} more")
        else:
            same = False
            print("\ncounts: not compared (a run failed)")

        print(f"\n{'engine':<30}{'wall s':>9}{'peak MB':>10}{'FlowKit / this':>16}")
        for r in runs:
            if "error" in r:
                print(f"{r['engine']:<30}failed: {r['error']}")
                continue
            ratio = f"{fk_best['wall'] / r['wall']:.1f}x" if fk_best else "n/a"
            print(f"{r['engine']:<30}{r['wall']:>9.2f}{r['peak'] / MB:>10,.0f}{ratio:>16}")
        print("(wall: whole process, imports included; peak: summed VmRSS of the process tree)")

        met = False
        if cyto and fk_best is not None:
            best = min(cyto, key=lambda r: r["wall"])
            speed = fk_best["wall"] / best["wall"]
            lower = best["peak"] < fk_best["peak"]
            met = speed >= GOAL_SPEED and lower and same
            print(
                f"\nverdict: {best['engine']} is {speed:.1f}x faster than "
                f"{fk_best['engine']} (goal >= {GOAL_SPEED:.0f}x: "
                f"{'met' if speed >= GOAL_SPEED else 'NOT met'}); peak "
                f"{best['peak'] / MB:,.0f} MB vs {fk_best['peak'] / MB:,.0f} MB (goal lower: "
                f"{'met' if lower else 'NOT met'}); counts {'identical' if same else 'DIFFER'}"
                f" -> goals {'met' if met else 'NOT met'}"
            )
    return 0 if ok_runs == runs and same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: what data-driven gates cost per 1M events, next to fixed gates.

Simulates one tube of each panel (T, B/NK, monocyte) with ``--events`` events (default 1M),
gates it with the default strategy (``data/strategies/<tube>.yaml``: density valleys, singlet
wedge, scatter mixture clusters) and with the same strategy frozen to the geometry its gates took
on that file (fixed gates: what a template of hand-drawn gates costs), and prints the median of
``--repeat`` runs of each and their ratio. Both give the same counts (checked).

    python benchmarks/adaptive_gating.py                 # 1,000,000 events per tube
    python benchmarks/adaptive_gating.py --events 200000 --repeat 3
    python benchmarks/adaptive_gating.py --memory 10000000   # + peak memory, 10M-event T tube

The anchor (issue 12): the engine's fixed 24-gate TBNK + memory strategy of
``benchmarks/gating.py`` on its own synthetic file of the same number of events, timed in the
same run; the target is each default strategy at most 3x that per event. ``--memory N`` writes
an N-event T tube as an FCS file and, in a fresh process (imports done by gating a small tube
first), reads it and gates it with the default T strategy, reporting the peak resident memory of
the read sample plus gating against the file's size (target: at most 2.5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and its gating.py (the gating benchmark)
# would shadow the ``gating`` package: drop the folder.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]

import cytowhim as cw  # noqa: E402
from cytowhim.resources import data_path  # noqa: E402
from cytowhim.simulate.cohort import specimens  # noqa: E402
from cytowhim.simulate.panels import PANELS  # noqa: E402
from cytowhim.simulate.tube import Drift, simulate_tube  # noqa: E402
from gating import Population, Strategy  # noqa: E402


def make_sample(tube: str, n: int, seed: int) -> cw.Sample:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    spec = specimens("healthy", rng, 1)[0]
    panel = PANELS[tube]
    drift = Drift.draw(rng, [m for _, m in panel.fluorescence], 0.3)
    events, _ = simulate_tube(panel, spec.tube_counts(tube), n, rng, drift)
    spill = pd.DataFrame(
        panel.spillover(), index=panel.fluorescence_channels, columns=panel.fluorescence_channels
    )
    return cw.Sample(events=events, channels=panel.channels, markers=panel.markers, spillover=spill)


def timed(strategy: Strategy, sample: cw.Sample, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = strategy.apply(sample)
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def tbnk_anchor(n: int, repeat: int, folder: Path) -> float:
    """Median seconds of the fixed 24-gate TBNK strategy of benchmarks/gating.py on an n-event
    file of its own (the engine's fixed-gate path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_gating", HERE / "gating.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    path = folder / f"tbnk_{n}.fcs"
    mod.write_test_file(path, n, 11)
    sample = cw.read_fcs(path)
    strategy = mod.cytowhim_strategy()
    strategy.apply(sample)
    return timed(strategy, sample, repeat)[0]


_MEMORY_CHILD = """
import gc, json, sys, time, warnings
warnings.simplefilter("ignore")
sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]
import cytowhim as cw
from cytowhim.resources import data_path
from gating import Strategy
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
strategy = Strategy.load(data_path("strategies", "T.yaml"))
small = cw.read_fcs(sys.argv[2])  # a 20,000-event tube: imports (scikit-learn ...) done first
strategy.apply(small).counts()
del small
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
sample = cw.read_fcs(sys.argv[1])
t = time.perf_counter()
counts = strategy.apply(sample).counts()
seconds = time.perf_counter() - t
print(json.dumps({"peak": status("VmHWM") - before, "seconds": seconds,
                  "events": sample.n_events, "populations": len(counts)}))
"""


def memory(n: int, folder: Path) -> None:
    """Peak memory of reading and gating an n-event T tube (default strategy), fresh process."""
    import json
    import subprocess

    path = folder / f"T_{n}.fcs"
    chunk = 1_000_000
    parts = [make_sample("T", min(chunk, n - s), 100 + s // chunk) for s in range(0, n, chunk)]
    import numpy as np

    first = parts[0]
    events = np.concatenate([p.events for p in parts])
    del parts
    sample = cw.Sample(events=events, channels=first.channels, markers=first.markers)
    sample.spillover = first.spillover
    cw.write_fcs(path, sample)
    del sample
    del events
    small = folder / "T_small.fcs"
    cw.write_fcs(small, make_sample("T", 20_000, 99))
    size = path.stat().st_size
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(path), str(small)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(f"memory run failed: {proc.stderr.strip().splitlines()[-1:]}")
        return
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    mib = 1024 * 1024
    print(
        f"\n{out['events']:,}-event T tube ({size / mib:,.0f} MiB file): read + default T "
        f"strategy ({out['populations']} populations) in {out['seconds']:.1f} s, peak "
        f"{out['peak'] / mib:,.0f} MiB = {out['peak'] / size:.2f}x the file (target <= 2.5x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--memory", type=int, default=0, metavar="N", help="N-event memory run")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"{args.events:,} events per tube, median of {args.repeat} runs\n")
    print(
        f"{'tube':6} {'populations':>11} {'adaptive s':>11} {'fixed s':>9} {'ratio':>7} "
        f"{'adaptive s/1M':>14} {'fixed s/1M':>11}"
    )
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="cytowhim-adaptive-"))
    anchor = tbnk_anchor(args.events, args.repeat, folder) * 1e6 / args.events
    print(f"anchor: fixed 24-gate TBNK strategy {anchor:.3f} s per 1M events\n")
    for k, tube in enumerate(("T", "B", "mono")):
        sample = make_sample(tube, args.events, args.seed + k)
        adaptive = Strategy.load(Path(data_path("strategies", f"{tube}.yaml")))
        first = adaptive.apply(sample)  # warm-up; its geometry becomes the fixed strategy
        fixed = Strategy(
            [Population(p.name, first.gates[p.name], p.parent, p.label) for p in adaptive],
            adaptive.transforms,
            adaptive.compensations,
        )
        t_ad, r_ad = timed(adaptive, sample, args.repeat)
        fixed.apply(sample)
        t_fx, r_fx = timed(fixed, sample, args.repeat)
        assert r_ad.counts().equals(r_fx.counts()), "fixed and adaptive counts differ"
        per = 1e6 / args.events
        print(
            f"{tube:6} {len(adaptive):>11} {t_ad:>11.3f} {t_fx:>9.3f} {t_ad / t_fx:>6.1f}x "
            f"{t_ad * per:>14.3f} {t_fx * per:>11.3f}   {t_ad * per / anchor:.1f}x TBNK"
        )
    if args.memory:
        memory(args.memory, folder)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: what data-driven gates cost per 1M events, next to fixed gates.

Simulates one tube of each panel (T, B/NK, monocyte) with ``--events`` events (default 1M),
gates it with the default strategy (``data/strategies/<tube>.yaml``: density valleys, singlet
wedge, scatter mixture clusters) and with the same strategy frozen to the geometry its gates took
on that file (fixed gates: what a template of hand-drawn gates costs), and prints the median of
``--repeat`` runs of each and their ratio. Both give the same counts (checked).

    python benchmarks/adaptive_gating.py                 # 1,000,000 events per tube
    python benchmarks/adaptive_gating.py --events 200000 --repeat 3
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"{args.events:,} events per tube, median of {args.repeat} runs\n")
    print(
        f"{'tube':6} {'populations':>11} {'adaptive s':>11} {'fixed s':>9} {'ratio':>7} "
        f"{'adaptive s/1M':>14} {'fixed s/1M':>11}"
    )
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
            f"{t_ad * per:>14.3f} {t_fx * per:>11.3f}"
        )


if __name__ == "__main__":
    main()

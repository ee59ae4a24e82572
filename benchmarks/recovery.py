"""Benchmark: how well the default strategies recover Table 1 on realistic vs kind simulations.

Simulates the ``realistic`` preset (log-normal spreads of real panels, continua and shoulders on
CCR7/CD62L/CD27/CD45RA/IgD, debris overlapping the lymphocytes, NKT cells, basophils, DCs, CD56-
NK and other lymphocytes, an analyzer CBC, occasional failed stains) and the ``whim-trial``
preset with the same seeds, gates every file with the bundled strategies (``Panels.load()``:
``data/strategies/*.yaml``, untuned) and compares, per Table 1 population in the tube that
reports it, the gated events with the true events of ``truth.csv``.

Prints one table: per population and preset, the specimens with >= ``--min-events`` true events
(n), the median true events (over those n) and gated events (over those whose gate was placed),
the median and worst absolute relative error of the gated count, and how many gates failed (no
valley / no cluster: the population has no count; a failure is not in the error columns but in
'fail'). Then the gated lymphosum (T + B + NK as % of the gated
lymphocytes) next to the truth's, per preset.

    python benchmarks/recovery.py                       # seeds 1-3, 6 realistic specimens each
    python benchmarks/recovery.py --seeds 1 2 --specimens 3 --events 20000 30000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and its gating.py (the gating benchmark)
# would shadow the ``gating`` package: drop the folder.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]

import pandas as pd  # noqa: E402

from cytowhim.simulate import simulate  # noqa: E402
from cytowhim.simulate.recovery import recovery, summary  # noqa: E402

LYMPHOSUM = ("lymphocytes", "T cells", "B cells", "NK cells")


def run(preset: str, seeds: list[int], specimens: int, events: tuple[int, int], keep: Path | None):
    """(recovery rows of Table 1 populations, lymphosum rows) over all seeds of one preset."""
    rows, sums = [], []
    for seed in seeds:
        if keep is not None:
            folder = keep / f"{preset}-{seed}"
        else:
            folder = Path(tempfile.mkdtemp(prefix=f"recovery-{preset}-{seed}-"))
        simulate(folder, preset, seed=seed, n_healthy=specimens, events=events)
        frame = recovery(folder)
        frame["seed"] = seed
        rows.append(frame)
        lymph = recovery(folder, LYMPHOSUM)
        lymph = lymph[lymph.tube == "T"]
        for specimen, sub in lymph.groupby("specimen"):
            sub = sub.set_index("population")
            if (sub.failed != "").any():
                continue
            tbnk = ["T cells", "B cells", "NK cells"]
            sums.append(
                {
                    "seed": seed,
                    "specimen": specimen,
                    "truth": 100 * sub.truth[tbnk].sum() / sub.truth["lymphocytes"],
                    "gated": 100 * sub.gated[tbnk].sum() / sub.gated["lymphocytes"],
                }
            )
    return pd.concat(rows, ignore_index=True), pd.DataFrame(sums)


def _fmt(v, pct=False) -> str:
    if pd.isna(v):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--specimens", type=int, default=6, help="realistic specimens per seed")
    parser.add_argument("--events", type=int, nargs=2, default=[40_000, 60_000])
    parser.add_argument("--min-events", type=int, default=200)
    parser.add_argument("--out", type=Path, help="keep the simulated folders here")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads of the scatter gates' mixture fits (default 1: on a busy "
        "2-core machine a thread per core made them 5-8x slower); 0 = the libraries' default",
    )
    args = parser.parse_args()
    if args.threads:
        import sklearn.cluster  # noqa: F401  (loaded before the limit, so that it applies)
        import sklearn.mixture  # noqa: F401
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    events = (args.events[0], args.events[1])
    presets = ("realistic", "whim-trial")
    tables, sums = {}, {}
    for preset in presets:
        t = time.perf_counter()
        frame, lymphosum = run(preset, args.seeds, args.specimens, events, args.out)
        tables[preset] = summary(frame, args.min_events).set_index("population")
        sums[preset] = lymphosum
        print(
            f"{preset}: {frame.specimen.nunique()} specimens x {len(args.seeds)} seeds, gated in "
            f"{time.perf_counter() - t:.0f} s",
            file=sys.stderr,
        )
    print(
        f"Table 1 recovery, default strategies, seeds {args.seeds}, {events[0]:,}-{events[1]:,} "
        f"events per tube; populations with >= {args.min_events} true events; error = "
        "|gated - truth| / truth (median and worst over specimens); fail = gate not placed\n"
    )
    head = f"{'n':>3} {'truth':>6} {'gated':>6} {'median':>7} {'worst':>7} {'fail':>4}"
    print(f"{'':24} | {'realistic':^38} | {'whim-trial':^38}")
    print(f"{'population':24} | {head} | {head}")
    print("-" * 24 + "-+-" + "-" * 38 + "-+-" + "-" * 38)
    for pop in tables[presets[0]].index:
        cells = []
        for preset in presets:
            r = tables[preset].loc[pop]
            cells.append(
                f"{int(r.n):>3} {_fmt(r.truth):>6} {_fmt(r.gated):>6} "
                f"{_fmt(r.median_error, True):>7} {_fmt(r.worst_error, True):>7} {int(r.failed):>4}"
            )
        print(f"{pop:24} | {cells[0]} | {cells[1]}")
    print("\nLymphosum (T + B + NK, % of lymphocytes), T tube: median [min-max] over specimens")
    for preset in presets:
        s = sums[preset]
        if s.empty:
            print(f"  {preset:11} no specimen with all four populations gated")
            continue
        print(
            f"  {preset:11} truth {s.truth.median():.1f} [{s.truth.min():.1f}-{s.truth.max():.1f}]"
            f"   gated {s.gated.median():.1f} [{s.gated.min():.1f}-{s.gated.max():.1f}]"
        )


if __name__ == "__main__":
    main()

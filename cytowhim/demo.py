"""``cytowhim demo``: the whole job on simulated specimens of the WHIM plerixafor study.

Simulates the ``whim-trial`` preset (3 patients x baseline and peak, three tubes each), runs the
manifest (gating, absolute counts from the CBC, QC, reference flags) and compares baseline with
peak in the layout of the study's Table 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

#: Events acquired per tube in the demo.
DEMO_EVENTS = {"T": (60_000, 120_000), "B": (250_000, 300_000), "mono": (60_000, 120_000)}


def run_demo(out: str | os.PathLike, seed: int = 0, progress: Callable[[str], None] | None = None):
    """Write DIR/specimens/ (FCS, manifest, truth), DIR/populations.csv, DIR/table1.csv/.md/.html;
    returns the Comparison."""
    from .compare import compare_timepoints
    from .panels import Panels
    from .run import run_manifest, write_run
    from .simulate import simulate

    out = Path(out)
    specimens = out / "specimens"
    # the B/NK tube is acquired with more events, as labs do for rare subsets (immature B cells
    # are about 1 cell/µL: some 100 events in 250,000)
    # Table 1's values are measured values: the cohort draws them per patient (means, SEMs and the
    # baseline-peak correlations of the paper) and each tube holds exactly that composition
    simulate(
        specimens,
        "whim-trial",
        seed=seed,
        events=DEMO_EVENTS,
        composition="exact",
        progress=progress,
    )
    panels = Panels.load()
    result = run_manifest(specimens / "manifest.csv", panels=panels, progress=progress, out=out)
    write_run(result, out, manifest=specimens / "manifest.csv", panels=panels)
    table = pd.read_csv(out / "populations.csv", encoding="utf-8-sig")
    comparison = compare_timepoints(table, "baseline", "peak", sources=panels.report)
    comparison.simulated = True
    comparison.write(out, "table1")
    return comparison, result

"""Write the small bundled example file ``data/examples/example_tbnk.fcs`` (FCS 3.1).

A stand-in until the simulator (``cytowhim simulate``) exists: 3,000 lysed-whole-blood-like events
of a TBNK tube (lymphocytes, monocytes, granulocytes, debris) with a spillover matrix, so that
``cytowhim inspect --example`` has a realistic file to show.
Run: ``python tools/make_example_fcs.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import cytowhim as cw

CHANNELS = [
    "FSC-A",
    "FSC-H",
    "SSC-A",
    "FITC-A",
    "PE-A",
    "PerCP-Cy5-5-A",
    "PE-Cy7-A",
    "APC-A",
    "APC-H7-A",
    "V500-A",
    "Time",
]
MARKERS = ["", "", "", "CD3", "CD16+CD56", "CD45", "CD4", "CD19", "CD8", "", ""]


def make(seed: int = 20261126, n: int = 3000) -> cw.Sample:
    rng = np.random.default_rng(seed)
    kinds = rng.choice(4, size=n, p=[0.35, 0.07, 0.5, 0.08])  # lymph, mono, gran, debris
    fsc = np.choose(
        kinds,
        [
            rng.normal(60e3, 6e3, n),
            rng.normal(95e3, 9e3, n),
            rng.normal(110e3, 10e3, n),
            rng.uniform(5e3, 30e3, n),
        ],
    )
    ssc = np.choose(
        kinds,
        [
            rng.normal(12e3, 2e3, n),
            rng.normal(45e3, 6e3, n),
            rng.normal(120e3, 15e3, n),
            rng.uniform(1e3, 20e3, n),
        ],
    )
    n_fl = 6
    fl = rng.lognormal(mean=4.0, sigma=0.6, size=(n, n_fl))
    lymph = kinds == 0
    t = lymph & (rng.random(n) < 0.7)
    fl[t, 0] *= 60  # CD3
    cd4 = t & (rng.random(n) < 0.62)
    fl[cd4, 3] *= 50
    fl[t & ~cd4, 5] *= 40  # CD8
    nk = lymph & ~t & (rng.random(n) < 0.5)
    fl[nk, 1] *= 30
    fl[lymph & ~t & ~nk, 4] *= 45  # CD19
    fl[kinds < 3, 2] *= np.where(kinds[kinds < 3] == 0, 80, 30)  # CD45
    spill = np.eye(n_fl)
    spill[0, 1], spill[1, 0], spill[1, 2], spill[2, 3], spill[4, 5] = 0.18, 0.02, 0.12, 0.05, 0.08
    fl = fl @ spill + rng.normal(0, 15, size=(n, n_fl))
    time = np.sort(rng.uniform(0, 60_000, n))
    events = np.column_stack([fsc, fsc * 0.8, ssc, fl, rng.normal(0, 20, n), time]).astype(
        np.float32
    )
    fl_channels = CHANNELS[3:9]
    keywords = {
        "$CYT": "cytowhim example (synthetic)",
        "$DATE": "26-NOV-2026",
        "$FIL": "example_tbnk.fcs",
        "$SRC": "TBNK example tube",
        "$TIMESTEP": "0.01",
    }
    return cw.Sample(
        events=events,
        channels=CHANNELS,
        markers=MARKERS,
        keywords=keywords,
        spillover=pd.DataFrame(spill, index=fl_channels, columns=fl_channels),
    )


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "data" / "examples" / "example_tbnk.fcs"
    cw.write_fcs(out, make())
    print(f"wrote {out}")

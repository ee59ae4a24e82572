"""Memory of reading and gating a large tube with the default (data-driven) strategy: at most
2.5x the file's size (issue 13 item 6; the 10M-event figure is in benchmarks/adaptive_gating.py).
Measured in a fresh process: the peak resident memory (VmHWM) above what it held once the imports
were done, while reading the file and gating it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw
from cytowhim.simulate.cohort import specimens
from cytowhim.simulate.panels import PANELS
from cytowhim.simulate.tube import Drift, simulate_tube

_CHILD = """
import gc, json, sys, warnings
warnings.simplefilter("ignore")
import cytowhim as cw
from cytowhim.resources import data_path
from gating import Strategy
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
strategy = Strategy.load(data_path("strategies", "T.yaml"))
strategy.apply(cw.read_fcs(sys.argv[2])).counts()  # imports (scikit-learn ...) done first
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
counts = strategy.apply(cw.read_fcs(sys.argv[1])).counts()
print(json.dumps({"peak": status("VmHWM") - before, "populations": len(counts)}))
"""


def _tube(n: int, seed: int) -> cw.Sample:
    rng = np.random.default_rng(seed)
    spec = specimens("healthy", rng, 1)[0]
    panel = PANELS["T"]
    drift = Drift.draw(rng, [m for _, m in panel.fluorescence], 0.3)
    events, _ = simulate_tube(panel, spec.tube_counts("T"), n, rng, drift)
    spill = pd.DataFrame(
        panel.spillover(), index=panel.fluorescence_channels, columns=panel.fluorescence_channels
    )
    return cw.Sample(events=events, channels=panel.channels, markers=panel.markers, spillover=spill)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_gating_a_2m_event_tube_needs_at_most_2_5x_the_file(tmp_path):
    big, small = tmp_path / "big.fcs", tmp_path / "small.fcs"
    cw.write_fcs(big, _tube(2_000_000, 1))
    cw.write_fcs(small, _tube(20_000, 2))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(big), str(small)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    size = big.stat().st_size
    assert out["populations"] == 24
    print(f"peak {out['peak'] / size:.2f}x the file ({size / 2**20:.0f} MiB)")
    assert out["peak"] <= 2.5 * size, f"peak {out['peak'] / size:.2f}x the file"

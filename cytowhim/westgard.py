"""Westgard rules on a control's results in time order (Levey-Jennings QC).

Each result is turned into a z score against its lot's target (mean, SD); a rule is broken at the
result that completes its pattern:

========  ==================================================================================
1-3s      one result beyond mean ± 3 SD
2-2s      two results in a row beyond 2 SD on the same side
R-4s      two results of one run beyond 2 SD on opposite sides (a range over 4 SD)
4-1s      four results in a row beyond 1 SD on the same side
10-x      ten results in a row on the same side of the mean
========  ==================================================================================

All five reject the run (Westgard et al., Clin Chem 1981); 1-2s is a warning only and is not
reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

RULES = ("1-3s", "2-2s", "R-4s", "4-1s", "10-x")


def z_scores(values: Sequence[float], mean: float, sd: float) -> np.ndarray:
    """(value - mean) / sd for each result (NaN where a value is missing)."""
    if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"a control target needs a finite mean and an SD > 0, got {mean}, {sd}")
    return (np.asarray(values, dtype=np.float64) - mean) / sd


def violations(z: Sequence[float], runs: Sequence[object] | None = None) -> list[list[str]]:
    """The rules broken at each result (results in time order; NaN results are skipped and
    break no run of results). ``runs``: the analytical run (e.g. the day) of each result: R-4s
    is a within-run rule, so it is applied only to two results of one run (with one control
    result a day it cannot fire); None: every result its own run."""
    z = np.asarray(z, dtype=np.float64)
    runs = list(range(z.size)) if runs is None else list(runs)
    out: list[list[str]] = [[] for _ in range(z.size)]
    seen: list[tuple[int, float]] = []  # (index, z) of the results so far, missing skipped
    for i, v in enumerate(z):
        if not math.isfinite(v):
            continue
        seen.append((i, v))
        last = [x for _, x in seen[-10:]]
        broken = out[i]
        if abs(v) > 3:
            broken.append("1-3s")
        if len(last) >= 2:
            a, b = last[-2], last[-1]
            if (a > 2 and b > 2) or (a < -2 and b < -2):
                broken.append("2-2s")
            same_run = runs[seen[-2][0]] == runs[i]
            if same_run and ((a > 2 and b < -2) or (a < -2 and b > 2)):
                broken.append("R-4s")
        if len(last) >= 4 and (all(x > 1 for x in last[-4:]) or all(x < -1 for x in last[-4:])):
            broken.append("4-1s")
        if len(last) >= 10 and (all(x > 0 for x in last) or all(x < 0 for x in last)):
            broken.append("10-x")
    return out

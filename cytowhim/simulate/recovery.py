"""How well a lab's strategies recover the truth of simulated specimens.

:func:`recovery` gates every file of a simulated folder with the strategies of
:class:`~cytowhim.panels.Panels` (default: the bundled ``data/panels.yaml``) and compares each
population's gated events with the true events in ``truth.csv``, in the tube that reports it.
A gate that cannot place itself on a file (no valley, no cluster) fails only its population
(and the populations gated inside it): such rows have ``failed`` set and no gated count.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import table1

COLUMNS = ["specimen", "tube", "population", "truth", "gated", "rel_error", "failed"]


def recovery(
    folder: str | os.PathLike,
    populations: Iterable[str] | None = None,
    panels=None,
) -> pd.DataFrame:
    """One row per (specimen, population): specimen, tube, population, truth (true events),
    gated (events the strategy gated; <NA> when it failed), rel_error ((gated - truth) / truth;
    NaN when failed or no true events) and failed (why the gate failed, '' otherwise).

    populations: which ones (default: Table 1's); each is looked up in the tube that reports it
    (``panels.report``; 'T' for others)."""
    from ..fcs import read_fcs
    from ..panels import Panels

    folder = Path(folder)
    panels = panels or Panels.load()
    names = list(populations) if populations is not None else list(table1())
    tube_of = {p: panels.report.get(p, "T") for p in names}
    truth = pd.read_csv(folder / "truth.csv")
    truth = truth.set_index(["specimen", "tube", "population"]).events
    manifest = pd.read_csv(folder / "manifest.csv")
    rows = []
    for row in manifest.itertuples():
        wanted = [p for p in names if tube_of[p] == row.tube]
        if not wanted:
            continue
        strategy = panels.strategy(row.tube)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = strategy.apply(read_fcs(folder / row.file))
        for pop in wanted:
            key = (row.specimen, row.tube, pop)
            if key not in truth.index:
                continue
            want = int(truth[key])
            name = strategy.resolve_name(pop)
            why = result.failed.get(name, "")
            gated = None if why else int(np.count_nonzero(result.masks[name]))
            rel = (gated - want) / want if gated is not None and want else float("nan")
            rows.append(
                {
                    "specimen": row.specimen,
                    "tube": row.tube,
                    "population": pop,
                    "truth": want,
                    "gated": gated,
                    "rel_error": rel,
                    "failed": why,
                }
            )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["gated"] = frame["gated"].astype("Int64")
    return frame


def summary(frame: pd.DataFrame, min_events: int = 200) -> pd.DataFrame:
    """Per population, over the specimens with >= ``min_events`` true events: n, median true and
    gated events, median and worst absolute relative error (of the gated ones), failures."""
    rows = []
    for pop, sub in frame.groupby("population", sort=False):
        sub = sub[sub.truth >= min_events]
        ok = sub[sub.failed == ""]
        err = ok.rel_error.abs()
        rows.append(
            {
                "population": pop,
                "n": len(sub),
                "truth": float(sub.truth.median()) if len(sub) else np.nan,
                "gated": float(ok.gated.astype(float).median()) if len(ok) else np.nan,
                "median_error": float(err.median()) if len(ok) else np.nan,
                "worst_error": float(err.max()) if len(ok) else np.nan,
                "failed": int((sub.failed != "").sum()),
            }
        )
    return pd.DataFrame(rows)

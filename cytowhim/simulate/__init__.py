"""Synthetic specimens with known truth: ``cytowhim simulate`` and :func:`simulate`.

Writes, for each specimen, one FCS file per tube (T, B/NK, monocyte panels with their own channel
names and spillover), ``manifest.csv`` (file, specimen, patient, timepoint, tube, WBC, ANC, ALC,
AMC in cells/µL) and ``truth.csv`` (specimen, tube, population, events, absolute_per_uL).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..fcs import write_fcs
from ..sample import Sample
from .cells import POPULATIONS
from .cohort import PRESETS, Specimen, specimens
from .panels import PANELS
from .tube import DOUBLET, Drift, simulate_tube

__all__ = ["PRESETS", "simulate"]


def simulate(
    out: str | os.PathLike,
    preset: str = "whim-trial",
    seed: int = 0,
    drift: float = 0.3,
    n_healthy: int = 3,
    events: tuple[int, int] | Mapping[str, tuple[int, int]] = (60_000, 120_000),
    progress: Callable[[str], None] | None = None,
    composition: str = "multinomial",
) -> pd.DataFrame:
    """Simulate a preset's specimens into folder ``out``; returns the manifest as a DataFrame.

    drift: the largest relative change of marker gains and scatter between tubes (0.3 = ±30 %).
    events: range of events acquired per tube, or a mapping tube -> range (tubes not named get
    the default 60,000-120,000), as a lab acquires more events in a tube with rare populations.
    composition: 'multinomial' samples each tube's events from the specimen (Poisson noise between
    specimen and tube), 'exact' gives each cell type its expected share (the designed counts
    exactly, e.g. to reproduce Table 1). The same seed gives the same files.
    """
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest, truth = [], []
    for spec in specimens(preset, rng, n_healthy):
        for tube, panel in PANELS.items():
            low, high = _events_of(events, tube)
            n = int(rng.integers(low, high + 1))
            tube_drift = Drift.draw(rng, [m for _, m in panel.fluorescence], drift)
            counts = spec.tube_counts(tube)
            ev, labels = simulate_tube(panel, counts, n, rng, tube_drift, composition=composition)
            name = f"{spec.specimen}_{tube}.fcs"
            sample = Sample(
                events=ev,
                channels=panel.channels,
                markers=panel.markers,
                keywords={
                    "$CYT": "cytowhim simulator",
                    "$SRC": spec.specimen,
                    "$FIL": name,
                    "TUBE NAME": tube,
                    "$TIMESTEP": "0.01",
                    **{f"$P{i}R": "262144" for i in range(1, len(panel.channels) + 1)},
                },
                spillover=pd.DataFrame(
                    panel.spillover(),
                    index=panel.fluorescence_channels,
                    columns=panel.fluorescence_channels,
                ),
            )
            write_fcs(out / name, sample)
            manifest.append(
                {
                    "file": name,
                    "specimen": spec.specimen,
                    "patient": spec.patient,
                    "timepoint": spec.timepoint,
                    "tube": tube,
                    "WBC": round(spec.wbc, 1),
                    "ANC": round(spec.anc, 1),
                    "ALC": round(spec.alc, 1),
                    "AMC": round(spec.amc, 1),
                }
            )
            truth.extend(_truth(spec, tube, labels))
            if progress:
                progress(name)
    frame = pd.DataFrame(manifest)
    frame.to_csv(out / "manifest.csv", index=False)
    pd.DataFrame(truth).to_csv(out / "truth.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    return frame


def _events_of(
    events: tuple[int, int] | Mapping[str, tuple[int, int]], tube: str
) -> tuple[int, int]:
    if isinstance(events, Mapping):
        return tuple(events.get(tube, (60_000, 120_000)))  # type: ignore[return-value]
    return events[0], events[1]


def _truth(spec: Specimen, tube: str, labels: np.ndarray) -> list[dict]:
    """True events and cells/µL of every population this tube's panel can show."""
    markers = set(PANELS[tube].markers)
    singlets = labels[labels != DOUBLET]
    kinds, n = np.unique(singlets, return_counts=True)
    per_kind = dict(zip(kinds.tolist(), n.tolist()))
    bases = {
        "lymphocytes": spec.alc,
        "monocytes": spec.amc,
        "neutrophils": spec.anc,
        "CD45+": spec.wbc,
    }
    base_pop = {
        "lymphocytes": "lymphocytes",
        "monocytes": "monocytes (scatter)",
        "neutrophils": "neutrophils",
        "CD45+": "CD45+ leukocytes",
    }
    by_name = {p.name: p for p in POPULATIONS}
    rows = []
    for pop in POPULATIONS:
        if not set(pop.markers) <= markers:
            continue
        events = sum(per_kind.get(c, 0) for c in pop.cells)
        base_events = sum(per_kind.get(c, 0) for c in by_name[base_pop[pop.base]].cells)
        absolute = events / base_events * bases[pop.base] if base_events else float("nan")
        rows.append(
            {
                "specimen": spec.specimen,
                "tube": tube,
                "population": pop.name,
                "events": events,
                "absolute_per_uL": round(absolute, 3),
            }
        )
    return rows

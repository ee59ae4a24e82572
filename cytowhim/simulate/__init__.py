"""Synthetic specimens with known truth: ``cytowhim simulate`` and :func:`simulate`.

Writes, for each specimen, one FCS file per tube (T, B/NK, monocyte panels with their own channel
names and spillover), ``manifest.csv`` (file, specimen, patient, timepoint, tube, WBC, ANC, ALC,
AMC in cells/µL) and ``truth.csv`` (specimen, tube, population, events, absolute_per_uL).

The ``realistic`` preset (see :mod:`.realistic`) also writes ``cbc.csv`` (specimen, count, true,
analyzer: the manifest gives the analyzer's CBC, which differs from the true counts by the
analyzer's CV), ``failed_stains.csv`` (file, specimen, tube, marker, factor: tubes whose marker
stained weakly) and, in ``truth.csv``, the extra populations of its extra cell types and a column
``analyzer_absolute_per_uL`` (the true events counted against the analyzer's CBC: what a perfect
gate gives).
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
from . import realistic
from .cells import EXTRA_POPULATIONS, POPULATIONS, REALISTIC_POPULATIONS
from .cohort import CBC_COUNTS, PRESETS, Specimen, specimens
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
    failed_stain_rate: float | None = None,
) -> pd.DataFrame:
    """Simulate a preset's specimens into folder ``out``; returns the manifest as a DataFrame.

    drift: the largest relative change of marker gains and scatter between tubes (0.3 = ±30 %).
    events: range of events acquired per tube, or a mapping tube -> range (tubes not named get
    the default 60,000-120,000), as a lab acquires more events in a tube with rare populations.
    composition: 'multinomial' samples each tube's events from the specimen (Poisson noise between
    specimen and tube), 'exact' gives each cell type its expected share (the designed counts
    exactly, e.g. to reproduce Table 1). The same seed gives the same files.
    n_healthy: specimens of the healthy and realistic presets.
    failed_stain_rate: realistic preset only: the probability that a tube has one weakly
    stained marker (default :data:`.realistic.FAILED_STAIN_RATE`, 1 in 30).
    """
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real = preset == "realistic"
    if failed_stain_rate is not None and not real:
        raise ValueError("failed_stain_rate is for the realistic preset only")
    rate = realistic.FAILED_STAIN_RATE if failed_stain_rate is None else failed_stain_rate
    manifest, truth, failed, cbc = [], [], [], []
    for spec in specimens(preset, rng, n_healthy):
        for tube, panel in PANELS.items():
            low, high = _events_of(events, tube)
            n = int(rng.integers(low, high + 1))
            markers = [m for _, m in panel.fluorescence]
            tube_drift = Drift.draw(rng, markers, drift)
            counts = spec.tube_counts(tube)
            name = f"{spec.specimen}_{tube}.fcs"
            if real:
                weak = realistic.draw_failed_stain(rng, markers, rate)
                ev, labels = realistic.simulate_tube(
                    panel, counts, n, rng, tube_drift, composition=composition, weak=weak
                )
                failed.extend(
                    {
                        "file": name,
                        "specimen": spec.specimen,
                        "tube": tube,
                        "marker": m,
                        "factor": round(f, 3),
                    }
                    for m, f in weak.items()
                )
            else:
                ev, labels = simulate_tube(
                    panel, counts, n, rng, tube_drift, composition=composition
                )
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
                    **{k: round(v, 1) for k, v in spec.cbc.items()},
                    **_times(spec),
                }
            )
            truth.extend(_truth(spec, tube, labels, extra=real))
            if progress:
                progress(name)
        if real:
            cbc.extend(
                {
                    "specimen": spec.specimen,
                    "count": k,
                    "true": round(spec.true_cbc[k], 1),
                    "analyzer": round(spec.cbc[k], 1),
                }
                for k in CBC_COUNTS
            )
    frame = pd.DataFrame(manifest)
    frame.to_csv(out / "manifest.csv", index=False)
    pd.DataFrame(truth).to_csv(out / "truth.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    if preset == "controls":
        _write_lot_file(out / "lot.csv", pd.DataFrame(truth))
    if real:
        pd.DataFrame(cbc).to_csv(out / "cbc.csv", index=False)
        columns = ["file", "specimen", "tube", "marker", "factor"]
        pd.DataFrame(failed, columns=columns).to_csv(out / "failed_stains.csv", index=False)
    return frame


def _times(spec: Specimen) -> dict[str, str]:
    """The manifest's time and control columns of a specimen that has them (ISO 8601)."""
    out = {}
    if spec.draw_time is not None:
        out["draw_time"] = spec.draw_time.isoformat(timespec="minutes")
    if spec.dose_time is not None:
        out["dose_time"] = spec.dose_time.isoformat(timespec="minutes")
    if spec.visit:
        out["visit"] = spec.visit
    if spec.control_lot:
        out["control_lot"] = spec.control_lot
    return out


#: Populations the simulated control lot has targets for (cells/µL): the T-cell subsets that
#: lymphocyte-subset controls assign values to, and the ones counted with the most events (a
#: 15,000-event tube counts B or NK cells with a CV near the lot's SD).
CONTROL_POPULATIONS = ("CD4+ T cells", "CD8+ T cells")


def _write_lot_file(path: Path, truth: pd.DataFrame) -> None:
    """The control lot's targets: each population's true count in the material (the same every
    day), from its reporting tube; SD :data:`.course.CONTROL_CV` of it."""
    from ..panels import Panels
    from .course import CONTROL_CV, CONTROL_LOT

    report = Panels.load().report
    first = truth[truth["specimen"] == truth["specimen"].iloc[0]]
    rows = []
    for pop in CONTROL_POPULATIONS:
        tube = report.get(pop, "T")
        value = float(
            first[(first["population"] == pop) & (first["tube"] == tube)]["absolute_per_uL"].iloc[0]
        )
        rows.append(
            {"lot": CONTROL_LOT, "population": pop, "tube": tube, "mean": round(value, 1),
             "sd": round(CONTROL_CV * value, 1)}
        )  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)


def _events_of(
    events: tuple[int, int] | Mapping[str, tuple[int, int]], tube: str
) -> tuple[int, int]:
    if isinstance(events, Mapping):
        return tuple(events.get(tube, (60_000, 120_000)))  # type: ignore[return-value]
    return events[0], events[1]


def _truth(spec: Specimen, tube: str, labels: np.ndarray, extra: bool = False) -> list[dict]:
    """True events and cells/µL of every population this tube's panel can show; ``extra``: also
    the realistic preset's extra populations, and each count against the analyzer's CBC."""
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
    analyzer = dict(
        zip(("lymphocytes", "monocytes", "neutrophils", "CD45+"), (spec.cbc[k] for k in CBC_ORDER))
    )
    populations = (*REALISTIC_POPULATIONS, *EXTRA_POPULATIONS) if extra else POPULATIONS
    by_name = {p.name: p for p in populations}
    rows = []
    for pop in populations:
        if not set(pop.markers) <= markers:
            continue
        events = sum(per_kind.get(c, 0) for c in pop.cells)
        base_events = sum(per_kind.get(c, 0) for c in by_name[base_pop[pop.base]].cells)
        absolute = events / base_events * bases[pop.base] if base_events else float("nan")
        row = {
            "specimen": spec.specimen,
            "tube": tube,
            "population": pop.name,
            "events": events,
            "absolute_per_uL": round(absolute, 3),
        }
        if extra:
            row["analyzer_absolute_per_uL"] = (
                round(events / base_events * analyzer[pop.base], 3) if base_events else np.nan
            )
        rows.append(row)
    return rows


CBC_ORDER = ("ALC", "AMC", "ANC", "WBC")  # CBC count of each base: lymphocytes, monocytes ...

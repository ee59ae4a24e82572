"""Events of one tube: cells drawn from a specimen's composition, with scatter, doublets, debris,
log-normal marker levels, per-tube instrument drift, spillover and detector noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import CELL_TYPES, SCATTER
from .panels import Panel

DEBRIS, DOUBLET = "debris", "doublet"
MAX_SIGNAL = 262_143.0  # 18-bit detector range


@dataclass(frozen=True)
class Drift:
    """Instrument differences between tubes and days: marker gains, scatter scale and shift."""

    gains: dict[str, float]  # marker -> multiplicative gain
    fsc_scale: float
    ssc_scale: float
    fsc_shift: float

    @classmethod
    def draw(cls, rng: np.random.Generator, markers: list[str], amount: float) -> Drift:
        gains = {m: float(rng.uniform(1 - amount, 1 + amount)) for m in markers}
        return cls(
            gains,
            float(rng.uniform(1 - amount / 2, 1 + amount / 2)),
            float(rng.uniform(1 - amount / 2, 1 + amount / 2)),
            float(rng.uniform(-3000, 3000) * amount / 0.3),
        )


def simulate_tube(
    panel: Panel,
    counts: dict[str, float],
    n_events: int,
    rng: np.random.Generator,
    drift: Drift,
    debris_fraction: float = 0.06,
    doublet_fraction: float = 0.03,
    composition: str = "multinomial",
) -> tuple[np.ndarray, np.ndarray]:
    """(events, labels): float32 events (events x panel channels) and the cell type of each event
    ('debris' and 'doublet' for those). Compositions are cells/µL; events are drawn in proportion:
    ``composition='multinomial'`` samples them (Poisson noise between the specimen and the tube),
    ``'exact'`` gives each cell type its expected number of events (rounded), so the tube holds the
    specimen's composition as designed."""
    names = list(counts)
    p = np.array([counts[n] for n in names], dtype=np.float64)
    n_debris = int(round(n_events * debris_fraction))
    n_doublets = int(round(n_events * doublet_fraction))
    n_cells = n_events - n_debris - n_doublets
    drawn = _composition(n_cells, p / p.sum(), rng, composition)
    labels = np.repeat(np.array(names, dtype=object), drawn)

    markers = [m for _, m in panel.fluorescence]
    fsc, ssc, signal = _cells(labels, markers, rng, drift)
    # doublets: two random cells stuck together (area adds up, height much less)
    a, b = rng.integers(0, labels.size, n_doublets), rng.integers(0, labels.size, n_doublets)
    d_fsc, d_ssc = fsc[a] + fsc[b], ssc[a] + ssc[b]
    d_signal = signal[a] + signal[b]
    d_height = np.maximum(fsc[a], fsc[b]) * rng.normal(0.95, 0.05, n_doublets)
    # debris: small, dim, scattered
    r_fsc = rng.uniform(3_000, 30_000, n_debris)
    r_ssc = rng.lognormal(np.log(6_000), 0.6, n_debris)
    r_signal = rng.lognormal(np.log(150), 0.8, (n_debris, len(markers)))

    height = fsc * rng.normal(0.82, 0.025, fsc.size)
    all_fsc = np.concatenate([fsc, d_fsc, r_fsc])
    all_fsch = np.concatenate([height, d_height, r_fsc * rng.normal(0.82, 0.05, n_debris)])
    all_ssc = np.concatenate([ssc, d_ssc, r_ssc])
    true_fl = np.concatenate([signal, d_signal, r_signal])
    all_labels = np.concatenate(
        [
            labels,
            np.full(n_doublets, DOUBLET, dtype=object),
            np.full(n_debris, DEBRIS, dtype=object),
        ]
    )

    observed = true_fl @ panel.spillover() + rng.normal(0.0, 45.0, true_fl.shape)
    order = rng.permutation(all_labels.size)
    time = np.sort(rng.uniform(0, 120_000, all_labels.size))
    events = np.column_stack([all_fsc, all_fsch, all_ssc, observed, np.zeros(all_labels.size)])
    events[:, :-1] = np.minimum(events[:, :-1], MAX_SIGNAL)  # detectors saturate
    events = events[order]
    events[:, -1] = time
    return events.astype(np.float32), all_labels[order]


def _composition(n: int, p: np.ndarray, rng: np.random.Generator, how: str) -> np.ndarray:
    """Events per cell type, summing to ``n``: sampled, or the expected counts rounded (the
    remainder given to the types with the largest fractional parts)."""
    if how == "multinomial":
        return rng.multinomial(n, p)
    if how != "exact":
        raise ValueError(f"composition must be 'multinomial' or 'exact'; got {how!r}")
    expected = n * p
    drawn = np.floor(expected).astype(np.int64)
    short = n - int(drawn.sum())
    if short > 0:
        drawn[np.argsort(drawn - expected, kind="stable")[:short]] += 1
    return drawn


def scatter_of(
    cell, n: int, rng: np.random.Generator, drift: Drift, width: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(FSC-A, SSC-A) of n cells of one type: normal around its scatter class's means, shifted
    and scaled by the tube's drift, the class's SDs times ``width``."""
    f_mean, f_sd, s_mean, s_sd = SCATTER[cell.scatter]
    fsc = rng.normal(f_mean * drift.fsc_scale + drift.fsc_shift, f_sd * width, n)
    ssc = rng.normal(s_mean * drift.ssc_scale, s_sd * width, n)
    return fsc, ssc


def _cells(labels: np.ndarray, markers: list[str], rng: np.random.Generator, drift: Drift):
    n = labels.size
    fsc, ssc = np.empty(n), np.empty(n)
    signal = np.empty((n, len(markers)))
    for name in np.unique(labels):
        idx = np.flatnonzero(labels == name)
        cell = CELL_TYPES[name]
        fsc[idx], ssc[idx] = scatter_of(cell, idx.size, rng, drift)
        for k, marker in enumerate(markers):
            level = cell.level(marker) * drift.gains[marker]
            autofluorescence = 60.0 if cell.scatter == "lymph" else 180.0
            values = rng.lognormal(np.log(autofluorescence), 0.5, idx.size)
            if level > 0:
                values += rng.lognormal(np.log(level), 0.22, idx.size)
            signal[idx, k] = values
    return np.clip(fsc, 1_000, 262_143), np.clip(ssc, 500, 262_143), signal

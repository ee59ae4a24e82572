"""Tubes of the ``realistic`` preset: what makes real blood hard for automatic gates.

The whim-trial and healthy presets are kind to gates (tight log-normal spreads, intermediate and
negative 40x apart, debris far from the lymphocytes). Here, as in real panels:

- marker spreads of sigma 0.35-0.55 (natural log) and wider for dim populations (+0.15);
- dim and intermediate levels only ~3-6x the negative (CCR7 on naive T cells forms a shoulder on
  the negative peak rather than a second peak);
- continua for CCR7, CD62L, CD27, CD45RA and IgD: a fraction of the positive cells lies
  log-uniformly between the negative and their positive level (down-regulating cells), and a
  fraction of the negative lymphocytes likewise up to the positive level;
- photon (Poisson-like) noise on every detector, so compensation leaves spread behind;
- more debris (0.6-0.9 debris events per lymphocyte event, 6 % of it CD45 dim), its FSC
  centred at 0.585 of the lymphocytes' and overlapping their low-FSC edge: the FSC density dip
  between debris and lymphocytes is about 0.7-0.8 of the smaller peak; wider scatter clusters;
- occasional failed stains: with probability :data:`FAILED_STAIN_RATE` per tube one marker's
  staining is weak (its levels divided by 5-10), listed in ``failed_stains.csv``.

Truth is the cell type of each event: a cell that a continuum puts below a gate's threshold is
still counted in its population, as the cell it is.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .cells import CELL_TYPES, DIM, INT, POS, SCATTER, CellType
from .panels import Panel
from .tube import scatter_of

# ln-scale SD of each marker's positive cells (most 0.35-0.55 as in real panels)
SIGMA: dict[str, float] = {
    "CD45": 0.35,
    "CD3": 0.4,
    "CD4": 0.35,
    "CD8": 0.45,
    "CD19": 0.4,
    "CD56": 0.5,
    "CD16": 0.55,
    "CD14": 0.45,
    "HLA-DR": 0.5,
    "CD45RA": 0.45,
    "CCR7": 0.55,
    "CD62L": 0.5,
    "CD27": 0.5,
    "IgD": 0.55,
    "IgM": 0.5,
}
DEFAULT_SIGMA = 0.45
DIM_SIGMA_EXTRA = 0.15  # dim populations (level <= DIM_BELOW) spread wider
DIM_BELOW = 1_000.0

# Levels that differ from the kind presets' (cells.py): dim populations ~3-4x the negative
# (lymphocyte autofluorescence ~60 plus detector noise), CCR7 on naive and central memory T
# cells ~5x, CD62L and CD27 lower than the bright markers.
DIM_LEVEL = 250.0
LEVELS: dict[tuple[str, float], float] = {
    ("CCR7", INT): 380.0,
    ("CD62L", POS): 2_500.0,
    ("CD27", POS): 3_000.0,
}

# marker -> (fraction of positive cells spread log-uniformly from CONTINUUM_LOW up to their level,
# fraction of negative lymphocytes spread log-uniformly from CONTINUUM_LOW up to CONTINUUM_HIGH)
CONTINUUM: dict[str, tuple[float, float]] = {
    "CCR7": (0.25, 0.10),
    "CD62L": (0.20, 0.10),
    "CD27": (0.15, 0.08),
    "CD45RA": (0.12, 0.08),
    "IgD": (0.20, 0.08),
}
CONTINUUM_LOW = 20.0
CONTINUUM_HIGH = {
    "CCR7": 380.0,
    "CD62L": 2_500.0,
    "CD27": 3_000.0,
    "CD45RA": 7_000.0,
    "IgD": 7_000.0,
}

SCATTER_WIDTH = 1.3  # scatter SDs of every cluster x this
LYMPH_LIKE = ("lymph", "baso", "pdc")  # low autofluorescence
# Debris events per lymphocyte event (of the tube's expected composition): the debris peak's
# height relative to the lymphocytes' sets the valley between them, so it is kept in proportion.
DEBRIS_PER_LYMPHOCYTE = (0.6, 0.9)
DEBRIS_FSC = 0.585  # debris FSC median, relative to the lymphocytes' (ln SD DEBRIS_FSC_SIGMA)
DEBRIS_FSC_SIGMA = 0.3
DEBRIS_CD45 = 0.06  # fraction of debris with CD45 on it (fragments of leukocytes)
DOUBLET_FRACTION = (0.02, 0.05)
DETECTOR_SD = 45.0  # electronic noise
PHOTON = 3.0  # variance per unit of signal: photoelectron statistics of each detector
FAILED_STAIN_RATE = 1 / 30  # per tube
FAILED_STAIN_FACTOR = (5.0, 10.0)  # the failed marker's levels divided by this


def level(cell: CellType, marker: str) -> float:
    """The median level of a marker on a cell type in the realistic preset."""
    base = cell.level(marker)
    if base == DIM:
        return DIM_LEVEL
    return LEVELS.get((marker, base), base)


def sigma(marker: str, level_: float) -> float:
    s = SIGMA.get(marker, DEFAULT_SIGMA)
    return s + DIM_SIGMA_EXTRA if level_ <= DIM_BELOW else s


def draw_failed_stain(
    rng: np.random.Generator, markers: list[str], rate: float = FAILED_STAIN_RATE
) -> dict[str, float]:
    """{marker: factor} for a tube whose marker stained weakly (levels / factor), else {}."""
    if rng.random() >= rate:
        return {}
    marker = str(markers[int(rng.integers(len(markers)))])
    return {marker: float(rng.uniform(*FAILED_STAIN_FACTOR))}


def _loguniform(rng: np.random.Generator, low: float, high: float | np.ndarray, n: int):
    lo = np.log(low)
    hi = np.log(np.maximum(high, low))
    return np.exp(lo + (hi - lo) * rng.random(n))


def cells(
    labels: np.ndarray,
    markers: list[str],
    rng: np.random.Generator,
    drift,
    weak: Mapping[str, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FSC-A, SSC-A, true fluorescence) of the cells of a tube."""
    n = labels.size
    fsc, ssc = np.empty(n), np.empty(n)
    signal = np.empty((n, len(markers)))
    for name in np.unique(labels):
        idx = np.flatnonzero(labels == name)
        cell = CELL_TYPES[name]
        fsc[idx], ssc[idx] = scatter_of(cell, idx.size, rng, drift, SCATTER_WIDTH)
        lymphoid = cell.scatter == "lymph"
        for k, marker in enumerate(markers):
            base = level(cell, marker)
            gain = drift.gains[marker] / weak.get(marker, 1.0)
            autofluorescence = 60.0 if cell.scatter in LYMPH_LIKE else 180.0
            values = rng.lognormal(np.log(autofluorescence), 0.5, idx.size)
            spread = CONTINUUM.get(marker)
            if base > 0:
                on = rng.lognormal(np.log(base * gain), sigma(marker, base), idx.size)
                if spread is not None:
                    down = np.flatnonzero(rng.random(idx.size) < spread[0])
                    on[down] = _loguniform(rng, CONTINUUM_LOW, base * gain, down.size)
                values += on
            elif spread is not None and lymphoid:
                up = np.flatnonzero(rng.random(idx.size) < spread[1])
                values[up] += _loguniform(
                    rng, CONTINUUM_LOW, CONTINUUM_HIGH[marker] * gain, up.size
                )
            signal[idx, k] = values
    return np.clip(fsc, 1_000, 262_143), np.clip(ssc, 500, 262_143), signal


def debris(
    n: int, markers: list[str], rng: np.random.Generator, drift, weak: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(FSC-A, FSC-H, SSC-A, fluorescence) of debris: small, mostly dim, reaching into the
    low-FSC edge of the lymphocytes; some of it carries CD45 (leukocyte fragments)."""
    lymph_fsc = SCATTER["lymph"][0] * drift.fsc_scale + drift.fsc_shift
    fsc = rng.lognormal(np.log(DEBRIS_FSC * lymph_fsc), DEBRIS_FSC_SIGMA, n)
    height = fsc * rng.normal(0.82, 0.05, n)
    ssc = rng.lognormal(np.log(7_000.0), 0.6, n) * drift.ssc_scale
    signal = rng.lognormal(np.log(120.0), 0.9, (n, len(markers)))
    if "CD45" in markers:
        k = markers.index("CD45")
        with_cd45 = np.flatnonzero(rng.random(n) < DEBRIS_CD45)
        gain = drift.gains["CD45"] / weak.get("CD45", 1.0)
        signal[with_cd45, k] += rng.lognormal(np.log(800.0 * gain), 0.9, with_cd45.size)
    return np.clip(fsc, 1_000, 262_143), np.clip(height, 800, 262_143), ssc, signal


def simulate_tube(
    panel: Panel,
    counts: dict[str, float],
    n_events: int,
    rng: np.random.Generator,
    drift,
    composition: str = "multinomial",
    weak: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(events, labels) of one tube of the realistic preset; see :func:`.tube.simulate_tube`.
    ``weak``: marker -> factor its staining is weaker by (a failed stain)."""
    from .tube import DEBRIS, DOUBLET, MAX_SIGNAL, _composition

    weak = dict(weak or {})
    names = list(counts)
    p = np.array([counts[n] for n in names], dtype=np.float64)
    lymph_share = sum(v for k, v in counts.items() if CELL_TYPES[k].scatter == "lymph") / float(
        p.sum()
    )
    debris_share = rng.uniform(*DEBRIS_PER_LYMPHOCYTE) * lymph_share
    n_doublets = int(round(n_events * rng.uniform(*DOUBLET_FRACTION)))
    n_debris = int(round((n_events - n_doublets) * debris_share / (1 + debris_share)))
    n_cells = n_events - n_debris - n_doublets
    drawn = _composition(n_cells, p / p.sum(), rng, composition)
    labels = np.repeat(np.array(names, dtype=object), drawn)

    markers = [m for _, m in panel.fluorescence]
    fsc, ssc, signal = cells(labels, markers, rng, drift, weak)
    a, b = rng.integers(0, labels.size, n_doublets), rng.integers(0, labels.size, n_doublets)
    d_fsc, d_ssc = fsc[a] + fsc[b], ssc[a] + ssc[b]
    d_signal = signal[a] + signal[b]
    d_height = np.maximum(fsc[a], fsc[b]) * rng.normal(0.95, 0.05, n_doublets)
    r_fsc, r_height, r_ssc, r_signal = debris(n_debris, markers, rng, drift, weak)

    height = fsc * rng.normal(0.82, 0.025, fsc.size)
    all_fsc = np.concatenate([fsc, d_fsc, r_fsc])
    all_fsch = np.concatenate([height, d_height, r_height])
    all_ssc = np.concatenate([ssc, d_ssc, r_ssc])
    true_fl = np.concatenate([signal, d_signal, r_signal])
    all_labels = np.concatenate(
        [
            labels,
            np.full(n_doublets, DOUBLET, dtype=object),
            np.full(n_debris, DEBRIS, dtype=object),
        ]
    )
    detected = true_fl @ panel.spillover()
    noise_sd = np.sqrt(DETECTOR_SD**2 + PHOTON * np.maximum(detected, 0.0))
    observed = detected + rng.standard_normal(detected.shape) * noise_sd
    order = rng.permutation(all_labels.size)
    time = np.sort(rng.uniform(0, 120_000, all_labels.size))
    events = np.column_stack([all_fsc, all_fsch, all_ssc, observed, np.zeros(all_labels.size)])
    events[:, :-1] = np.minimum(events[:, :-1], MAX_SIGNAL)
    events = events[order]
    events[:, -1] = time
    return events.astype(np.float32), all_labels[order]

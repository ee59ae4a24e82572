"""Specimens with known truth: per-µL counts of every cell type and the CBC, for a preset.

``whim-trial``: 3 patients x baseline and peak, drawn so that the mean (exactly) and SEM (closely)
of the absolute counts over patients reproduce Table 1 of the plerixafor study, and so that the
paired t test of baseline vs peak is significant on exactly the rows the study marks, with margin.
``healthy``: counts inside the study's reference intervals.
``realistic``: healthy donors and WHIM-like baseline and peak specimens with the cell types a real
lymphocyte gate holds besides T, B and NK cells (NKT, CD56- NK, other lymphocytes), basophils and
dendritic cells, and an analyzer CBC that differs from the true counts by the analyzer's CV (the
tubes themselves get the realistic marker spreads, continua, debris and failed stains of
:mod:`.realistic`).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..resources import data_path
from .cells import CD4_T, CD8_T, LYMPH, LYMPHOID, MONO, NK, NKT, OTHER_LEUKOCYTES, B

PRESETS = ("whim-trial", "healthy", "realistic", "course", "controls")
CBC_COUNTS = ("WBC", "ANC", "ALC", "AMC")


@dataclass
class Specimen:
    """One blood draw: who, when, true cells/µL per cell type, and the CBC (cells/µL)."""

    specimen: str
    patient: str
    timepoint: str
    counts: dict[str, float]  # cell type -> cells/µL (the B/NK tube's view of B subsets)
    b_total_t_tube: float  # B cells/µL as the T tube's sample sees them (tubes disagree)
    anc: float
    eos: float
    events: dict[str, int] = field(default_factory=dict)  # tube -> events to acquire
    # the hematology analyzer's CBC (WBC, ANC, ALC, AMC), when it differs from the true counts
    # (realistic preset); None: the analyzer gives the true counts
    analyzer: dict[str, float] | None = None
    # when and what (course and controls presets): the manifest's time columns
    draw_time: datetime | None = None
    dose_time: datetime | None = None
    visit: str = ""
    control_lot: str = ""

    def tube_counts(self, tube: str) -> dict[str, float]:
        """Cell types/µL in one tube: the T tube's B cells are scaled to its own B total."""
        counts = dict(self.counts)
        if tube == "T":
            b_sum = sum(counts[b] for b in B)
            for b in B:
                counts[b] *= self.b_total_t_tube / b_sum
        counts["neutrophil"] = self.anc
        counts["eosinophil"] = self.eos
        return counts

    @property
    def alc(self) -> float:
        counts = self.tube_counts("T")
        return sum(counts.get(c, 0.0) for c in LYMPHOID)

    @property
    def amc(self) -> float:
        return sum(self.counts[c] for c in MONO)

    @property
    def wbc(self) -> float:
        other = sum(self.counts.get(c, 0.0) for c in OTHER_LEUKOCYTES)
        return self.alc + self.amc + self.anc + self.eos + other

    @property
    def true_cbc(self) -> dict[str, float]:
        return {"WBC": self.wbc, "ANC": self.anc, "ALC": self.alc, "AMC": self.amc}

    @property
    def cbc(self) -> dict[str, float]:
        """The CBC as the analyzer reports it (what the manifest gives)."""
        return dict(self.analyzer) if self.analyzer is not None else self.true_cbc


def table1() -> dict[str, dict[str, float]]:
    """Table 1 rows (population -> numbers, cells/µL) from the bundled reference file."""
    return {pop: dict(row) for pop, row in _table1().items()}


@functools.cache
def _table1() -> dict[str, dict[str, float]]:
    path = data_path("reference", "whim_plerixafor_table1.csv")
    with path.open(encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        out = {}
        for r in rows:
            out[r["population"]] = {
                k: float(r[k]) if r[k] else 0.0
                for k in (
                    "baseline_mean",
                    "baseline_sem",
                    "peak_mean",
                    "peak_sem",
                    "reference_low",
                    "reference_high",
                )
            }
    return out


# The whim-trial design. With 3 patients, scores with mean 0 and sample SD 1 lie on a circle:
# z(phi)_k = (2/sqrt(3)) * cos(phi + 2*pi*k/3), k = 0, 1, 2 (patients). Counts m + s*sqrt(3)*z(phi)
# have mean m and SEM s, and two such triplets correlate as cos(phi1 - phi2) across patients, which
# sets the paired t of baseline vs peak: t = (m_peak - m_base) / |s_p*e^(i*phi_p) - s_b*e^(i*phi_b)|.
# Per leaf population (the ones drawn; CD4+ T = CD4 naive + CD4 memory, CD8+ T likewise and monocytes
# = classical + inflammatory are sums): (baseline phase, peak phase) in degrees and factors on the
# published (baseline, peak) SEM. Solved offline with scipy SLSQP (lexicographic max-min): every
# Table 1 row's t lies as far from t(0.975, 2) = 4.303 as the published means and SEMs allow, on the
# side of the paper's marks (P < .05: CD4+ T, CD4 naive, CD4 memory, CD8 naive), with every row's
# SEM within 6 % of Table 1 (CD4 effector memory 10 %: even at correlation -1 its published SEMs give
# t = 4.10) and every count within the limits below. Truth-level t: CD4+ T 9.3, CD4 naive 7.3,
# CD4 memory 7.7, CD8 naive 5.4 (marked; CD8 naive cannot go higher while CD8+ T stays below 3.5);
# CD4 effector memory 3.7, CD8+ T 3.4, all others <= 2.8. Rotating a whole block by one angle keeps
# every SEM and t (it changes which patient is high and how high), so each specimen set draws, per
# block, a rotation among those that keep every count inside the limits. Blocks share no row.
_DESIGN: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "CD4": {
        "CD4 naive": (352.8, 352.8, 0.940, 1.057),
        "CD4 memory": (33.5, 47.6, 1.0, 0.996),
        "CD4 central memory": (3.0, 2.5, 1.0, 1.0),
        "CD4 effector memory": (56.0, 236.0, 1.092, 1.100),
    },
    "CD8": {
        "CD8 naive": (358.9, 321.6, 1.060, 0.959),
        "CD8 memory": (86.1, 281.3, 1.058, 1.060),
        "CD8 central memory": (171.2, 351.2, 1.0, 1.0),
        "CD8 effector memory": (328.0, 315.1, 1.0, 1.024),
    },
    "NK": {"NK cells": (0.0, 180.0, 1.0, 1.0)},
    "B": {
        "B cells": (130.5, 358.5, 1.0, 1.0),  # the T tube's total follows its CD27- B cells
        "memory B cells": (14.4, 315.1, 0.972, 1.025),
        "CD27- B cells": (130.5, 358.5, 1.060, 0.997),
        "transitional B cells": (135.6, 358.1, 0.943, 0.993),
        "immature B cells": (205.0, 25.0, 0.943, 0.989),
    },
    "monocytes": {
        # aligned at baseline (SEM 5 + 1 = 6), 74 degrees apart at peak (SEM of the sum 67)
        "classical monocytes": (0.0, 180.0, 1.0, 1.0),
        "inflammatory monocytes": (0.0, 254.3, 1.0, 1.0),
    },
}
# SEM (cells/µL) given to rows published as "<1" (mean 0.5): counts stay between 0.1 and 0.9
BELOW_ONE_SEM = {
    ("CD8 central memory", "baseline"): 0.2,
    ("CD8 central memory", "peak"): 0.2,
    ("immature B cells", "baseline"): 0.2,
}
MIN_FRACTION = 0.10  # every drawn count >= this fraction of its Table 1 mean
MIN_COUNT = 0.3  # cells/µL: and >= this (a few dozen events at baseline), but in "<1" rows
# (part, whole, least part/whole, timepoints), parts and wholes as signed sums of populations: the
# memory T cells outside CM and EM and the CD27- B cells outside transitional and immature (IgD+
# IgM-) stay a population, and the B tube's gates find a negative and a positive side (IgD- =
# immature among CD27- B cells, CD27+ = memory among B cells) in the few B cells at baseline.
_SHARES: tuple[tuple[dict[str, int], dict[str, int], float, tuple[str, ...]], ...] = (
    (
        {"CD4 memory": 1, "CD4 central memory": -1, "CD4 effector memory": -1},
        {"CD4 memory": 1},
        0.08,
        ("baseline", "peak"),
    ),
    (
        {"CD8 memory": 1, "CD8 central memory": -1, "CD8 effector memory": -1},
        {"CD8 memory": 1},
        0.08,
        ("baseline", "peak"),
    ),
    (
        {"CD27- B cells": 1, "transitional B cells": -1, "immature B cells": -1},
        {"CD27- B cells": 1},
        0.08,
        ("baseline", "peak"),
    ),
    ({"immature B cells": 1}, {"CD27- B cells": 1}, 0.025, ("baseline",)),
    ({"memory B cells": 1}, {"memory B cells": 1, "CD27- B cells": 1}, 0.05, ("baseline",)),
    ({"memory B cells": 1}, {"memory B cells": 1, "CD27- B cells": 1}, 0.015, ("peak",)),
)
TIMEPOINTS = ("baseline", "peak")


def _block_counts(block: str, rotation: float) -> dict[tuple[str, str], np.ndarray]:
    """(population, timepoint) -> cells/µL of patients 1-3 for one design block rotated by
    ``rotation`` degrees."""
    t1 = _table1()
    k = 2 * math.pi * np.arange(3) / 3
    out = {}
    for pop, (phi_b, phi_p, f_b, f_p) in _DESIGN[block].items():
        for tp, phi, f in (("baseline", phi_b, f_b), ("peak", phi_p, f_p)):
            sem = t1[pop][f"{tp}_sem"] or BELOW_ONE_SEM[pop, tp]
            out[pop, tp] = t1[pop][f"{tp}_mean"] + 2 * f * sem * np.cos(
                math.radians(phi + rotation) + k
            )
    return out


def _allowed(counts: dict[tuple[str, str], np.ndarray]) -> bool:
    """Whether every count is >= MIN_FRACTION of its mean and >= MIN_COUNT, and every share in
    _SHARES holds."""
    t1 = _table1()
    for (pop, tp), v in counts.items():
        least = MIN_FRACTION * t1[pop][f"{tp}_mean"]
        if (pop, tp) not in BELOW_ONE_SEM:
            least = max(least, MIN_COUNT)
        if (v < least).any():
            return False
    for part, whole, least, timepoints in _SHARES:
        for tp in timepoints:
            if (next(iter(whole)), tp) not in counts:
                continue  # another block
            p = sum(k * counts[pop, tp] for pop, k in part.items())
            w = sum(k * counts[pop, tp] for pop, k in whole.items())
            if (p < least * w).any():
                return False
    return True


@functools.cache
def _rotations(block: str) -> np.ndarray:
    """Rotations (degrees, 0.5 degree steps) that keep a block's counts allowed."""
    grid = np.arange(0.0, 360.0, 0.5)
    ok = np.array([_allowed(_block_counts(block, r)) for r in grid])
    if not ok.any():
        raise RuntimeError(f"no allowed rotation of design block {block!r}")
    return grid[ok]


def _draw(rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    """(leaf population, timepoint) -> cells/µL of patients 1-3, one allowed rotation per block."""
    out = {}
    for block in _DESIGN:
        rotation = float(rng.choice(_rotations(block)))
        order = rng.permutation(3)
        out.update({key: v[order] for key, v in _block_counts(block, rotation).items()})
    return out


def _leaves(values: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """Cell types/µL from Table 1 populations of one specimen."""
    c: dict[str, float] = {}
    for lin, cells in (("CD4", CD4_T), ("CD8", CD8_T)):
        naive, memory = values[f"{lin} naive"], values[f"{lin} memory"]
        cm, em = values[f"{lin} central memory"], values[f"{lin} effector memory"]
        rest = max(memory - cm - em, 0.02 * memory)
        temra = rng.uniform(0.05, 0.12)
        split = rng.uniform(0.4, 0.6)
        c.update(
            zip(
                cells,
                (naive * (1 - temra), naive * temra, cm, em, rest * split, rest * (1 - split)),
            )
        )
    c["t_dn"] = 0.04 * (values["CD4 naive"] + values["CD4 memory"])
    bright = rng.uniform(0.06, 0.12)
    c["nk_bright"], c["nk_dim"] = values["NK cells"] * bright, values["NK cells"] * (1 - bright)
    trans, imm = values["transitional B cells"], values["immature B cells"]
    c["b_memory"] = values["memory B cells"]
    c["b_transitional"], c["b_immature"] = trans, imm
    c["b_igd_only"] = max(values["CD27- B cells"] - trans - imm, 0.05 * values["CD27- B cells"])
    infl = values["inflammatory monocytes"]
    share = rng.uniform(0.5, 0.7)
    c["mono_classical"] = values["classical monocytes"]
    c["mono_intermediate"], c["mono_nonclassical"] = infl * share, infl * (1 - share)
    return c


def _b_tube_view(counts: dict[str, float], b_total_t_tube: float) -> dict[str, float]:
    """Scale the B subsets (cells/µL) so that the B/NK tube, whose lymphocytes hold these subsets
    instead of the T tube's B total, gives them back when counted against the ALC."""
    b_sum = sum(counts[b] for b in B)
    others = sum(counts[c] for c in LYMPH if c not in B)
    factor = others / (others + b_total_t_tube - b_sum)
    return {c: v * factor if c in B else v for c, v in counts.items()}


def whim_trial(rng: np.random.Generator) -> list[Specimen]:
    """3 patients x (baseline, peak) reproducing Table 1: means exact, SEMs close, and the paired
    t test of baseline vs peak significant (P < .05) on exactly the rows the paper marks."""
    drawn = _draw(rng)
    leaves = sorted({pop for pop, _ in drawn})
    # P3's baseline ANC was 735/µL; the others are severely neutropenic at baseline, and the dose
    # raised ANC at least 2-fold and to >= 500/µL at peak.
    base_anc = [rng.uniform(250, 450), rng.uniform(300, 500), 735.0]
    out = []
    for timepoint in TIMEPOINTS:
        for i in range(3):
            values = {pop: float(drawn[pop, timepoint][i]) for pop in leaves}
            anc = base_anc[i] * (1.0 if timepoint == "baseline" else rng.uniform(2.2, 3.5))
            specimen = f"P{i + 1}-{timepoint}"
            out.append(
                Specimen(
                    specimen,
                    f"P{i + 1}",
                    timepoint,
                    _b_tube_view(_leaves(values, rng), values["B cells"]),
                    b_total_t_tube=values["B cells"],
                    anc=anc,
                    eos=rng.uniform(10, 40) * (1 if timepoint == "baseline" else 2.5),
                )
            )
    return out


def healthy(rng: np.random.Generator, n: int = 3) -> list[Specimen]:
    """``n`` healthy donors: every Table 1 population inside the study's reference interval."""
    t1 = table1()

    def inside(pop: str, lo: float | None = None, hi: float | None = None) -> float:
        r = t1[pop]
        a = r["reference_low"] + 0.15 * (r["reference_high"] - r["reference_low"])
        b = r["reference_high"] - 0.15 * (r["reference_high"] - r["reference_low"])
        a, b = max(a, lo if lo is not None else a), min(b, hi if hi is not None else b)
        return float(rng.uniform(a, max(a, b)))

    out = []
    for i in range(n):
        v: dict[str, float] = {}
        for lin in ("CD4", "CD8"):
            v[f"{lin} naive"] = inside(f"{lin} naive")
            v[f"{lin} central memory"] = inside(f"{lin} central memory")
            v[f"{lin} effector memory"] = inside(f"{lin} effector memory")
            total = t1[f"{lin}+ T cells"]
            v[f"{lin} memory"] = inside(
                f"{lin} memory",
                lo=v[f"{lin} central memory"] + v[f"{lin} effector memory"] + 10,
                hi=total["reference_high"] * 0.9 - v[f"{lin} naive"],
            )
        v["NK cells"] = inside("NK cells")
        v["B cells"] = inside("B cells")
        v["memory B cells"] = inside("memory B cells")
        v["transitional B cells"] = inside("transitional B cells")
        v["immature B cells"] = inside("immature B cells")
        v["CD27- B cells"] = inside(
            "CD27- B cells", lo=v["transitional B cells"] + v["immature B cells"] + 5
        )
        v["classical monocytes"] = inside("classical monocytes")
        v["inflammatory monocytes"] = inside("inflammatory monocytes")
        out.append(
            Specimen(
                f"H{i + 1}",
                f"H{i + 1}",
                "healthy",
                _leaves(v, rng),
                b_total_t_tube=v["B cells"],
                anc=rng.uniform(2000, 5000),
                eos=rng.uniform(60, 250),
            )
        )
    return out


# Analyzer imprecision of the realistic preset's CBC: cytowhim.reporting.DEFAULT_CBC_CV (typical
# within-run CVs of 5-part-differential analyzers), repeated here so the simulator stays apart.
ANALYZER_CV = {"WBC": 0.03, "ANC": 0.05, "ALC": 0.06, "AMC": 0.12}
REALISTIC_KINDS = ("healthy", "baseline", "peak")  # specimen i is of kind i % 3
# Table 1 populations drawn for a WHIM-like specimen (the rest are sums of these)
_LEAF_POPULATIONS = (
    "CD4 naive",
    "CD4 memory",
    "CD4 central memory",
    "CD4 effector memory",
    "CD8 naive",
    "CD8 memory",
    "CD8 central memory",
    "CD8 effector memory",
    "NK cells",
    "B cells",
    "memory B cells",
    "CD27- B cells",
    "transitional B cells",
    "immature B cells",
    "classical monocytes",
    "inflammatory monocytes",
)


def _whim_like(rng: np.random.Generator, timepoint: str) -> dict[str, float]:
    """Table 1 leaf populations of one WHIM-like specimen: log-normal around the study's mean
    with the between-patient CV of Table 1 (SEM x sqrt(3) / mean, kept within 15-60 %)."""
    t1 = _table1()
    out = {}
    for pop in _LEAF_POPULATIONS:
        mean, sem = t1[pop][f"{timepoint}_mean"], t1[pop][f"{timepoint}_sem"]
        cv = float(np.clip(sem * math.sqrt(3) / mean, 0.15, 0.6)) if sem else 0.4
        out[pop] = mean * float(rng.lognormal(-0.5 * cv**2, cv))
    for lin in ("CD4", "CD8"):  # memory holds central and effector memory, and a rest
        parts = out[f"{lin} central memory"] + out[f"{lin} effector memory"]
        out[f"{lin} memory"] = max(out[f"{lin} memory"], 1.15 * parts)
    out["CD27- B cells"] = max(
        out["CD27- B cells"], 1.15 * (out["transitional B cells"] + out["immature B cells"])
    )
    return out


def _with_extra_cells(counts: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """Add what a real lymphocyte gate holds besides T, B and NK cells, and the other leukocytes
    of the realistic preset (cells/µL): NKT cells 1-6 % of T cells, CD56- NK cells 3-15 % of NK
    cells, other lymphocytes 0.3-6 % of lymphocytes, basophils, plasmacytoid and myeloid DCs."""
    c = dict(counts)
    t_cells = sum(c[k] for k in (*CD4_T, *CD8_T, "t_dn"))
    nkt = t_cells * rng.uniform(0.01, 0.06)
    shares = rng.dirichlet([2.0, 10.0, 3.0, 5.0])  # CD4+, CD8+ memory, CD8+ CD45RA+, CD4-CD8-
    c.update({name: nkt * float(f) for name, f in zip(NKT, shares)})
    c["nk_cd56neg"] = sum(c[k] for k in NK) * rng.uniform(0.03, 0.15)
    lymph = sum(c[k] for k in (*LYMPH, *NKT, "nk_cd56neg"))
    share = rng.uniform(0.003, 0.06)  # of all lymphocytes
    c["lymph_other"] = lymph * share / (1 - share)
    amc = sum(c[k] for k in MONO)
    c["basophil"] = (lymph + amc) * rng.uniform(0.003, 0.015)
    c["pdc"] = lymph * rng.uniform(0.002, 0.008)
    c["mdc"] = amc * rng.uniform(0.02, 0.06)
    return c


def _analyzer(true: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """The analyzer's CBC: each count off the true one by its CV (normal errors, never < 1 %)."""
    return {
        k: true[k] * max(0.01, 1.0 + ANALYZER_CV[k] * float(rng.standard_normal()))
        for k in CBC_COUNTS
    }


def realistic(rng: np.random.Generator, n: int = 3) -> list[Specimen]:
    """``n`` specimens R1..Rn, in turn a healthy donor, a WHIM-like baseline and a WHIM-like peak
    (timepoint ``healthy``, ``baseline``, ``peak``; each its own patient), with NKT cells, CD56-
    NK cells, other lymphocytes, basophils and dendritic cells, and the analyzer's CBC."""
    out = []
    for i in range(n):
        kind = REALISTIC_KINDS[i % len(REALISTIC_KINDS)]
        if kind == "healthy":
            donor = healthy(rng, 1)[0]
            counts, b_total, anc, eos = donor.counts, donor.b_total_t_tube, donor.anc, donor.eos
        else:
            values = _whim_like(rng, kind)
            counts = _leaves(values, rng)
            b_total = values["B cells"]
            anc = rng.uniform(250, 750) * (1.0 if kind == "baseline" else rng.uniform(2.2, 3.5))
            eos = rng.uniform(10, 40) * (1 if kind == "baseline" else 2.5)
        name = f"R{i + 1}"
        spec = Specimen(
            name,
            name,
            kind,
            _with_extra_cells(counts, rng),
            b_total_t_tube=b_total,
            anc=anc,
            eos=eos,
        )
        spec.analyzer = _analyzer(spec.true_cbc, rng)
        out.append(spec)
    return out


def specimens(preset: str, rng: np.random.Generator, n: int = 3) -> list[Specimen]:
    if preset == "whim-trial":
        return whim_trial(rng)
    if preset == "healthy":
        return healthy(rng, n)
    if preset == "realistic":
        return realistic(rng, n)
    if preset in ("course", "controls"):
        from . import course

        return course.course(rng) if preset == "course" else course.controls(rng, n)
    raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")

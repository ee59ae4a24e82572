"""Specimens with known truth: per-µL counts of every cell type and the CBC, for a preset.

``whim-trial``: 3 patients x baseline and peak, drawn so that the mean (exactly) and SEM (closely)
of the absolute counts over patients reproduce Table 1 of the plerixafor study. ``healthy``:
counts inside the study's reference intervals.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field

import numpy as np

from ..resources import data_path
from .cells import CD4_T, CD8_T, LYMPH, MONO, B

PRESETS = ("whim-trial", "healthy")


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
        return sum(self.tube_counts("T")[c] for c in LYMPH)

    @property
    def amc(self) -> float:
        return sum(self.counts[c] for c in MONO)

    @property
    def wbc(self) -> float:
        return self.alc + self.amc + self.anc + self.eos


def table1() -> dict[str, dict[str, float]]:
    """Table 1 rows (population -> numbers) from the bundled reference file."""
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


def _z_triplet(rng: np.random.Generator) -> np.ndarray:
    """Three scores with mean 0 and sample SD 1 (so values m + s*sqrt(3)*z have mean m, SEM s),
    none below -0.6 so that every count stays positive when mean >= SEM."""
    for _ in range(1000):
        theta = rng.uniform(0, 2 * math.pi)
        z = (2 / math.sqrt(3)) * np.cos(theta + 2 * math.pi * np.arange(3) / 3)
        if z.min() >= -0.6:
            return z
    return np.array([2 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)])


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


def whim_trial(rng: np.random.Generator) -> list[Specimen]:
    """3 patients x (baseline, peak) matching Table 1's means and SEMs."""
    t1 = table1()
    out = []
    for timepoint in ("baseline", "peak"):
        z = _z_triplet(rng)
        for i in range(3):
            values = {}
            for pop, row in t1.items():
                m, s = row[f"{timepoint}_mean"], row[f"{timepoint}_sem"]
                values[pop] = max(m + s * math.sqrt(3) * z[i], 0.05 * m)
            # P3's baseline ANC was 735/µL; the others are severely neutropenic at baseline, and
            # the dose raised ANC at least 2-fold and to >= 500/µL at peak.
            base_anc = [rng.uniform(250, 450), rng.uniform(300, 500), 735.0][i]
            anc = base_anc if timepoint == "baseline" else base_anc * rng.uniform(2.2, 3.5)
            specimen = f"P{i + 1}-{timepoint}"
            out.append(
                Specimen(
                    specimen,
                    f"P{i + 1}",
                    timepoint,
                    _leaves(values, rng),
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


def specimens(preset: str, rng: np.random.Generator, n: int = 3) -> list[Specimen]:
    if preset == "whim-trial":
        return whim_trial(rng)
    if preset == "healthy":
        return healthy(rng, n)
    raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")

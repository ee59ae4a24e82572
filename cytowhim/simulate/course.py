"""Specimens over time: one patient's 6-month plerixafor course, and a month of daily controls.

``course``: one WHIM-like patient (W1) as the study followed its patients: each month (month 0
before the first dose, then months 1-6) blood drawn just before the morning dose and 3, 6 and 9
hours after it, and once 35 days after stopping. The counts move from the patient's baseline
towards its peak by the fraction :func:`response` gives (highest 3 hours after the dose, the
pre-dose trough rising slowly over the months, back to baseline after stopping). Timepoints:
``baseline`` (month 0, before the dose), ``peak`` (month 6, 3 hours after it), else
``month M +Hh``; ``visit`` is ``month M`` (or ``35 d off``); ``draw_time`` and ``dose_time``
are written to the manifest.

``controls``: ``n`` (default 30) days of control material (lot ``CTL-SIM``: a stabilised
healthy-donor blood, the same cells every day) with the analyzer's CBC varying by 3 % a day,
and on days 17 and 18 an ALC calibration error of +20 % (about 2.5 SD of the lot's targets):
a planted Westgard 2-2s violation. :func:`lot_targets` gives the lot file (target = the
material's assigned count, SD 8 %).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from .cohort import Specimen, _b_tube_view, _leaves, _whim_like, healthy

START = datetime(2026, 1, 5, 7, 45)  # the first draw, before the first dose at 08:00
HOURS = (0, 3, 6, 9)
CONTROL_LOT = "CTL-SIM"
CONTROL_CV = 0.08  # the lot's SD as a fraction of its target
PLANTED_DAYS = (17, 18)  # 1-based days with the ALC calibration error
PLANTED_FACTOR = 1.20


def response(month: int, hour: float, on_drug: bool = True) -> float:
    """Fraction of the way from baseline to peak counts (0 = baseline, 1 = peak)."""
    if not on_drug:
        return 0.05  # 35 days after stopping: back near baseline
    trough = 0.0 if month == 0 else 0.1 + 0.04 * min(month, 6)
    if hour <= 0:
        return trough
    rise = {3: 1.0, 6: 0.75, 9: 0.5}.get(int(hour), 0.5)
    first = 0.85 if month == 0 else 1.0  # the first dose mobilises a little less
    return trough + (first * rise) * (1.0 - trough)


def course(rng: np.random.Generator) -> list[Specimen]:
    """Patient W1's draws over 6 months and after stopping (see the module docstring)."""
    base, peak = _whim_like(rng, "baseline"), _whim_like(rng, "peak")
    base_anc, anc_gain = rng.uniform(250, 450), rng.uniform(2.2, 3.5)
    plan = [(m, h, True) for m in range(7) for h in HOURS] + [(6, 24 * 35, False)]
    out = []
    for month, hour, on_drug in plan:
        r = response(month, hour, on_drug)
        values = {p: base[p] * (peak[p] / base[p]) ** r for p in base}
        day = START + timedelta(days=28 * month)
        if on_drug:
            dose = day.replace(hour=8, minute=0)
            draw = day if hour == 0 else dose + timedelta(hours=hour)
            visit = f"month {month}"
        else:
            dose = day.replace(hour=8, minute=0)  # the last dose
            draw = day + timedelta(days=35)
            visit = "35 d off"
        if (month, hour) == (0, 0):
            timepoint = "baseline"
        elif (month, hour, on_drug) == (6, 3, True):
            timepoint = "peak"
        elif on_drug:
            timepoint = f"month {month} +{hour}h"
        else:
            timepoint = "35 d off"
        name = f"W1-{draw:%Y%m%d-%H%M}"
        out.append(
            Specimen(
                name,
                "W1",
                timepoint,
                _b_tube_view(_leaves(values, rng), values["B cells"]),
                b_total_t_tube=values["B cells"],
                anc=base_anc * anc_gain**r,
                eos=rng.uniform(10, 40) * (1 + 1.5 * r),
                draw_time=draw,
                dose_time=dose,
                visit=visit,
            )
        )
    return out


def controls(rng: np.random.Generator, days: int = 30) -> list[Specimen]:
    """``days`` daily runs of the control material (see the module docstring)."""
    material = healthy(rng, 1)[0]
    out = []
    for d in range(1, days + 1):
        true = material.true_cbc
        cbc = {k: v * (1 + 0.03 * float(rng.standard_normal())) for k, v in true.items()}
        if d in PLANTED_DAYS:  # the analyzer's ALC reads 20 % high; WBC includes it
            extra = cbc["ALC"] * (PLANTED_FACTOR - 1)
            cbc["ALC"] += extra
            cbc["WBC"] += extra
        when = START.replace(hour=7, minute=30) + timedelta(days=d - 1)
        spec = Specimen(
            f"{CONTROL_LOT}-day{d:02d}",
            f"control {CONTROL_LOT}",
            f"day {d}",
            dict(material.counts),
            b_total_t_tube=material.b_total_t_tube,
            anc=material.anc,
            eos=material.eos,
            draw_time=when,
            visit=f"day {d}",
            control_lot=CONTROL_LOT,
        )
        spec.analyzer = cbc
        out.append(spec)
    return out

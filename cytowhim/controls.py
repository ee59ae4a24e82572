"""Control material: lot targets, Levey-Jennings charts and Westgard rules over days.

Specimens with a ``control_lot`` in the manifest are control material (e.g. a stabilised blood
control run every day). A lot file gives, per population, the target the lab or the
manufacturer set: ``mean`` and ``sd`` (cells/µL), or a ``low``-``high`` range taken as mean ± 2
SD. :func:`evaluate` puts each control result against its target in time order and applies the
Westgard rules (:mod:`cytowhim.westgard`); a day with a broken rule flags that day's patient
results, and those gated in the same run as the failing control (QC "control out of range",
severity fail), until someone reviews it
(:meth:`cytowhim.db.ResultsDB.review_control_day`).

Lot file (CSV, one row per lot and population; ``tube`` optional, for a population counted in
several tubes)::

    lot,population,tube,mean,sd
    CTL-2026-01,CD4+ T cells,,850,45
    CTL-2026-01,B cells,,310,,250,370       # or low/high columns instead of mean/sd
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import CytowhimError
from .spreadsheet import spreadsheet_safe
from .westgard import violations, z_scores

LOT_COLUMNS = ("lot", "population", "tube", "mean", "sd", "low", "high")
#: A target range (low-high) is read as mean ± this many SD.
RANGE_SD = 2.0
MEASUREMENT_COLUMNS = (
    "lot",
    "population",
    "tube",
    "day",
    "run",
    "draw_time",
    "specimen",
    "absolute_per_uL",
    "mean",
    "sd",
    "z",
    "rules",
)


class ControlsError(CytowhimError, ValueError):
    """A lot file or control data problem; the message names the file, row and column."""


def read_lot_file(path: str | os.PathLike) -> pd.DataFrame:
    """Targets of a lot file: columns lot, population, tube, mean, sd, low, high (mean and sd
    filled from a range where only low/high are given)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise ControlsError(f"{path}: lot file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ControlsError(f"{path}: cannot be read as a CSV lot file ({exc})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in ("lot", "population") if c not in raw.columns]
    if missing:
        raise ControlsError(
            f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(LOT_COLUMNS)})"
        )
    rows = []
    for k, rec in enumerate(raw.to_dict("records"), start=2):
        lot, pop = rec["lot"].strip(), rec["population"].strip()
        if not lot or not pop:
            raise ControlsError(f"{path}, row {k}: lot and population are required")
        nums = {}
        for c in ("mean", "sd", "low", "high"):
            text = str(rec.get(c, "") or "").strip()
            if not text:
                nums[c] = math.nan
                continue
            try:
                nums[c] = float(text)
            except ValueError:
                raise ControlsError(
                    f"{path}, row {k}, column {c}: {text!r} is not a number"
                ) from None
            if not math.isfinite(nums[c]):
                raise ControlsError(f"{path}, row {k}, column {c}: {text!r} is not finite")
        if math.isnan(nums["mean"]) or math.isnan(nums["sd"]):
            if math.isnan(nums["low"]) or math.isnan(nums["high"]):
                raise ControlsError(
                    f"{path}, row {k} ({lot}, {pop}): give mean and sd, or low and high"
                )
            if nums["high"] <= nums["low"]:
                raise ControlsError(f"{path}, row {k} ({lot}, {pop}): high must exceed low")
            nums["mean"] = (nums["low"] + nums["high"]) / 2
            nums["sd"] = (nums["high"] - nums["low"]) / (2 * RANGE_SD)
        if nums["sd"] <= 0:
            raise ControlsError(f"{path}, row {k} ({lot}, {pop}): sd must be > 0")
        rows.append({"lot": lot, "population": pop, "tube": rec.get("tube", "").strip(), **nums})
    if not rows:
        raise ControlsError(f"{path}: no targets")
    frame = pd.DataFrame(rows, columns=list(LOT_COLUMNS))
    dup = frame.duplicated(["lot", "population", "tube"], keep=False)
    if dup.any():
        first = frame[dup].iloc[0]
        raise ControlsError(
            f"{path}: lot {first['lot']!r} population {first['population']!r} is given twice"
        )
    return frame


@dataclass
class ControlReport:
    """Control results against their targets (``measurements``, :data:`MEASUREMENT_COLUMNS`),
    the broken rules (``violations``: one row per result and rule), and the days they fail that
    nobody has reviewed yet (``open_days``: day -> messages, None for controls without a draw
    date; ``open_runs``: run -> messages)."""

    measurements: pd.DataFrame
    violations: pd.DataFrame
    open_days: dict[date | None, list[str]]
    open_runs: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def evaluate(
    results: pd.DataFrame, targets: pd.DataFrame, reviews: pd.DataFrame | None = None
) -> ControlReport:
    """Westgard rules per lot, population and tube over the control results in time order.

    ``results``: population rows of control specimens (control_lot, population, tube,
    absolute_per_uL, draw_time, specimen); ``targets``: as :func:`read_lot_file`;
    ``reviews``: rows with lot, day (a reviewed day's failures no longer flag patients)."""
    rows = []
    for t in targets.to_dict("records"):
        sel = (results["control_lot"] == t["lot"]) & (results["population"] == t["population"])
        if t["tube"]:
            sel &= results["tube"] == t["tube"]
        got = results[sel].copy()
        if got.empty:
            continue
        if not t["tube"] and got["tube"].nunique() > 1:
            got = got[got["tube"] == sorted(got["tube"].unique())[0]]
        got = got.sort_values(["draw_date", "draw_time", "specimen"], kind="stable")
        days = [_day(r) for r in got.to_dict("records")]
        z = z_scores(got["absolute_per_uL"].to_numpy(dtype=float), t["mean"], t["sd"])
        runs = [d if d is not None else f"run {r}" for d, r in zip(days, got["run"])]
        broken = violations(z, runs)
        for rec, day, zi, rules in zip(got.to_dict("records"), days, z, broken):
            rows.append(
                {
                    "lot": t["lot"],
                    "population": t["population"],
                    "tube": rec["tube"],
                    "day": day,
                    "run": rec["run"],
                    "draw_time": rec["draw_time"],
                    "specimen": rec["specimen"],
                    "absolute_per_uL": rec["absolute_per_uL"],
                    "mean": t["mean"],
                    "sd": t["sd"],
                    "z": zi,
                    "rules": " ".join(rules),
                }
            )
    meas = pd.DataFrame(rows, columns=list(MEASUREMENT_COLUMNS))
    viol = []
    for rec in meas.to_dict("records"):
        for rule in rec["rules"].split():
            viol.append({**{k: rec[k] for k in MEASUREMENT_COLUMNS if k != "rules"}, "rule": rule})
    viol_frame = pd.DataFrame(viol, columns=[*MEASUREMENT_COLUMNS[:-1], "rule"])
    reviewed = set()
    if reviews is not None and not reviews.empty:
        reviewed = {(r["lot"], r["day"]) for r in reviews.to_dict("records")}
    open_days: dict[date | None, list[str]] = {}
    open_runs: dict[str, list[str]] = {}
    for v in viol_frame.to_dict("records"):
        if v["day"] is not None and (v["lot"], v["day"]) in reviewed:
            continue
        text = (
            f"control out of range: lot {v['lot']}, {v['population']} {v['rule']} "
            f"({v['absolute_per_uL']:g} cells/µL, z {v['z']:+.2f})"
        )
        open_days.setdefault(v["day"], []).append(text)  # None: a control without a draw date
        open_runs.setdefault(v["run"], []).append(text)
    return ControlReport(meas, viol_frame, open_days, open_runs)


def _day(rec: dict[str, Any]) -> date | None:
    """A result's day: its draw date, else its draw time's date (None: neither known)."""
    for key in ("draw_date", "draw_time"):
        value = rec.get(key)
        if value is not None and not pd.isna(value):
            return pd.Timestamp(value).date()
    return None


def flag_patients(table: pd.DataFrame, report: ControlReport) -> pd.DataFrame:
    """Patient population rows drawn on a day with an unreviewed control failure, or gated in
    the run that gated the failing control, get QC 'control out of range ...' and qc_status
    'fail' (a copy; others unchanged)."""
    if not (report.open_days or report.open_runs) or table.empty:
        return table
    out = table.copy()
    days = [_day(r) for r in out[["draw_date", "draw_time"]].to_dict("records")]
    patient = (out["control_lot"] == "").to_numpy()
    reasons: list[list[str]] = [[] for _ in range(len(out))]
    for k, (day, run) in enumerate(zip(days, out["run"])):
        if not patient[k]:
            continue
        if day is not None:
            reasons[k] += report.open_days.get(day, [])
        reasons[k] += report.open_runs.get(run, [])
    hit = np.array([bool(r) for r in reasons])
    if not hit.any():
        return out
    text = pd.Series(["; ".join(dict.fromkeys(r)) for r in reasons], index=out.index)[hit]
    qc = out.loc[hit, "qc"].fillna("")
    out.loc[hit, "qc"] = np.where(qc == "", text, qc + "; " + text)
    out.loc[hit, "qc_status"] = "fail"
    return out


def levey_jennings_png(meas: pd.DataFrame, title: str) -> bytes:
    """A Levey-Jennings chart (PNG): results over time, mean and ± 1/2/3 SD lines, results that
    broke a rule in red and labelled."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    mean, sd = float(meas["mean"].iloc[0]), float(meas["sd"].iloc[0])
    x = pd.to_datetime(meas["draw_time"])
    y = meas["absolute_per_uL"].to_numpy(dtype=float)
    for k, style in ((0, "-"), (1, ":"), (2, "--"), (3, "-.")):
        for sign in (1, -1) if k else (1,):
            ax.axhline(mean + sign * k * sd, color="0.5" if k else "0.2", lw=0.8, ls=style)
        if k:
            ax.text(
                1.005,
                mean + k * sd,
                f"+{k}SD",
                transform=ax.get_yaxis_transform(),
                fontsize=7,
                va="center",
            )
            ax.text(
                1.005,
                mean - k * sd,
                f"-{k}SD",
                transform=ax.get_yaxis_transform(),
                fontsize=7,
                va="center",
            )
    ax.plot(x, y, "-o", color="#1f77b4", ms=3.5, lw=1)
    bad = meas["rules"].to_numpy() != ""
    if bad.any():
        ax.plot(x[bad], y[bad], "o", color="#d62728", ms=6)
        for xi, yi, r in zip(x[bad], y[bad], meas["rules"][bad]):
            ax.annotate(
                r,
                (xi, yi),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=7,
                color="#d62728",
            )
    ax.set_ylim(mean - 4 * sd, mean + 4 * sd)
    ax.set_ylabel("cells/µL")
    ax.set_title(title, fontsize=10)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_controls(report: ControlReport, out: str | os.PathLike) -> dict[str, Path]:
    """controls.csv (every result with z and rules), violations.csv and controls.html (a
    Levey-Jennings chart per lot and population) into ``out``."""
    import base64
    import html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"controls": out / "controls.csv", "violations": out / "violations.csv"}
    safe = spreadsheet_safe  # lot names and ids are text a spreadsheet must not run
    safe(report.measurements).to_csv(paths["controls"], index=False, encoding="utf-8-sig")
    safe(report.violations).to_csv(paths["violations"], index=False, encoding="utf-8-sig")
    parts = [
        "<!doctype html><meta charset='utf-8'><title>cytowhim controls</title>",
        "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%}"
        ".bad{color:#d62728}</style><h1>Control material: Levey-Jennings charts</h1>",
    ]
    if report.violations.empty:
        parts.append("<p>No Westgard rule broken.</p>")
    else:
        items = "".join(
            f"<li class='bad'>{html.escape(str(v['day']))}: lot {html.escape(v['lot'])}, "
            f"{html.escape(v['population'])}: {v['rule']} ({v['absolute_per_uL']:g} cells/µL, "
            f"z {v['z']:+.2f})</li>"
            for v in report.violations.to_dict("records")
        )
        parts.append(f"<h2>Rules broken</h2><ul>{items}</ul>")
    for (lot, pop, tube), meas in report.measurements.groupby(
        ["lot", "population", "tube"], sort=True
    ):
        title = f"{lot}: {pop} ({tube})"
        png = base64.b64encode(levey_jennings_png(meas, title)).decode("ascii")
        parts.append(
            f"<h2>{html.escape(title)}</h2><img alt='Levey-Jennings chart of "
            f"{html.escape(title)}' src='data:image/png;base64,{png}'>"
        )
    page = out / "controls.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    paths["html"] = page
    return paths


def targets_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Targets as stored in the database, as :func:`read_lot_file` gives them."""
    return pd.DataFrame(rows, columns=list(LOT_COLUMNS))

"""A patient's time course from the results database: ``history.csv`` and ``history.html``.

Per population (and CBC value) two pictures, as the plerixafor study drew them: counts over
calendar time with the reference interval shaded and the highest and lowest counts marked, and
the curves within a day by hours after the dose (one line per visit / draw day).
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .spreadsheet import spreadsheet_safe


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(rows: pd.DataFrame, title: str) -> str:
    """Both plots of one population's rows (history columns), as an HTML fragment."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = rows.sort_values("draw_time", kind="stable")
    when = pd.to_datetime(rows["draw_time"])
    y = rows["absolute_per_uL"].to_numpy(dtype=float)
    dated = when.notna().to_numpy() & np.isfinite(y)
    hours = pd.to_numeric(rows["hours_post_dose"], errors="coerce").to_numpy(dtype=float)
    timed = dated & (np.abs(hours) <= 24)  # draws on a dosing day (not weeks after stopping)
    fig = Figure(figsize=(11, 3.4), dpi=100)
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    low = pd.to_numeric(rows["reference_low"], errors="coerce").dropna()
    high = pd.to_numeric(rows["reference_high"], errors="coerce").dropna()
    if len(low) and len(high):
        ax.axhspan(
            float(low.iloc[-1]),
            float(high.iloc[-1]),
            color="#2ca02c",
            alpha=0.12,
            label="reference interval",
        )
    if dated.any():
        ax.plot(when[dated], y[dated], "-o", ms=2.5, lw=0.6, color="0.6", label="every draw")
        days = pd.DataFrame({"when": when[dated], "y": y[dated]})
        daily = days.groupby(days["when"].dt.date, sort=True)
        if daily.ngroups < dated.sum():  # several draws a day: the day's first and highest
            first = daily.first()
            top = days.loc[daily["y"].idxmax()]
            ax.plot(
                first["when"],
                first["y"],
                "-s",
                ms=3.5,
                lw=1,
                color="#9467bd",
                label="first draw of the day (trough)",
            )
            ax.plot(
                top["when"],
                top["y"],
                "-D",
                ms=3.5,
                lw=1,
                color="#d62728",
                label="highest of the day (peak)",
            )
        k_hi = int(np.nanargmax(np.where(dated, y, -np.inf)))
        k_lo = int(np.nanargmin(np.where(dated, y, np.inf)))
        ax.plot(
            [when.iloc[k_hi]],
            [y[k_hi]],
            "^",
            color="#d62728",
            ms=10,
            mfc="none",
            label=f"highest {y[k_hi]:g}",
        )
        ax.plot(
            [when.iloc[k_lo]],
            [y[k_lo]],
            "v",
            color="#9467bd",
            ms=10,
            mfc="none",
            label=f"lowest {y[k_lo]:g}",
        )
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"{title}: over time", fontsize=10)
    ax.set_ylabel("cells/µL")
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_fontsize(7)
    ax = axes[1]
    if timed.any():
        sub = rows[timed]
        day = pd.to_datetime(sub["draw_time"]).dt.date.astype(str)
        group = np.where(sub["visit"].astype(str) != "", sub["visit"].astype(str), day)
        for name in dict.fromkeys(group):
            g = sub[group == name].sort_values("hours_post_dose")
            ax.plot(g["hours_post_dose"], g["absolute_per_uL"], "-o", ms=3, lw=0.9, label=name)
        ax.legend(fontsize=7, loc="best", ncol=2)
        ax.set_xlabel("hours after the dose")
    else:
        ax.text(
            0.5,
            0.5,
            "no hours after a dose recorded",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
            color="0.4",
        )
    ax.set_title(f"{title}: within the day", fontsize=10)
    fig.tight_layout()
    alt = html.escape(f"{title}: counts over time and by hours after the dose")
    return f"<img alt='{alt}' src='data:image/png;base64,{_png(fig)}'>"


def write_history(history: pd.DataFrame, out: str | os.PathLike, patient: str) -> dict[str, Path]:
    """history.csv and history.html (one section per population) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "history.csv"
    spreadsheet_safe(history).to_csv(csv_path, index=False, encoding="utf-8-sig")
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>cytowhim history: {html.escape(patient)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%}"
        "nav a{margin-right:1em}</style>",
        f"<h1>Patient {html.escape(patient)}: counts over time</h1>",
        f"<p>{history['specimen'].nunique()} specimens, "
        f"{pd.to_datetime(history['draw_time']).min()} to "
        f"{pd.to_datetime(history['draw_time']).max()}. Shaded: the reference interval the run "
        "recorded; ▲ the highest count, ▼ the lowest; with several draws a day, each day's first draw "
        "(the trough before the dose) and highest count (the peak) are joined.</p>",
    ]
    groups = list(history.groupby(["tube", "population"], sort=False))
    nav = " ".join(
        f"<a href='#p{k}'>{html.escape(pop)}</a>" for k, ((_, pop), _) in enumerate(groups)
    )
    parts.append(f"<nav>{nav}</nav>")
    for k, ((tube, pop), rows) in enumerate(groups):
        title = pop if tube == "CBC" else f"{pop} ({tube})"
        parts.append(f"<h2 id='p{k}'>{html.escape(title)}</h2>{_figures(rows, title)}")
    page = out / "history.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return {"csv": csv_path, "html": page}

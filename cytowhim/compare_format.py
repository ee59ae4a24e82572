"""Rendering a baseline-vs-peak :class:`~cytowhim.compare.Comparison`: Markdown and HTML in the
layout of the study's Table 1 (typographic minus signs, '<1' below the limit of quantitation), and
a compact terminal table (ASCII names)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from .compare import published_table1
from .labels import display_name

if TYPE_CHECKING:
    from .compare import Comparison


def to_markdown(c: Comparison) -> str:
    """Table 1 layout: '206 ± 71' cells, '§' on the peak when P < .05, reference 'low–high'."""
    headers, rows = _display(c)
    esc = [[c.replace("|", "\\|") for c in row] for row in [headers, *rows]]
    lines = [f"# {_title(c)}", ""]
    if c.simulated:
        lines += [f"**{_SIMULATED}**", ""]
    lines += [_legend(c), ""]
    lines.append("| " + " | ".join(esc[0]) + " |")
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    missing = _missing_lines(c)
    if missing:
        lines += ["", "## Patients missing a timepoint or a count", ""]
        lines += [f"- {display_name(m)}" for m in missing]
    if c.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {display_name(n)}" for n in c.notes]
    return "\n".join(lines) + "\n"


def to_html(c: Comparison) -> str:
    """One self-contained HTML page (inline style, no scripts or external assets)."""
    e = html.escape
    headers, rows = _display(c)
    body = [f"<h1>{e(_title(c))}</h1>"]
    if c.simulated:
        body.append(f'<p class="simulated">{e(_SIMULATED)}</p>')
    body.append(f"<p>{e(_legend(c))}</p>")
    body.append("<table>")
    body.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead>")
    body.append("<tbody>")
    for row in rows:
        cells = (f'<td class="{"t" if i < 2 else "n"}">{e(c)}</td>' for i, c in enumerate(row))
        body.append("<tr>" + "".join(cells) + "</tr>")
    body.append("</tbody></table>")
    for heading, items in (
        ("Patients missing a timepoint or a count", _missing_lines(c)),
        ("Notes", c.notes),
    ):
        if items:
            body.append(f"<h2>{e(heading)}</h2><ul>")
            body += [f"<li>{e(display_name(i))}</li>" for i in items]
            body.append("</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(_title(c))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def to_text(comparison: Comparison) -> str:
    """A compact fixed-width text table (cells/µL) with the missing patients and notes."""
    headers, rows = _display(comparison, compact=True)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [_title(comparison)]
    if comparison.simulated:
        out.append(_SIMULATED)
    out += [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    out += [f"missing: {m}" for m in _missing_lines(comparison)]
    out += [f"note: {n}" for n in comparison.notes]
    return "\n".join(out)


# --- display ---------------------------------------------------------------------------------

_SIMULATED = "Simulated specimens (synthetic data), not patient results."
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}th,td{padding:.3em .7em;border-bottom:1px solid #ccc}"
    "th{text-align:left;background:#f3f3f3}td.n{text-align:right;white-space:nowrap}"
    ".simulated{font-weight:bold;color:#a40;border:1px solid #a40;padding:.4em;display:inline-block}"
)


def _title(c: Comparison) -> str:
    return f"Absolute counts (cells/µL), {c.baseline} vs {c.peak}"


def _legend(c: Comparison) -> str:
    return (
        "Mean ± SEM over the patients with both timepoints (n); § = P < .05, two-sided paired "
        f"t test, {c.baseline} vs {c.peak}; fold = {c.peak} mean / {c.baseline} mean; "
        "L/N/H = patients below / within / above the reference interval."
    )


def _decimals(v: float) -> int:
    """Table 1 rounding: whole numbers from 10, one decimal from 1, two significant figures below."""
    a = abs(v)
    if a >= 10 or a == 0:
        return 0
    return 1 if a >= 1 else 1 - math.floor(math.log10(a))


def _fixed(v: float, decimals: int) -> str:
    text = f"{v:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _mean_cell(mean: float, sem: float, mark: bool = False, loq: float = 1.0) -> str:
    """'206 ± 71', '1.5 ± 0.7', '1 ± 0.1': the SEM to the mean's decimals (one significant
    figure if that would round it to 0), whole numbers from 10; '<1' below the limit of
    quantitation (``loq`` cells/µL), as the study printed it; '§' appended when marked."""
    if not math.isfinite(mean):
        return "—"
    if loq > 0 and mean < loq:
        return f"<{loq:g}" + (" §" if mark else "")
    decimals = _decimals(mean)
    text = _fixed(mean, decimals)
    if math.isfinite(sem):
        sem_decimals = 0 if sem >= 10 else decimals
        if sem > 0 and round(sem, sem_decimals) == 0:
            sem_decimals = -math.floor(math.log10(sem))
        text += f" ± {_fixed(sem, sem_decimals)}"
    return text + " §" if mark else text


def _reference_cell(low: float, high: float) -> str:
    has_low, has_high = math.isfinite(low), math.isfinite(high)
    if has_low and has_high:
        return f"{low:g}–{high:g}"
    if has_low:
        return f"≥ {low:g}"
    return f"≤ {high:g}" if has_high else "—"


def _p_cell(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _fold_cell(fold: float) -> str:
    return f"{fold:.3g}" if math.isfinite(fold) else "—"


def _lnh_cell(row, timepoint: str) -> str:
    counts = [row[f"{timepoint}_{k}"] for k in ("below", "within", "above")]
    return "—" if any(pd.isna(c) for c in counts) else "/".join(str(int(c)) for c in counts)


def _display(c: Comparison, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and text cells shared by the markdown, HTML and terminal tables."""
    table1 = published_table1()
    phenotypes = dict(zip(table1["population"], table1["phenotype"]))
    if compact:
        headers = ["population", "tube", "n", c.baseline, c.peak, "fold", "P", "reference"]
    else:
        headers = ["population", "phenotype", c.baseline, c.peak, "reference", "n"]
        headers += ["fold", "P", f"{c.baseline} L/N/H", f"{c.peak} L/N/H"]
    rows = []
    for r in c.table.to_dict("records"):
        base = _mean_cell(r["baseline_mean"], r["baseline_sem"], loq=c.loq_per_uL)
        peak = _mean_cell(r["peak_mean"], r["peak_sem"], r["significant"], loq=c.loq_per_uL)
        if r.get("reference_varies"):
            ref = "by age/sex"
        else:
            ref = _reference_cell(r["reference_low"], r["reference_high"])
        both_below = r["baseline_mean"] < c.loq_per_uL and r["peak_mean"] < c.loq_per_uL
        stats = (
            ["—", "—"]  # two values below the limit of quantitation: no fold, no test
            if both_below
            else [_fold_cell(r["fold_change"]), _p_cell(r["p_value"])]
        )
        if compact:
            rows.append([r["population"], r["tube"], str(r["n_pairs"]), base, peak, *stats, ref])
        else:
            name, phenotype = r["population"], phenotypes.get(r["population"], "")
            first = [display_name(name), display_name(phenotype), base, peak, ref]
            lnh = [_lnh_cell(r, "baseline"), _lnh_cell(r, "peak")]
            rows.append([*first, str(r["n_pairs"]), *stats, *lnh])
    return headers, rows


def _missing_lines(c: Comparison) -> list[str]:
    return [f"{r.patient}: {r.missing} — {r.detail}" for r in c.missing.itertuples()]

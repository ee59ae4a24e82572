"""The HTML of ``cytowhim report``: one page with inline CSS and the figures as base64 PNGs.

Population names, parents and phenotypes are shown with :func:`~cytowhim.labels.display_name`
(the typographic minus, 'CD27\u2212 B cells'); file names, channel names and the ``data-*``
attributes tools look populations up by stay as populations.csv spells them (ASCII).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .labels import display_name
from .report_plots import TABLE1_SOURCE, _sample_index

if TYPE_CHECKING:
    from gating.gates import Gate
    from gating.result import GatingResult

    from .compare import Comparison
    from .report import RunFolder
    from .report_plots import _Painter, _RefPlot

SEVERITY_ORDER = {"fail": 0, "warn": 1, "info": 2}


@dataclass
class _Tube:
    """One manifest tube as rendered: its HTML section and what the summary needs."""

    index: int
    specimen: str
    tube: str
    file: str
    html: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)
    simulated: bool = False


# --- gate cards ----------------------------------------------------------------------------------


def _flags_of(flags: pd.DataFrame, specimen: str, tube: str, population: str) -> list[dict]:
    hit = flags[
        (flags["specimen"] == specimen)
        & (flags["tube"] == tube)
        & (flags["population"] == population)
    ]
    return sorted(hit.to_dict("records"), key=lambda f: SEVERITY_ORDER.get(f["severity"], 3))


def _gate_card(
    painter: _Painter,
    result: GatingResult,
    name: str,
    t: _Tube,
    flags: pd.DataFrame,
    max_events: int,
) -> str:
    """One population: its gate drawn on the parent's events, with caption and QC notes."""
    pop = result.strategy[name]
    gate = result.gates[name]
    if name in result.failed:  # its gate could not place itself (or its parent's did not)
        title = display_name(pop.display)
        return (
            f'<figure class="card fail"><div class="nogate">{_e(title)}: not gated — '
            f"{_e(result.failed[name])}</div><figcaption>no count for this population on "
            "this file; pin its gate in an overrides file after review</figcaption></figure>"
        )
    n = result.count(name)
    parent_n = result.count(pop.parent) if pop.parent else result.n_events
    pct = 100.0 * n / parent_n if parent_n else math.nan
    title = display_name(pop.display)
    parent = display_name(result.strategy[pop.parent].display) if pop.parent else "all events"
    subtitle = f"{n:,} events · {_pct(pct)} of parent"
    pop_flags = _flags_of(flags, t.specimen, t.tube, name)
    caption = f"{title} — {n:,} events, {_pct(pct)} of {parent}"
    if not gate.dimensions:
        body = f'<div class="nogate">{_e(_boolean_text(gate))}</div>'
    else:
        mask = result.mask(pop.parent) if pop.parent else None
        idx = _sample_index(mask, result.n_events, max_events)
        png = painter.gate_plot(result, name, idx, title, subtitle)
        # data-population: the name as populations.csv spells it, for tools to look up
        body = _img(png, caption, "gate", specimen=t.specimen, tube=t.tube, population=name)
    severity = pop_flags[0]["severity"] if pop_flags else ""
    notes = "".join(
        f'<div class="flag {_e(f["severity"])}">{_e(f["severity"])} {_e(f["rule"])}: '
        f"{_e(f['message'])}</div>"
        for f in pop_flags
    )
    pinned = result.pinned.get(name)
    if pinned:
        notes += f'<div class="flag warn">gate pinned by a reviewer: {_e(pinned)}</div>'
    return (
        f'<figure class="card {severity}">{body}<figcaption>'
        f'<span class="parent">gated on {_e(parent)}</span>{notes}</figcaption></figure>'
    )


def _boolean_text(gate: Gate) -> str:
    geo = gate.geometry()
    terms = [("not " if comp else "") + display_name(ref) for ref, comp in geo.get("operands", [])]
    joined = f" {geo.get('op', '')} ".join(terms) or "(no operands)"
    return f"{type(gate).kind} gate: {joined}"


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f} %"


# --- HTML ----------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _img(png: bytes, alt: str, cls: str, **data: str) -> str:
    attrs = "".join(f' data-{k}="{_e(v)}"' for k, v in data.items())
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{_e(alt)}"{attrs} src="data:image/png;base64,{b64}">'


def _anchor(index: int) -> str:
    return f"tube-{index}"


def _tube_html(t: _Tube, cards: list[str], mismatches: list[str]) -> str:
    head = (
        f'<section class="tube" id="{_anchor(t.index)}"><h3>Tube {_e(t.tube)} '
        f'<span class="file">{_e(Path(t.file).name)}</span></h3>'
    )
    if t.error:
        return head + f'<p class="error">Could not be gated: {_e(t.error)}</p></section>'
    notes = "".join(f'<li class="warn">{_e(n)}</li>' for n in mismatches)
    notes += "".join(f"<li>{_e(n)}</li>" for n in t.notes)
    listing = f'<ul class="notes">{notes}</ul>' if notes else ""
    return head + listing + f'<div class="grid">{"".join(cards)}</div></section>'


def _page(
    run: RunFolder,
    tubes_frame: pd.DataFrame,
    tubes: list[_Tube],
    problems: list[str],
    comparison: Comparison | None,
    refs: list[_RefPlot],
) -> str:
    from . import __version__

    simulated = [t for t in tubes if t.simulated]
    title = f"Flow cytometry run report: {run.folder.resolve().name}"
    banner = (
        f'<p class="simulated">Simulated specimens (synthetic data), not patient results: '
        f"{len(simulated)} of {len(tubes)} tubes.</p>"
        if simulated
        else ""
    )
    body = [
        '<header><div class="brand">cytowhim</div>',
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Run folder {_e(run.folder.resolve())} · manifest {_e(run.manifest)} '
        f"· generated {datetime.now():%Y-%m-%d %H:%M} · cytowhim {_e(__version__)}</p>",
        banner,
        "</header>",
        '<div class="layout">',
        _nav(tubes, comparison is not None and bool(refs)),
        "<main>",
        _summary_html(run, tubes_frame, tubes, problems),
        _qc_html(run),
        _table1_html(comparison, run.table),
        _reference_html(refs),
        _specimens_html(tubes_frame, tubes),
        "</main></div>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body>\n</html>\n"
    )


def _nav(tubes: list[_Tube], has_refs: bool) -> str:
    links = [("summary", "Summary"), ("qc", "QC flags"), ("table1", "Table 1")]
    if has_refs:
        links.append(("reference", "Reference ranges"))
    items = [f'<li><a href="#{a}">{_e(label)}</a></li>' for a, label in links]
    by_specimen: dict[str, list[_Tube]] = {}
    for t in tubes:
        by_specimen.setdefault(t.specimen, []).append(t)
    items.append('<li class="sub">Specimens</li>')
    for spec, spec_tubes in by_specimen.items():
        links_t = " ".join(
            f'<a class="{"bad" if t.error else ""}" href="#{_anchor(t.index)}">{_e(t.tube)}</a>'
            for t in spec_tubes
        )
        items.append(f'<li class="spec"><div>{_e(spec)}</div>{links_t}</li>')
    return f"<nav><ul>{''.join(items)}</ul></nav>"


def _summary_html(
    run: RunFolder, tubes_frame: pd.DataFrame, tubes: list[_Tube], problems: list[str]
) -> str:
    severities = run.flags["severity"].value_counts().to_dict()
    failed = [t for t in tubes if t.error]
    tiles = [
        ("specimens", tubes_frame["specimen"].nunique() if len(tubes_frame) else 0, ""),
        ("tubes", len(tubes), ""),
        ("tubes gated", len(tubes) - len(failed), "bad" if failed else ""),
        ("QC flags", len(run.flags), "bad" if severities.get("fail") else ""),
        ("failures", len(run.errors), "bad" if run.errors else ""),
    ]
    tile_html = "".join(
        f'<div class="tile {cls}"><div class="n">{n}</div><div class="l">{_e(label)}</div></div>'
        for label, n, cls in tiles
    )
    split = " · ".join(
        f'<span class="sev {s}">{severities.get(s, 0)} {s}</span>' for s in SEVERITY_ORDER
    )
    parts = [
        '<section id="summary"><h2>Summary</h2>',
        f'<div class="tiles">{tile_html}</div>',
        f"<p>QC flags by severity: {split}.</p>",
    ]
    failures = [*run.errors, *(t.error for t in failed if t.error not in run.errors)]
    failures += [p for p in problems if p not in failures]
    if failures:
        parts.append('<h3>Failures</h3><ul class="errors">')
        parts += [f"<li>{_e(f)}</li>" for f in failures]
        parts.append("</ul>")
    notes = [f"{t.specimen} {t.tube}: {n}" for t in tubes for n in t.notes]
    if notes:
        parts.append(f"<details><summary>Gating notes ({len(notes)})</summary><ul>")
        parts += [f"<li>{_e(n)}</li>" for n in notes]
        parts.append("</ul></details>")
    parts.append("</section>")
    return "".join(parts)


def _qc_html(run: RunFolder) -> str:
    """Rows of populations.csv with QC notes, worst first; fail rows in red."""
    table = run.table
    rows = table[table["qc"].astype(str).str.strip() != ""]
    head = '<section id="qc"><h2>QC flags</h2>'
    if rows.empty:
        return head + '<p class="ok">No population has a QC note.</p></section>'
    worst = {
        (f["specimen"], f["tube"], f["population"]): f["severity"]
        for f in sorted(
            run.flags.to_dict("records"),
            key=lambda f: -SEVERITY_ORDER.get(f["severity"], 3),
        )
    }
    records = rows.to_dict("records")
    records.sort(
        key=lambda r: SEVERITY_ORDER.get(
            worst.get((r["specimen"], r["tube"], r["population"]), ""), 3
        )
    )
    cells = []
    for r in records:
        sev = worst.get((r["specimen"], r["tube"], r["population"]), "")
        cells.append(
            f'<tr class="{sev}"><td>{_e(sev)}</td><td>{_e(r["specimen"])}</td>'
            f"<td>{_e(r['tube'])}</td><td>{_e(display_name(r['population']))}</td>"
            f'<td class="n">{_e(_events_cell(r))}</td><td>{_e(r["qc"])}</td></tr>'
        )
    return (
        head + '<table class="qc"><thead><tr><th>severity</th><th>specimen</th><th>tube</th>'
        "<th>population</th><th>events</th><th>QC notes</th></tr></thead><tbody>"
        + "".join(cells)
        + "</tbody></table></section>"
    )


def _events_cell(row: dict) -> str:
    """The row's events; a ratio row (CD4/CD8 ratio: no events) shows its reported value."""
    if str(row.get("units") or "").strip() == "ratio":
        return f"ratio {str(row.get('reported') or '').strip() or '–'}"
    events = row.get("events")
    return "" if events is None or pd.isna(events) else f"{int(events):,}"


def _table1_html(comparison: Comparison | None, table: pd.DataFrame) -> str:
    head = '<section id="table1"><h2>Table 1: baseline vs peak</h2>'
    if comparison is None:
        seen = ", ".join(dict.fromkeys(table["timepoint"].astype(str))) or "none"
        return (
            head + f"<p>No comparison: the run has no 'baseline' and 'peak' timepoints "
            f"(it has: {_e(seen)}); give baseline and peak to compare two of them.</p></section>"
        )
    page = comparison.to_html()
    inner = page.partition("<body>")[2].rpartition("</body>")[0]
    inner = inner.replace("<h1>", '<p class="t1title">').replace("</h1>", "</p>")
    inner = inner.replace("<h2>", "<h4>").replace("</h2>", "</h4>")
    return head + f'<div class="table1">{inner}</div></section>'


def _reference_html(refs: list[_RefPlot]) -> str:
    if not refs:
        return ""
    figures = []
    for ref in refs:
        name = display_name(ref.population)
        alt = f"{name}: counts vs reference interval"
        if ref.bands:
            alt += " (varies by age/sex)"
        img = _img(ref.png, alt, "refplot", population=ref.population)
        caption = ""
        if ref.bands:
            caption = (
                '<figcaption class="varies">Reference interval varies by age/sex; each '
                "patient's own interval is the box at their points: "
                f"{_e('; '.join(ref.bands))}.</figcaption>"
            )
        figures.append(f'<figure class="card ref">{img}{caption}</figure>')
    sources = list(dict.fromkeys(ref.source for ref in refs if ref.source))
    if sources == [TABLE1_SOURCE]:
        shaded = f"reference interval ({TABLE1_SOURCE})"
    else:
        shaded = (
            "the reference interval each count was flagged against in the run "
            f"(populations.csv; {'; '.join(sources) or 'no source recorded'})"
        )
        if any(ref.bands for ref in refs):
            shaded += ", a box at each point where patients' intervals differ (age/sex bands)"
    return (
        '<section id="reference"><h2>Counts against reference intervals</h2>'
        '<p class="legend">Absolute counts (cells/µL) per patient and timepoint; shaded: '
        f"{_e(shaded)}; ▲ above, ▼ below it; bar: mean. "
        "Log scale where counts span more than a factor of 8.</p>"
        f'<div class="grid">{"".join(figures)}</div></section>'
    )


def _specimens_html(tubes_frame: pd.DataFrame, tubes: list[_Tube]) -> str:
    parts = ['<section id="specimens"><h2>Gates per specimen and tube</h2>']
    parts.append(
        '<p class="legend">Each gate over its parent\'s events (pseudo-colour density, '
        "log colour scale; at most a subsample of the parent is drawn). Black outline: the gate "
        "as applied to this file (for a scatter-cluster gate, the boundary of its fitted "
        "clusters); red line: a threshold, shaded on the gated side. Scatter (FSC, SSC) on "
        "linear axes, fluorescence on its transform (logicle, or log10 for a fitted "
        "cluster gate).</p>"
    )
    by_specimen: dict[str, list[_Tube]] = {}
    for t in tubes:
        by_specimen.setdefault(t.specimen, []).append(t)
    info = tubes_frame.drop_duplicates("specimen").set_index("specimen")
    for spec, spec_tubes in by_specimen.items():
        rec = info.loc[spec] if spec in info.index else None
        who = (
            f' <span class="who">patient {_e(rec["patient"])} · {_e(rec["timepoint"])}</span>'
            if rec is not None
            else ""
        )
        parts.append(f'<article class="specimen"><h2 class="spec">{_e(spec)}{who}</h2>')
        parts += [t.html for t in spec_tubes]
        parts.append("</article>")
    parts.append("</section>")
    return "\n".join(parts)


_CSS = """
:root{--ink:#1d2733;--muted:#5b6776;--line:#d8dee6;--bg:#f5f7fa;--accent:#1f4e79;
--fail:#b3261e;--failbg:#fdecea;--warn:#8a5300;--warnbg:#fff4de;--info:#2f5d8a;--infobg:#eaf1f8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:var(--bg)}
header{background:#fff;border-bottom:3px solid var(--accent);padding:14px 24px}
header h1{margin:2px 0 4px;font-size:22px}
.brand{font-size:12px;letter-spacing:.12em;text-transform:uppercase;color:var(--accent);
font-weight:700}
.meta{margin:0;color:var(--muted);font-size:12px;word-break:break-all}
.simulated{display:inline-block;margin:8px 0 0;padding:4px 10px;border:1px solid #a40;
color:#a40;background:#fff6ef;font-weight:600;border-radius:4px}
.layout{display:flex;align-items:flex-start}
nav{position:sticky;top:0;flex:0 0 190px;max-height:100vh;overflow:auto;padding:16px 10px 16px 20px;
font-size:13px}
nav ul{list-style:none;margin:0;padding:0}nav li{margin:3px 0}
nav a{color:var(--accent);text-decoration:none}nav a:hover{text-decoration:underline}
nav .sub{margin-top:12px;color:var(--muted);font-size:11px;text-transform:uppercase;
letter-spacing:.08em}
nav .spec{margin:5px 0}nav .spec div{font-weight:600}nav .spec a{margin:0 6px 0 8px}
nav a.bad{color:var(--fail);font-weight:700}
main{flex:1;min-width:0;padding:8px 24px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 18px 14px;
margin:14px 0}
h2{font-size:18px;margin:6px 0 10px}h3{font-size:15px;margin:14px 0 6px}
.tiles{display:flex;flex-wrap:wrap;gap:10px}
.tile{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px;background:#fbfcfd}
.tile .n{font-size:24px;font-weight:700}.tile .l{color:var(--muted);font-size:12px}
.tile.bad{border-color:var(--fail);background:var(--failbg)}.tile.bad .n{color:var(--fail)}
.sev{padding:1px 6px;border-radius:3px}.sev.fail{background:var(--failbg);color:var(--fail)}
.sev.warn{background:var(--warnbg);color:var(--warn)}.sev.info{background:var(--infobg);
color:var(--info)}
ul.errors li{color:var(--fail);font-weight:600}
.error{color:var(--fail);font-weight:600;background:var(--failbg);padding:8px 10px;border-radius:4px}
.ok{color:#2e7d32}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}td.n{text-align:right;white-space:nowrap}
table.qc td:nth-child(-n+4){white-space:nowrap}
table.qc tr.fail td{background:var(--failbg);color:var(--fail);font-weight:600}
table.qc tr.warn td{background:var(--warnbg);color:var(--warn)}
table.qc tr.info td:first-child{color:var(--info)}
.table1 .t1title{font-weight:600;margin:4px 0}.table1 table{margin:6px 0}
.legend{color:var(--muted);font-size:12px;margin:2px 0 8px}
.grid{display:flex;flex-wrap:wrap;gap:8px}
figure.card{margin:0;width:212px;border:1px solid var(--line);border-radius:4px;background:#fff;
padding:2px}
figure.card.ref{width:auto}figure.card.ref figcaption{max-width:236px}
figure.card img{display:block}
figure.card.fail{border:2px solid var(--fail)}figure.card.warn{border:2px solid #d89a2b}
figure.card.info{border-color:#9db7d3}
figcaption{font-size:11px;color:var(--muted);padding:0 4px 3px}
.flag{margin-top:2px;padding:1px 4px;border-radius:3px;font-size:10.5px}
.flag.fail{background:var(--failbg);color:var(--fail);font-weight:600}
.flag.warn{background:var(--warnbg);color:var(--warn)}.flag.info{background:var(--infobg);color:var(--info)}
.nogate{width:208px;height:192px;display:flex;align-items:center;justify-content:center;
text-align:center;color:var(--muted);font-size:12px;padding:10px}
article.specimen{border-top:2px solid var(--line);margin-top:18px}
h2.spec{margin-top:14px}.who{color:var(--muted);font-weight:400;font-size:14px}
.file{color:var(--muted);font-weight:400;font-size:12px}
section.tube{border:none;padding:0;margin:6px 0 14px}
ul.notes{margin:0 0 6px;padding-left:18px;font-size:12px;color:var(--muted)}
ul.notes li.warn{color:var(--warn)}
@media print{nav{display:none}body{background:#fff}section{border:none}
article.specimen{break-before:page}}
"""

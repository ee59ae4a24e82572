"""Baseline vs peak across patients, in the layout of Table 1 of the WHIM plerixafor study.

Input is the population table of ``cytowhim run`` (``DIR/populations.csv``: one row per specimen x
tube x population, absolute counts in cells/µL). Each population is taken from ONE tube; each
patient gives one baseline and one peak value; the patients with both are the pairs. Per population:
mean ± SEM at each timepoint, fold change (peak mean / baseline mean), a two-sided paired t test,
and how many patients fall below / within / above the reference interval. Patients lacking a
timepoint (or a population at it) are listed in :attr:`Comparison.missing`, never dropped silently.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from .errors import CytowhimError
from .resources import data_path

__all__ = [
    "Comparison",
    "PopulationTableError",
    "PopulationTableNotFound",
    "ReferenceLookup",
    "compare_folder",
    "compare_timepoints",
    "print_table",
    "published_table1",
]

REQUIRED_COLUMNS = ("specimen", "patient", "timepoint", "tube", "population", "absolute_per_uL")
CSV_LEADING = (
    "population",
    "baseline_mean",
    "baseline_sem",
    "peak_mean",
    "peak_sem",
    "p_value",
    "reference_low",
    "reference_high",
)
_COUNTS = tuple(f"{t}_{c}" for t in ("baseline", "peak") for c in ("below", "within", "above"))
TABLE_COLUMNS = (
    "population",
    "tube",
    "n_pairs",
    "baseline_mean",
    "baseline_sem",
    "peak_mean",
    "peak_sem",
    "fold_change",
    "p_value",
    "significant",
    "reference_low",
    "reference_high",
    *_COUNTS,
)
MISSING_COLUMNS = ("patient", "missing", "detail")
ALPHA = 0.05
_TEXT_KEYS = ("specimen", "patient", "timepoint", "tube", "population")


class PopulationTableError(CytowhimError, ValueError):
    """A population table cannot be compared; the message names the file (when there is one)."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path or 'population table'}: {problem}")


class PopulationTableNotFound(PopulationTableError, FileNotFoundError):
    """``populations.csv`` does not exist (run ``cytowhim run`` first)."""


class ReferenceLookup(Protocol):
    """Reference intervals by population: ``lookup(population) -> (low, high)`` in cells/µL, or
    None when the lab has no interval for it (either bound may be None: one-sided)."""

    def lookup(self, population: str) -> tuple[float | None, float | None] | None: ...


def published_table1() -> pd.DataFrame:
    """The bundled Table 1 (cells/µL): population, phenotype, base, baseline/peak mean and SEM,
    significant, reference_low, reference_high; in the publication's row order."""
    path = data_path("reference", "whim_plerixafor_table1.csv")
    with path.open(encoding="utf-8") as f:
        return pd.read_csv(f, comment="#")


class _Table1Intervals:
    """The reference intervals of the bundled Table 1 (12–40 healthy adult volunteers)."""

    def __init__(self, table1: pd.DataFrame):
        self._by_population = {
            r.population: (r.reference_low, r.reference_high) for r in table1.itertuples()
        }

    def lookup(self, population: str) -> tuple[float, float] | None:
        return self._by_population.get(population)


@dataclass(eq=False)
class Comparison:
    """Paired baseline vs peak comparison; counts in cells/µL.

    ``table``: one row per population (columns :data:`TABLE_COLUMNS`; ``tube`` is where the
    counts came from). ``missing``: one row per patient x timepoint lacking a specimen or a
    population's count (patient, missing = timepoint label, detail). ``notes``: choices made
    (tube per population, averaged duplicates, reference source). ``sources``: population -> tube.
    """

    table: pd.DataFrame
    missing: pd.DataFrame
    notes: list[str]
    baseline: str
    peak: str
    sources: dict[str, str] = field(default_factory=dict)
    simulated: bool = False

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table as CSV, :data:`CSV_LEADING` columns first; returns the path."""
        rest = [c for c in self.table.columns if c not in CSV_LEADING]
        frame = self.table[[*CSV_LEADING, *rest]]
        return _write_text(
            path, frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
        )

    def to_markdown(self) -> str:
        """Table 1 layout: '206 ± 71' cells, '§' on the peak when P < .05, reference 'low–high'."""
        headers, rows = _display(self)
        esc = [[c.replace("|", "\\|") for c in row] for row in [headers, *rows]]
        lines = [f"# {_title(self)}", ""]
        if self.simulated:
            lines += [f"**{_SIMULATED}**", ""]
        lines += [_legend(self), ""]
        lines.append("| " + " | ".join(esc[0]) + " |")
        lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        missing = _missing_lines(self)
        if missing:
            lines += ["", "## Patients missing a timepoint or a count", ""]
            lines += [f"- {m}" for m in missing]
        if self.notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """One self-contained HTML page (inline style, no scripts or external assets)."""
        e = html.escape
        headers, rows = _display(self)
        body = [f"<h1>{e(_title(self))}</h1>"]
        if self.simulated:
            body.append(f'<p class="simulated">{e(_SIMULATED)}</p>')
        body.append(f"<p>{e(_legend(self))}</p>")
        body.append("<table>")
        body.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead>")
        body.append("<tbody>")
        for row in rows:
            cells = (f'<td class="{"t" if i < 2 else "n"}">{e(c)}</td>' for i, c in enumerate(row))
            body.append("<tr>" + "".join(cells) + "</tr>")
        body.append("</tbody></table>")
        for heading, items in (
            ("Patients missing a timepoint or a count", _missing_lines(self)),
            ("Notes", self.notes),
        ):
            if items:
                body.append(f"<h2>{e(heading)}</h2><ul>")
                body += [f"<li>{e(i)}</li>" for i in items]
                body.append("</ul>")
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{e(_title(self))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body)
            + "\n</body>\n</html>\n"
        )

    def write(self, folder: str | os.PathLike, stem: str = "table1") -> dict[str, Path]:
        """Write ``stem``.csv, .md and .html into folder (created if needed); returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return {
            "csv": self.to_csv(folder / f"{stem}.csv"),
            "md": _write_text(folder / f"{stem}.md", self.to_markdown()),
            "html": _write_text(folder / f"{stem}.html", self.to_html()),
        }


def compare_timepoints(
    table: pd.DataFrame,
    baseline: str,
    peak: str,
    *,
    populations: Sequence[str] | None = None,
    sources: Mapping[str, str] | None = None,
    reference: ReferenceLookup | None = None,
    simulated: bool = False,
) -> Comparison:
    """Compare absolute counts (cells/µL) at ``baseline`` and ``peak``, patients paired.

    ``table``: a population table (columns :data:`REQUIRED_COLUMNS` at least). ``populations``:
    rows of the result (default: the Table 1 populations present, in Table 1 order). ``sources``:
    population -> tube its counts are taken from (default and for populations not listed: the
    first tube it appears in, said in the notes). ``reference``: intervals (default: Table 1's).
    """
    _check_columns(table, None)
    baseline, peak = str(baseline), str(peak)
    if baseline == peak:
        raise ValueError(f"baseline and peak are the same timepoint ({baseline!r})")
    frame, notes = _normalise(table)
    timepoints = list(dict.fromkeys(frame["timepoint"]))
    for label in (baseline, peak):
        if label not in timepoints:
            raise PopulationTableError(
                None, f"no rows with timepoint {label!r}; timepoints in the table: {timepoints}"
            )
    table1 = published_table1()
    chosen = _choose_populations(frame, populations, table1, notes)
    tubes = _choose_tubes(frame, chosen, sources, notes)
    if reference is None:
        reference = _Table1Intervals(table1)
        notes.append(
            "Reference intervals: Table 1 of the plerixafor study (12–40 healthy adult "
            "volunteers); intervals are lab- and age-specific."
        )
    patients = list(dict.fromkeys(frame["patient"]))
    frame = frame[frame["timepoint"].isin((baseline, peak))]
    used = frame[[tubes.get(p) == t for p, t in zip(frame["population"], frame["tube"])]]
    notes += _specimen_notes(used)
    has = {tp: set(frame.loc[frame["timepoint"] == tp, "patient"]) for tp in (baseline, peak)}
    lacking: dict[tuple[str, str], list[str]] = {}
    rows = []
    no_interval = []
    for pop in chosen:
        sub = frame[(frame["population"] == pop) & (frame["tube"] == tubes[pop])]
        pairs, gaps = _paired_values(sub, patients, (baseline, peak), has)
        for gap in gaps:
            lacking.setdefault(gap, []).append(pop)
        interval = _interval(reference, pop)
        if interval is None:
            no_interval.append(pop)
        rows.append(_row(pop, tubes[pop], pairs, interval))
    if no_interval:
        notes.append(f"No reference interval for: {', '.join(no_interval)}.")
    missing = [
        (patient, tp, f"no specimen at {tp}")
        if patient not in has[tp]
        else (patient, tp, f"no absolute count for {', '.join(lacking[patient, tp])}")
        for patient in patients
        for tp in (baseline, peak)
        if patient not in has[tp] or (patient, tp) in lacking
    ]
    if missing:
        notes.append(
            "Means, SEMs, fold changes, P values and reference counts use only the patients with "
            "both timepoints (n_pairs)."
        )
    result = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    result["n_pairs"] = result["n_pairs"].astype(int)
    result["significant"] = result["significant"].astype(bool)
    for c in _COUNTS:
        result[c] = result[c].astype("Int64")
    return Comparison(
        table=result,
        missing=pd.DataFrame(missing, columns=list(MISSING_COLUMNS)),
        notes=notes,
        baseline=baseline,
        peak=peak,
        sources=tubes,
        simulated=simulated,
    )


def compare_folder(
    folder: str | os.PathLike,
    baseline: str,
    peak: str,
    out: str | os.PathLike | None = None,
    simulated: bool = False,
) -> Comparison:
    """Compare ``folder/populations.csv`` (written by ``cytowhim run``) and write table1.csv,
    .md and .html into ``out`` (default: folder). PopulationTableError naming the file if it
    is missing, unreadable or lacks columns."""
    folder = Path(folder)
    path = folder / "populations.csv"
    if not path.is_file():
        where = "" if folder.is_dir() else f" (folder {folder} does not exist)"
        raise PopulationTableNotFound(
            path, f"not found{where}; write it with `cytowhim run MANIFEST --out {folder}`"
        )
    try:
        table = pd.read_csv(path, dtype={k: str for k in _TEXT_KEYS}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PopulationTableError(path, f"cannot be read as CSV ({exc})") from None
    _check_columns(table, path)
    try:
        comparison = compare_timepoints(table, baseline, peak, simulated=simulated)
    except PopulationTableError as exc:
        raise PopulationTableError(path, exc.problem) from None
    comparison.write(folder if out is None else out)
    return comparison


def print_table(comparison: Comparison) -> str:
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


# --- computation -----------------------------------------------------------------------------


def _check_columns(table: pd.DataFrame, path: str | os.PathLike | None) -> None:
    lacking = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if lacking:
        raise PopulationTableError(
            path,
            f"lacks column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)} "
            f"(needs {', '.join(REQUIRED_COLUMNS)}; has {', '.join(map(str, table.columns))})",
        )


def _text(column: pd.Series) -> pd.Series:
    """Labels as text ('' where empty), whatever dtype the reader inferred."""
    return column.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))


def _normalise(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Label columns as stripped text, counts as float; rows without patient or timepoint go."""
    frame = pd.DataFrame({k: _text(table[k]).str.strip() for k in _TEXT_KEYS})
    raw = _text(table["absolute_per_uL"]).str.strip()
    counts = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
    bad = counts.isna() & ~raw.str.lower().isin(("", "nan", "na", "n/a", "none"))
    if bad.any():
        first = table.loc[bad, "absolute_per_uL"].iloc[0]
        raise PopulationTableError(
            None,
            f"column absolute_per_uL holds {int(bad.sum())} value(s) that are not numbers "
            f"(first: {first!r} in row {int(np.flatnonzero(bad.to_numpy())[0]) + 1})",
        )
    frame["absolute_per_uL"] = counts.astype(float)
    frame["qc"] = _text(table["qc"]) if "qc" in table.columns else ""
    notes = []
    unlabelled = (frame["patient"] == "") | (frame["timepoint"] == "")
    if unlabelled.any():
        notes.append(f"{int(unlabelled.sum())} row(s) without patient or timepoint were ignored.")
    return frame[~unlabelled].reset_index(drop=True), notes


def _choose_populations(
    frame: pd.DataFrame, populations: Sequence[str] | None, table1: pd.DataFrame, notes: list[str]
) -> list[str]:
    present = list(dict.fromkeys(frame["population"]))
    if populations is not None:
        chosen = list(dict.fromkeys(str(p) for p in populations))
        absent = [p for p in chosen if p not in present]
        if absent:
            notes.append(f"Not in the population table: {', '.join(absent)}.")
        return chosen
    chosen = [p for p in table1["population"] if p in present]
    if not chosen:
        raise PopulationTableError(
            None,
            "none of the Table 1 populations is in the table (populations present: "
            f"{', '.join(present) or 'none'}); name them with populations=",
        )
    others = [p for p in present if p not in chosen]
    if others:
        named = ", ".join(others[:8]) + (", …" if len(others) > 8 else "")
        notes.append(
            f"{len(others)} population(s) in the table but not in Table 1 are not compared "
            f"({named}; pass populations= to include them)."
        )
    return chosen


def _choose_tubes(
    frame: pd.DataFrame,
    populations: list[str],
    sources: Mapping[str, str] | None,
    notes: list[str],
) -> dict[str, str]:
    """Population -> tube: the one ``sources`` names, else the first in the table's row order."""
    given = {} if sources is None else {str(k): str(v) for k, v in sources.items()}
    in_tubes = {
        p: list(dict.fromkeys(g["tube"])) for p, g in frame.groupby("population", sort=False)
    }
    chosen: dict[str, str] = {}
    defaulted = []
    for pop in populations:
        tubes = in_tubes.get(pop, [])
        if pop in given:
            chosen[pop] = given[pop]
            if tubes and chosen[pop] not in tubes:
                notes.append(
                    f"{pop}: sources names tube {chosen[pop]!r}, but the table has it only in "
                    f"tube(s) {', '.join(tubes)}; no counts taken."
                )
        else:
            chosen[pop] = tubes[0] if tubes else ""
            if len(tubes) > 1:
                defaulted.append(f"{pop} from {tubes[0]} (also in {', '.join(tubes[1:])})")
    if not given:
        notes.append(
            "No tube per population given: each population is taken from the first tube it "
            "appears in (table row order)" + (f": {'; '.join(defaulted)}." if defaulted else ".")
        )
    elif defaulted:
        notes.append(
            "Not in sources, taken from the first tube in the table: " + "; ".join(defaulted) + "."
        )
    return chosen


def _specimen_notes(used: pd.DataFrame) -> list[str]:
    """Notes on the rows whose counts are compared: repeat specimens, QC remarks."""
    notes = []
    for (patient, tp), g in used.groupby(["patient", "timepoint"], sort=False):
        specimens = list(dict.fromkeys(g["specimen"]))
        if len(specimens) > 1:
            notes.append(
                f"{patient} has {len(specimens)} specimens at {tp} ({', '.join(specimens)}); "
                "their counts are averaged."
            )
    remarks = used[~used["qc"].astype(str).str.strip().str.lower().isin(("", "ok", "pass", "nan"))]
    summary: dict[tuple[str, str], int] = {}
    for rec in remarks.itertuples():
        for kind in dict.fromkeys(re.findall(r"\b(fail|warn|info) ([\w-]+)", str(rec.qc))):
            key = (str(rec.population), " ".join(kind))
            summary[key] = summary.get(key, 0) + 1
    if summary:
        n = used.groupby(["patient", "timepoint"]).ngroups
        parts = [f"{pop}: {kind} in {k} of {n} specimens" for (pop, kind), k in summary.items()]
        notes.append(
            "QC remarks on compared counts (counts used; details in populations.csv): "
            + "; ".join(parts)
            + "."
        )
    return notes


def _paired_values(
    sub: pd.DataFrame, patients: list[str], timepoints: tuple[str, str], has: dict[str, set[str]]
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """One population's counts (cells/µL) as a pairs x 2 array (baseline, peak) over the patients
    with both, in patient order; and the (patient, timepoint) whose specimen lacks a count."""
    value = sub.groupby(["patient", "timepoint"], sort=False)["absolute_per_uL"].mean()
    pairs, gaps = [], []
    for patient in patients:
        got = [value.get((patient, tp), math.nan) for tp in timepoints]
        gaps += [
            (patient, tp)
            for tp, v in zip(timepoints, got)
            if patient in has[tp] and not math.isfinite(v)
        ]
        if all(math.isfinite(v) for v in got):
            pairs.append(got)
    return np.array(pairs, dtype=float).reshape(-1, 2), gaps


def _interval(reference: ReferenceLookup, population: str) -> tuple[float, float] | None:
    found = reference.lookup(population)
    if found is None:
        return None
    low, high = (math.nan if v is None else float(v) for v in found)
    if math.isnan(low) and math.isnan(high):
        return None
    if low > high:
        raise ValueError(f"reference interval of {population!r} has low {low} > high {high}")
    return low, high


def _mean_sem(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    return mean, float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def _paired_p(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided paired t test P; NaN with < 2 pairs or when all differences are equal."""
    diff = after - before
    if len(diff) < 2 or np.allclose(diff, diff[0], rtol=1e-12, atol=0.0):
        return math.nan
    from scipy.stats import ttest_rel

    return float(ttest_rel(after, before).pvalue)


def _position(values: np.ndarray, interval: tuple[float, float] | None) -> list:
    if interval is None:
        return [pd.NA] * 3
    low, high = interval
    below = int((values < low).sum()) if not math.isnan(low) else 0
    above = int((values > high).sum()) if not math.isnan(high) else 0
    return [below, len(values) - below - above, above]


def _row(
    population: str, tube: str, pairs: np.ndarray, interval: tuple[float, float] | None
) -> list:
    before, after = pairs[:, 0], pairs[:, 1]
    b_mean, b_sem = _mean_sem(before)
    p_mean, p_sem = _mean_sem(after)
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = float(np.float64(p_mean) / np.float64(b_mean))
    p = _paired_p(before, after)
    low, high = interval if interval is not None else (math.nan, math.nan)
    return [
        population,
        tube,
        len(pairs),
        b_mean,
        b_sem,
        p_mean,
        p_sem,
        fold,
        p,
        bool(p < ALPHA),
        low,
        high,
        *_position(before, interval),
        *_position(after, interval),
    ]


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


def _mean_cell(mean: float, sem: float, mark: bool = False) -> str:
    """'206 ± 71', '1.5 ± 0.7', '1 ± 0.1': the SEM to the mean's decimals (one significant
    figure if that would round it to 0), whole numbers from 10; '§' appended when marked."""
    if not math.isfinite(mean):
        return "—"
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
        base = _mean_cell(r["baseline_mean"], r["baseline_sem"])
        peak = _mean_cell(r["peak_mean"], r["peak_sem"], r["significant"])
        ref = _reference_cell(r["reference_low"], r["reference_high"])
        stats = [_fold_cell(r["fold_change"]), _p_cell(r["p_value"])]
        if compact:
            rows.append([r["population"], r["tube"], str(r["n_pairs"]), base, peak, *stats, ref])
        else:
            first = [r["population"], phenotypes.get(r["population"], ""), base, peak, ref]
            lnh = [_lnh_cell(r, "baseline"), _lnh_cell(r, "peak")]
            rows.append([*first, str(r["n_pairs"]), *stats, *lnh])
    return headers, rows


def _missing_lines(c: Comparison) -> list[str]:
    return [f"{r.patient}: {r.missing} — {r.detail}" for r in c.missing.itertuples()]


def _write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically (a temporary file renamed over the target)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)
    return path

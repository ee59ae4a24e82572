"""Baseline vs peak across patients, in the layout of Table 1 of the WHIM plerixafor study.

Input is the population table of ``cytowhim run`` (``DIR/populations.csv``: one row per specimen x
tube x population, absolute counts in cells/µL). Each population is taken from ONE tube; each
patient gives one baseline and one peak value; the patients with both are the pairs. Per population:
mean ± SEM at each timepoint, fold change (peak mean / baseline mean), a two-sided paired t test,
and how many patients fall below / within / above the reference interval. Patients lacking a
timepoint (or a population at it) are listed in :attr:`Comparison.missing`, never dropped silently.
"""

from __future__ import annotations

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
from .labels import ascii_name
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
    "reference_varies",
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
    loq_per_uL: float = 1.0  # means below print as '<1' in the Markdown and HTML tables

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table as CSV (UTF-8 with a byte-order mark, for Excel),
        :data:`CSV_LEADING` columns first; returns the path."""
        from .spreadsheet import spreadsheet_safe  # text that a spreadsheet would run: quoted

        rest = [c for c in self.table.columns if c not in CSV_LEADING]
        frame = spreadsheet_safe(self.table[[*CSV_LEADING, *rest]])
        return _write_text(
            path,
            frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"),
            encoding="utf-8-sig",
        )

    def to_markdown(self) -> str:
        """Table 1 layout: '206 ± 71' cells, '§' on the peak when P < .05, reference 'low–high'."""
        from .compare_format import to_markdown

        return to_markdown(self)

    def to_html(self) -> str:
        """One self-contained HTML page (inline style, no scripts or external assets)."""
        from .compare_format import to_html

        return to_html(self)

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
    include_flagged: bool = False,
) -> Comparison:
    """Compare absolute counts (cells/µL) at ``baseline`` and ``peak``, patients paired.

    ``table``: a population table (columns :data:`REQUIRED_COLUMNS` at least). ``populations``:
    rows of the result (default: the Table 1 populations present, in Table 1 order). ``sources``:
    population -> tube its counts are taken from (default: the reporting tubes of the bundled
    panels, ``data/panels.yaml``); a population in several tubes that ``sources`` does not name
    is taken from the first tube in name order, never by row order. ``reference``: intervals,
    a :class:`~cytowhim.reference.ReferenceIntervals` (each patient's own age and sex band from
    the table's ``age`` and ``sex`` columns) or any ``lookup(population)``; default: the
    intervals the run recorded per row (``reference_low``/``reference_high``), else Table 1's.
    Counts whose QC failed (``qc_status`` 'fail', or a 'fail' in ``qc``) are left out and
    listed in :attr:`Comparison.missing`, unless ``include_flagged``.
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
    if sources is None:
        from .panels import Panels

        sources = Panels.load().report
    tubes = _choose_tubes(frame, chosen, sources, notes)
    intervals = _row_intervals(frame, reference, table1, notes)
    frame = frame.assign(reference_low=intervals[0], reference_high=intervals[1])
    patients = sorted(dict.fromkeys(frame["patient"]), key=_natural)
    frame = frame[frame["timepoint"].isin((baseline, peak))]
    used = frame[[tubes.get(p) == t for p, t in zip(frame["population"], frame["tube"])]]
    notes += _specimen_notes(used)
    failed = _held(used)
    held = {} if include_flagged else failed
    if held:
        frame = frame.copy()
        keys = zip(frame["patient"], frame["timepoint"], frame["population"], frame["tube"])
        drop = [(pa, tp, po) in held and tubes.get(po) == tu for pa, tp, po, tu in keys]
        frame.loc[drop, "absolute_per_uL"] = math.nan
        notes.append(
            f"{len(held)} count(s) with a failed QC check were left out (listed above; "
            "include them with include_flagged / --include-flagged)."
        )
    elif failed:
        notes.append(f"{len(failed)} count(s) with a failed QC check are included as asked.")
    has = {tp: set(frame.loc[frame["timepoint"] == tp, "patient"]) for tp in (baseline, peak)}
    lacking: dict[tuple[str, str], list[str]] = {}
    rows = []
    no_interval = []
    for pop in chosen:
        sub = frame[(frame["population"] == pop) & (frame["tube"] == tubes[pop])]
        pairs, gaps, limits = _paired_values(sub, patients, (baseline, peak), has)
        for gap in gaps:
            lacking.setdefault(gap, []).append(pop)
        if not _has_interval(limits) and not _any_interval(sub):
            no_interval.append(pop)
        rows.append(_row(pop, tubes[pop], pairs, limits))
    if no_interval:
        notes.append(f"No reference interval for: {', '.join(no_interval)}.")
    missing = []
    for patient in patients:
        for tp in (baseline, peak):
            if patient not in has[tp]:
                missing.append((patient, tp, f"no specimen at {tp}"))
                continue
            absent = [p for p in lacking.get((patient, tp), []) if (patient, tp, p) not in held]
            failed = [p for p in lacking.get((patient, tp), []) if (patient, tp, p) in held]
            if absent:
                missing.append((patient, tp, f"no absolute count for {', '.join(absent)}"))
            if failed:
                reasons = "; ".join(f"{p} ({held[patient, tp, p]})" for p in failed)
                missing.append((patient, tp, f"held back by failed QC: {reasons}"))
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
    panels: str | os.PathLike | None = None,
    reference: str | os.PathLike | None = None,
    include_flagged: bool = False,
) -> Comparison:
    """Compare ``folder/populations.csv`` (written by ``cytowhim run``) and write table1.csv,
    .md and .html into ``out`` (default: folder). The reporting tube of each population comes
    from ``panels`` (a panel file), else the panel file the run used (``run.json``), else the
    bundled panels; ``reference``: a lab's reference CSV (each patient's age and sex band),
    else the intervals the run recorded. PopulationTableError naming the file if it is missing,
    unreadable or lacks columns."""
    from .panels import Panels
    from .reference import ReferenceIntervals

    folder = Path(folder)
    path = folder / "populations.csv"
    if not path.is_file():
        where = "" if folder.is_dir() else f" (folder {folder} does not exist)"
        raise PopulationTableNotFound(
            path, f"not found{where}; write it with `cytowhim run MANIFEST --out {folder}`"
        )
    try:
        table = pd.read_csv(
            path, dtype={k: str for k in _TEXT_KEYS}, keep_default_na=False, encoding="utf-8-sig"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PopulationTableError(path, f"cannot be read as CSV ({exc})") from None
    _check_columns(table, path)
    panel_file = panels if panels is not None else _run_panels(folder)
    lookup = ReferenceIntervals.load(reference) if reference is not None else None
    try:
        comparison = compare_timepoints(
            table,
            baseline,
            peak,
            sources=Panels.load(panel_file).report,
            reference=lookup,
            simulated=simulated,
            include_flagged=include_flagged,
        )
    except PopulationTableError as exc:
        raise PopulationTableError(path, exc.problem) from None
    comparison.write(folder if out is None else out)
    return comparison


def _run_panels(folder: Path) -> Path | None:
    """The panel file named in ``folder/run.json`` (None: bundled, or none recorded)."""
    import json

    try:
        doc = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = doc.get("panels") if isinstance(doc, dict) else None
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else folder / name
    return path if path.is_file() else None


def print_table(comparison: Comparison) -> str:
    """A compact fixed-width text table (cells/µL) with the missing patients and notes."""
    from .compare_format import to_text

    return to_text(comparison)


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
    frame["qc_status"] = _text(table["qc_status"]) if "qc_status" in table.columns else ""
    frame["base"] = _text(table["base"]).map(ascii_name) if "base" in table.columns else ""
    frame["age"] = (
        pd.to_numeric(table["age"], errors="coerce").astype(float) if "age" in table else math.nan
    )
    frame["sex"] = _text(table["sex"]) if "sex" in table.columns else ""
    frame["population"] = frame["population"].map(ascii_name)
    frame["base_fails"] = _base_fails(frame)
    if "reference_low" in table.columns and "reference_high" in table.columns:
        for side in ("reference_low", "reference_high"):
            frame[side] = pd.to_numeric(table[side], errors="coerce").astype(float)
    notes = []
    if "qc" not in table.columns and "qc_status" not in table.columns:
        notes.append(
            "The table has no qc or qc_status column: counts whose QC failed could not be "
            "held back (write it with a current `cytowhim run`)."
        )
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
            f"({named})."
        )
    return chosen


def _choose_tubes(
    frame: pd.DataFrame,
    populations: list[str],
    sources: Mapping[str, str],
    notes: list[str],
) -> dict[str, str]:
    """Population -> tube: the one ``sources`` (the panel's reporting tubes) names, else the
    first tube by name; never the table's row order."""
    given = {ascii_name(str(k)): str(v) for k, v in sources.items()}
    in_tubes = {
        p: sorted(dict.fromkeys(g["tube"]), key=_natural)
        for p, g in frame.groupby("population", sort=False)
    }
    chosen: dict[str, str] = {}
    defaulted = []
    for pop in populations:
        tubes = in_tubes.get(pop, [])
        if pop in given:
            chosen[pop] = given[pop]
            if tubes and chosen[pop] not in tubes:
                notes.append(
                    f"{pop}: the panel reports it from tube {chosen[pop]!r}, but the table has "
                    f"it only in tube(s) {', '.join(tubes)}; no counts taken."
                )
        else:
            chosen[pop] = tubes[0] if tubes else ""
            if len(tubes) > 1:
                defaulted.append(f"{pop} from {tubes[0]} (also in {', '.join(tubes[1:])})")
    if defaulted:
        notes.append(
            "No reporting tube in the panels for: "
            + "; ".join(defaulted)
            + " (the first tube by name; set `report:` in the panel file)."
        )
    return chosen


def _natural(text: str) -> tuple:
    """Sort key: 'P2' before 'P10'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text)))


def _held(used: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(patient, timepoint, population) -> the failed checks of counts held back by QC: the
    row's own ('fail' in ``qc_status`` or in its ``qc`` text) and its base row's in the same tube
    (a failed lymphosum on the lymphocytes holds back every count made against them)."""
    out: dict[tuple[str, str, str], str] = {}
    for rec in used.itertuples():
        failed = list(dict.fromkeys(_FAIL.findall(str(rec.qc))))
        failed += [f"{rule} on {rec.base}" for rule in rec.base_fails if rule not in failed]
        if str(rec.qc_status) == "fail" or failed:
            out[(rec.patient, rec.timepoint, rec.population)] = (
                ", ".join(failed) or "failed QC of its base"
            )
    return out


_FAIL = re.compile(r"\bfail ([\w-]+)")


def _base_fails(frame: pd.DataFrame) -> list[list[str]]:
    """Per row, the failed QC rules recorded on its base population's row in the same tube."""
    fails = {
        (s, t, p): _FAIL.findall(q)
        for s, t, p, q in zip(frame["specimen"], frame["tube"], frame["population"], frame["qc"])
    }
    return [
        fails.get((s, t, b), []) if b and b != p else []
        for s, t, p, b in zip(frame["specimen"], frame["tube"], frame["population"], frame["base"])
    ]


def _row_intervals(
    frame: pd.DataFrame, reference: ReferenceLookup | None, table1: pd.DataFrame, notes: list[str]
) -> tuple[list[float], list[float]]:
    """(low, high) per row: from ``reference`` (by age and sex when it has bands), else the
    run's recorded interval, else Table 1's."""
    n = len(frame)
    recorded = "reference_low" in frame.columns and (
        frame["reference_low"].notna().any() or frame["reference_high"].notna().any()
    )
    if reference is None and recorded:
        notes.append("Reference intervals: as recorded per specimen by the run (populations.csv).")
        return list(frame["reference_low"]), list(frame["reference_high"])
    if reference is None:
        reference = _Table1Intervals(table1)
        notes.append(
            "Reference intervals: Table 1 of the plerixafor study (12–40 healthy adult "
            "volunteers); intervals are lab- and age-specific."
        )
    lows, highs = [math.nan] * n, [math.nan] * n
    banded = hasattr(reference, "interval")
    for i, (pop, age, sex) in enumerate(zip(frame["population"], frame["age"], frame["sex"])):
        if banded:
            found = reference.interval(pop, None if age != age else age, sex or None)
            interval = None if found is None else (found.low, found.high)
        else:
            interval = _interval(reference, pop)
        if interval is not None:
            lows[i], highs[i] = interval
    if banded:
        origin = getattr(reference, "source", None) or "the lab's reference table"
        notes.append(f"Reference intervals: {origin}, each patient's own age and sex band.")
    return lows, highs


def _shared_interval(limits: np.ndarray) -> tuple[float, float] | None:
    """The interval every compared value was judged by, or None when there is none or they
    differ (age or sex bands)."""
    flat = limits.reshape(-1, 2)
    if not len(flat) or np.all(np.isnan(flat)):
        return None
    same = (flat == flat[0]) | (np.isnan(flat) & np.isnan(flat[0]))
    return (float(flat[0, 0]), float(flat[0, 1])) if np.all(same) else None


def _any_interval(rows: pd.DataFrame) -> bool:
    """Whether any row of a population (held back or not) has a reference interval."""
    return bool(rows["reference_low"].notna().any() or rows["reference_high"].notna().any())


def _has_interval(limits: np.ndarray) -> bool:
    return bool(len(limits)) and not np.all(np.isnan(limits))


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
) -> tuple[np.ndarray, list[tuple[str, str]], np.ndarray]:
    """One population's counts (cells/µL) as a pairs x 2 array (baseline, peak) over the patients
    with both, in patient order; the (patient, timepoint) whose specimen lacks a count; and the
    reference (low, high) of each value as a pairs x 2 x 2 array (rows without an interval
    left out of it)."""
    grouped = sub.groupby(["patient", "timepoint"], sort=False)
    value = grouped["absolute_per_uL"].mean()
    low = grouped["reference_low"].first()
    high = grouped["reference_high"].first()
    pairs, gaps, limits = [], [], []
    for patient in patients:
        got = [value.get((patient, tp), math.nan) for tp in timepoints]
        gaps += [
            (patient, tp)
            for tp, v in zip(timepoints, got)
            if patient in has[tp] and not math.isfinite(v)
        ]
        if all(math.isfinite(v) for v in got):
            pairs.append(got)
            limits.append(
                [
                    [low.get((patient, tp), math.nan), high.get((patient, tp), math.nan)]
                    for tp in timepoints
                ]
            )
    return (
        np.array(pairs, dtype=float).reshape(-1, 2),
        gaps,
        np.array(limits, dtype=float).reshape(-1, 2, 2),
    )


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


def _position(values: np.ndarray, limits: np.ndarray) -> list:
    """[below, within, above] of values judged each by its own (low, high), counting only the
    values that have an interval; NA without any."""
    if not _has_interval(limits):
        return [pd.NA] * 3
    low, high = limits[:, 0], limits[:, 1]
    judged = ~(np.isnan(low) & np.isnan(high))
    below = int(np.sum(judged & ~np.isnan(low) & (values < low)))
    above = int(np.sum(judged & ~np.isnan(high) & (values > high)))
    return [below, int(judged.sum()) - below - above, above]


def _row(population: str, tube: str, pairs: np.ndarray, limits: np.ndarray) -> list:
    """One result row; ``limits``: pairs x (baseline, peak) x (low, high) reference limits."""
    before, after = pairs[:, 0], pairs[:, 1]
    b_mean, b_sem = _mean_sem(before)
    p_mean, p_sem = _mean_sem(after)
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = float(np.float64(p_mean) / np.float64(b_mean))
    p = _paired_p(before, after)
    shared = _shared_interval(limits)
    low, high = shared if shared is not None else (math.nan, math.nan)
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
        shared is None and _has_interval(limits),
        *_position(before, limits[:, 0, :] if len(limits) else limits),
        *_position(after, limits[:, 1, :] if len(limits) else limits),
    ]


def _write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write UTF-8 text atomically (a temporary file renamed over the target)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding=encoding, newline="\n")
    os.replace(tmp, path)
    return path

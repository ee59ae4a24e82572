"""One specimen's counts from its gated tubes: absolute counts against the CBC or beads,
ratios, QC checks, reference flags and the reported values (:func:`specimen_records`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .manifest import CBC
from .reporting import UNITS_PER_UL

#: Columns of a population table (``populations.csv``), in order.
COLUMNS = [
    "specimen",
    "patient",
    "timepoint",
    "age",
    "sex",
    "tube",
    "population",
    "parent",
    "events",
    "percent_of_parent",
    "base",
    "base_events",
    "percent_of_base",
    "absolute_per_uL",
    "absolute_error_per_uL",
    "units",
    "reported",
    "qc",
    "qc_status",
    "reference_flag",
    "reference_low",
    "reference_high",
    "reference_band",
    "reference_source",
]

#: Ratios reported per tube: name -> (numerator population, denominator population).
RATIOS = {"CD4/CD8 ratio": ("CD4+ T cells", "CD8+ T cells")}


def specimen_records(spec_tubes, outcomes, panels, rules, reference, errors, hashes):
    """The TubeRecords of one specimen (counts, QC, reference flags, reported values), or None
    if no tube succeeded; failed tubes add to ``errors``."""
    from dataclasses import asdict

    from .counts import BASE_TO_CBC
    from .qc import QCFlag, add_qc_note, check_table, qc_status
    from .store import TubeRecord

    qc_rules, reporting = rules
    bases = {**BASE_TO_CBC, **panels.base_populations}
    first = spec_tubes.iloc[0]
    cbc = {c: float(first[c]) for c in CBC if not math.isnan(first[c])}
    parts, ok = [], []
    for (_, rec), outcome in zip(spec_tubes.iterrows(), outcomes):
        if outcome.error:
            errors.append(outcome.error)
            continue
        for name, why in outcome.failed.items():
            errors.append(f"{outcome.task.file}: population {name!r} was not gated: {why}")
        rows = outcome.rows.copy()
        for key in ("specimen", "patient", "timepoint", "tube"):
            rows[key] = rec[key]
        rows["age"] = float(rec["age"]) if "age" in rec and rec["age"] == rec["age"] else math.nan
        rows["sex"] = str(rec["sex"]) if "sex" in rec and isinstance(rec["sex"], str) else ""
        parts.append(rows)
        ok.append((rec, outcome))
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    table["qc"] = ""
    table = _absolute(table, spec_tubes, cbc, bases, errors, reporting)
    table = _with_ratios(table)
    table, flags = check_table(table, qc_rules, cbc={first["specimen"]: cbc}, bases=bases)
    table, flags = _gate_failures(table, flags, ok)
    table, unmatched = reference.annotate(table, reporting=reporting)
    notes = list(table["qc"])
    for i, message in unmatched:
        row = table.iloc[i]
        flag = QCFlag(
            str(row["specimen"]),
            str(row["tube"]),
            str(row["population"]),
            "reference",
            "warn",
            message,
        )
        flags.append(flag)
        notes[i] = add_qc_note(notes[i], str(flag))
    table["qc"] = notes
    table["qc_status"] = qc_status(table, flags, bases)
    table = _reported(table, reporting)[COLUMNS]
    records = []
    for rec, outcome in ok:
        tube = rec["tube"]
        records.append(
            TubeRecord(
                specimen=rec["specimen"],
                patient=rec["patient"],
                timepoint=rec["timepoint"],
                tube=tube,
                file=rec["file"],
                file_sha256=hashes(rec["file"]),
                strategy_sha256=hashes(panels.strategies[tube])
                if tube in panels.strategies
                else "",
                table=table[table.tube == tube].reset_index(drop=True),
                geometry=outcome.geometry,
                qc_flags=[
                    asdict(f) for f in flags if f.tube == tube or (not f.tube and not records)
                ],
                notes=outcome.notes,
                n_events=outcome.n_events,
                membership=outcome.membership,
            )
        )
    return records


def _gate_failures(table: pd.DataFrame, flags: list, ok: list) -> tuple[pd.DataFrame, list]:
    """A 'gate_failed' QC fail on every population that was not gated on its file (its gate
    could not place itself, or a population it depends on was not gated)."""
    from .qc import QCFlag, add_qc_note

    notes = list(table["qc"])
    flags = list(flags)
    for rec, outcome in ok:
        for name, why in outcome.failed.items():
            hits = (table["tube"] == rec["tube"]) & (table["population"] == name)
            flag = QCFlag(
                str(rec["specimen"]),
                str(rec["tube"]),
                name,
                "gate_failed",
                "fail",
                f"not gated on {Path(rec['file']).name}: {why}",
            )
            flags.append(flag)
            for i in hits[hits].index:
                notes[i] = add_qc_note(notes[i], str(flag))
    table = table.copy()
    table["qc"] = notes
    return table, flags


def _with_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a row per :data:`RATIOS` entry in each tube that has both populations
    (the ratio of their events, which is the ratio of their absolute counts)."""
    extra = []
    for tube, rows in table.groupby("tube", sort=False):
        events = dict(
            zip(rows["population"].map(lambda p: str(p).rsplit("/", 1)[-1]), rows["events"])
        )
        for name, (top, bottom) in RATIOS.items():
            if top not in events or bottom not in events:
                continue
            ratio = events[top] / events[bottom] if events[bottom] > 0 else math.nan
            first = rows.iloc[0]
            extra.append(
                {
                    **{k: first[k] for k in ("specimen", "patient", "timepoint", "age", "sex")},
                    "tube": tube,
                    "population": name,
                    "parent": "",
                    "base": "",
                    "units": "ratio",
                    "ratio": ratio,
                    "qc": "",
                }
            )
    if not extra:
        return table
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True)


def _reported(table: pd.DataFrame, reporting) -> pd.DataFrame:
    """``units`` and ``reported`` (the value as printed: rounded, '<1' below the limit of
    quantitation, the ratio to its decimals) for every row."""
    out = table.copy()
    units = out["units"].fillna("") if "units" in out.columns else pd.Series("", index=out.index)
    ratios = out["ratio"] if "ratio" in out.columns else pd.Series(math.nan, index=out.index)
    reported = []
    for unit, value, events, ratio in zip(units, out["absolute_per_uL"], out["events"], ratios):
        if unit == "ratio":
            reported.append(reporting.ratio(float(ratio)))
            continue
        per_event = value / events if events and events > 0 and value == value else math.nan
        reported.append(reporting.reported(float(value), per_event)[1])
    out["units"] = [u if u else UNITS_PER_UL for u in units]
    out["reported"] = reported
    return out


BEAD_POPULATIONS = ("beads", "counting beads")


def _absolute(
    table: pd.DataFrame,
    tubes: pd.DataFrame,
    cbc: dict[str, float],
    bases: dict[str, str],
    errors: list[str],
    reporting,
) -> pd.DataFrame:
    """Absolute counts of one specimen: single platform for tubes with counting beads (a
    population named 'beads' in their strategy), dual platform with the CBC for the others."""
    from .counts import absolute_counts, absolute_counts_beads

    parts = []
    for tube, rows in table.groupby("tube", sort=False):
        rec = tubes[tubes.tube == tube].iloc[0]
        if math.isnan(rec["beads_per_tube"]) or math.isnan(rec["volume_uL"]):
            parts.append(absolute_counts(rows, cbc, bases=bases, cbc_cv=reporting.cbc_cv))
            continue
        beads = rows[rows.population.isin(BEAD_POPULATIONS)]
        if beads.empty:
            errors.append(
                f"{rec['file']}: the manifest gives counting beads for tube {tube} but "
                f"its strategy has no population named {' or '.join(BEAD_POPULATIONS)}"
            )
            parts.append(absolute_counts(rows, cbc, bases=bases, cbc_cv=reporting.cbc_cv))
            continue
        parts.append(
            absolute_counts_beads(
                rows,
                float(beads.events.iloc[0]),
                float(rec["beads_per_tube"]),
                float(rec["volume_uL"]),
                bead_cv=reporting.bead_cv,
            )
        )
    return pd.concat(parts, ignore_index=True)

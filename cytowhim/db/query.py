"""Reading the results database into pandas DataFrames (newest specimen versions by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from . import schema as S

#: Columns of :func:`populations`: those of ``populations.csv`` and the specimen's details.
SPECIMEN_COLUMNS = (
    "specimen",
    "patient",
    "timepoint",
    "visit",
    "draw_time",
    "draw_date",
    "dose_time",
    "hours_post_dose",
    "age",
    "sex",
    "control_lot",
    "version",
    "run",
    "registered_utc",
)


def _specimen_select(latest: bool):
    from sqlalchemy import func, select

    sp, pa, ru = S.specimens, S.patients, S.runs
    query = select(
        sp.c.id.label("specimen_row"),
        sp.c.specimen,
        pa.c.patient,
        sp.c.timepoint,
        sp.c.visit,
        sp.c.draw_time,
        sp.c.draw_date,
        sp.c.dose_time,
        sp.c.hours_post_dose,
        sp.c.age,
        pa.c.sex,
        sp.c.control_lot,
        sp.c.version,
        ru.c.run_uid.label("run"),
        sp.c.registered_utc,
    ).select_from(sp.join(pa, sp.c.patient_id == pa.c.id).join(ru, sp.c.run_id == ru.c.id))
    if latest:  # each specimen's own newest version (an alias: correlated to the outer row)
        other = S.specimens.alias("other")
        newest = (
            select(func.max(other.c.version))
            .where(other.c.patient_id == sp.c.patient_id)
            .where(other.c.specimen == sp.c.specimen)
            .scalar_subquery()
        )
        query = query.where(sp.c.version == newest)
    return query


def specimens(
    engine: Any,
    patients: Sequence[str] | None = None,
    *,
    latest: bool = True,
    controls: bool | None = False,
) -> pd.DataFrame:
    """One row per specimen (version), columns :data:`SPECIMEN_COLUMNS` + specimen_row.
    ``controls``: False patients only, True control material only, None both."""
    query = _specimen_select(latest)
    if patients is not None:
        query = query.where(S.patients.c.patient.in_([str(p) for p in patients]))
    if controls is True:
        query = query.where(S.specimens.c.control_lot != "")
    elif controls is False:
        query = query.where(S.specimens.c.control_lot == "")
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    if frame.empty:
        return pd.DataFrame(columns=["specimen_row", *SPECIMEN_COLUMNS])
    for c in ("draw_time", "dose_time", "registered_utc", "draw_date"):
        frame[c] = pd.to_datetime(frame[c])
    for c in ("hours_post_dose", "age"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    frame = frame[["specimen_row", *SPECIMEN_COLUMNS]]
    return frame.sort_values(["patient", "draw_time", "specimen", "version"], kind="stable")


def _children(engine: Any, table: Any, rows: list[int]) -> pd.DataFrame:
    from sqlalchemy import select

    out = []
    with engine.connect() as conn:
        for start in range(0, len(rows), 500):  # bounded IN lists
            chunk = rows[start : start + 500]
            out.extend(
                conn.execute(select(table).where(table.c.specimen_row.in_(chunk))).mappings().all()
            )
    columns = [c.name for c in table.columns]
    return pd.DataFrame(out, columns=columns).sort_values("id", kind="stable")


def populations(
    engine: Any,
    patients: Sequence[str] | None = None,
    *,
    latest: bool = True,
    controls: bool | None = False,
) -> pd.DataFrame:
    """Population rows with their specimen's details: the columns of ``populations.csv`` plus
    visit, draw_time, hours_post_dose, version, run ... (one row per specimen, tube and
    population, in registration order)."""
    spec = specimens(engine, patients, latest=latest, controls=controls)
    pops = _children(engine, S.populations, [int(r) for r in spec["specimen_row"]])
    merged = spec.merge(pops.drop(columns=["id"]), on="specimen_row", how="inner")
    for c in S.POPULATION_NUMBERS:
        merged[c] = pd.to_numeric(merged[c], errors="coerce").astype(float)
    for c in ("events", "base_events"):
        merged[c] = merged[c].round().astype("Int64")
    order = ["specimen_row", *SPECIMEN_COLUMNS, *S.POPULATION_TEXT, *S.POPULATION_NUMBERS]
    return merged[order].reset_index(drop=True)


def cbc(engine: Any, patients: Sequence[str] | None = None, *, latest: bool = True) -> pd.DataFrame:
    """CBC values (cells/µL) per specimen: specimen details + analyte, per_uL."""
    spec = specimens(engine, patients, latest=latest, controls=None)
    values = _children(engine, S.cbc, [int(r) for r in spec["specimen_row"]])
    return spec.merge(values.drop(columns=["id"]), on="specimen_row", how="inner")


def qc_flags(
    engine: Any, patients: Sequence[str] | None = None, *, latest: bool = True
) -> pd.DataFrame:
    """QC flags per specimen: specimen details + tube, population, rule, severity, message."""
    spec = specimens(engine, patients, latest=latest, controls=None)
    flags = _children(engine, S.qc_flags, [int(r) for r in spec["specimen_row"]])
    return spec.merge(flags.drop(columns=["id"]), on="specimen_row", how="inner")


def patients(engine: Any) -> pd.DataFrame:
    """patient, sex, specimens (count of newest versions), first and last draw."""
    spec = specimens(engine, controls=None)
    base = spec.groupby("patient", sort=True).agg(
        specimens=("specimen", "nunique"),
        first_draw=("draw_time", "min"),
        last_draw=("draw_time", "max"),
        sex=("sex", "first"),
    )
    return base.reset_index()[["patient", "sex", "specimens", "first_draw", "last_draw"]]


def released(engine: Any) -> dict[tuple[str, str], Any]:
    """(patient, specimen) -> when a director released it (``cytowhim review``)."""
    from sqlalchemy import select

    t = S.review_status
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.patient, t.c.specimen, t.c.changed_utc).where(t.c.status == "released")
        )
        return {(r.patient, r.specimen): r.changed_utc for r in rows}


def only_released(engine: Any, table: pd.DataFrame) -> pd.DataFrame:
    """The rows of released specimens only (columns patient, specimen, registered_utc): a
    version registered after the release (a re-run with changed inputs) is not released."""
    keep = released(engine)
    mask = []
    for p, s, registered in zip(table["patient"], table["specimen"], table["registered_utc"]):
        when = keep.get((p, s))
        mask.append(when is not None and pd.Timestamp(registered) <= pd.Timestamp(when))
    return table[mask]

"""Registering finished specimens: one transaction per specimen, idempotent, versioned.

A specimen is identified by (patient, specimen id). Registering it with inputs it already has
(same ``inputs_key``: the content hash of its FCS files, manifest row, CBC, strategies, rules and
cytowhim version) adds nothing; other inputs add the next version, and queries show the newest
unless asked for all. Concurrent registrations are serialized per database (SQLite: ``BEGIN
IMMEDIATE``) or per specimen (PostgreSQL: an advisory transaction lock), and unique constraints
back both: nothing is lost and nothing is registered twice.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import pandas as pd

from . import schema as S
from .connect import writing

CBC_ANALYTES = ("WBC", "ANC", "ALC", "AMC")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


@dataclass
class RunInfo:
    """Who ran what, where and when (one row of ``runs``, added with the run's first specimen)."""

    out_dir: str = ""
    command: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    run_uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_utc: datetime = field(default_factory=_utc_now)
    run_by: str = field(default_factory=lambda: _user())
    host: str = field(default_factory=socket.gethostname)
    cytowhim_version: str = field(default_factory=lambda: _version())


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers): the uid
        return f"uid {os.getuid()}"


def _version() -> str:
    from .. import __version__

    return __version__


@dataclass
class SpecimenEntry:
    """One specimen's results as a run finished them.

    ``populations``: its rows of ``populations.csv`` (every tube); ``tubes``: dicts with tube,
    file, file_sha256, strategy_sha256, n_events; ``qc_flags``: dicts with tube, population,
    rule, severity, message; ``cbc``: analyte -> cells/µL (WBC, ANC, ALC, AMC); times naive
    (the lab's wall clock) or aware (converted to this machine's time zone).
    """

    specimen: str
    patient: str
    timepoint: str
    inputs_key: str
    populations: pd.DataFrame
    tubes: Sequence[Mapping[str, Any]] = ()
    qc_flags: Sequence[Mapping[str, Any]] = ()
    cbc: Mapping[str, float] = field(default_factory=dict)
    visit: str = ""
    draw_time: datetime | None = None
    draw_date: date | None = None  # default: draw_time's date
    dose_time: datetime | None = None
    hours_post_dose: float | None = None
    age: float | None = None
    sex: str = ""
    control_lot: str = ""


def _naive(value: datetime | None) -> datetime | None:
    """The lab's wall clock: an aware time in this machine's time zone, its offset dropped."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if value.tzinfo is not None:
        value = value.astimezone().replace(tzinfo=None)
    return value


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _lock_key(patient: str, specimen: str) -> int:
    digest = hashlib.sha256(f"{patient}\x00{specimen}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def register(engine: Any, entry: SpecimenEntry, run: RunInfo) -> str:
    """Register one specimen; 'added' (first version), 'new version' or 'unchanged'."""
    from sqlalchemy import insert, select

    with writing(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                f"SELECT pg_advisory_xact_lock({_lock_key(entry.patient, entry.specimen)})"
            )
            # patients and runs are shared: insert-if-absent without failing the transaction
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(
                pg_insert(S.patients)
                .values(patient=entry.patient, sex=entry.sex or "")
                .on_conflict_do_nothing(index_elements=["patient"])
            )
        else:
            found = conn.execute(
                select(S.patients.c.id).where(S.patients.c.patient == entry.patient)
            ).first()
            if found is None:
                conn.execute(insert(S.patients).values(patient=entry.patient, sex=entry.sex or ""))
        patient_id = conn.execute(
            select(S.patients.c.id).where(S.patients.c.patient == entry.patient)
        ).scalar_one()
        if entry.sex:
            conn.execute(
                S.patients.update().where(S.patients.c.id == patient_id).values(sex=entry.sex)
            )
        same = (S.specimens.c.patient_id == patient_id) & (S.specimens.c.specimen == entry.specimen)
        newest = conn.execute(
            select(S.specimens.c.version, S.specimens.c.inputs_key)
            .where(same)
            .order_by(S.specimens.c.version.desc())
            .limit(1)
        ).first()
        if newest is not None and newest.inputs_key == entry.inputs_key:
            return "unchanged"  # what the newest version holds (earlier inputs again: a new one)
        last = None if newest is None else newest.version
        run_id = _run_id(conn, engine, run)
        row = conn.execute(
            insert(S.specimens)
            .values(
                patient_id=patient_id,
                specimen=entry.specimen,
                version=(last or 0) + 1,
                inputs_key=entry.inputs_key,
                run_id=run_id,
                registered_utc=_utc_now(),
                timepoint=_text(entry.timepoint),
                visit=_text(entry.visit),
                draw_time=_naive(entry.draw_time),
                draw_date=entry.draw_date
                or (None if _naive(entry.draw_time) is None else _naive(entry.draw_time).date()),
                dose_time=_naive(entry.dose_time),
                hours_post_dose=_number(entry.hours_post_dose),
                age=_number(entry.age),
                control_lot=_text(entry.control_lot),
            )
            .returning(S.specimens.c.id)
        ).scalar_one()
        _children(conn, row, entry)
        return "added" if last is None else "new version"


def _run_id(conn: Any, engine: Any, run: RunInfo) -> int:
    from sqlalchemy import insert, select

    values = dict(
        run_uid=run.run_uid,
        started_utc=_naive(run.started_utc),
        run_by=run.run_by,
        host=run.host,
        cytowhim_version=run.cytowhim_version,
        out_dir=str(run.out_dir),
        command=run.command,
        settings=json.dumps(dict(run.settings), sort_keys=True, default=str),
    )
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(S.runs).values(**values).on_conflict_do_nothing())
    elif conn.execute(select(S.runs.c.id).where(S.runs.c.run_uid == run.run_uid)).first() is None:
        conn.execute(insert(S.runs).values(**values))
    return conn.execute(select(S.runs.c.id).where(S.runs.c.run_uid == run.run_uid)).scalar_one()


def _children(conn: Any, row: int, entry: SpecimenEntry) -> None:
    from sqlalchemy import insert

    pops = []
    for rec in entry.populations.to_dict("records"):
        item: dict[str, Any] = {"specimen_row": row}
        for c in S.POPULATION_TEXT:
            item[c] = _text(rec.get(c))
        for c in S.POPULATION_NUMBERS:
            item[c] = _number(rec.get(c))
        pops.append(item)
    if pops:
        conn.execute(insert(S.populations), pops)
    tubes = [
        {
            "specimen_row": row,
            "tube": _text(t.get("tube")),
            "file": _text(t.get("file")),
            "file_sha256": _text(t.get("file_sha256")),
            "strategy_sha256": _text(t.get("strategy_sha256")),
            "n_events": None if t.get("n_events") is None else int(t["n_events"]),
        }
        for t in entry.tubes
    ]
    if tubes:
        conn.execute(insert(S.tubes), tubes)
    cbc = [
        {"specimen_row": row, "analyte": k, "per_uL": v}
        for k, v in ((k, _number(entry.cbc.get(k))) for k in CBC_ANALYTES)
        if v is not None
    ]
    if cbc:
        conn.execute(insert(S.cbc), cbc)
    flags = [
        {
            "specimen_row": row,
            **{k: _text(f.get(k)) for k in ("tube", "population", "rule", "severity", "message")},
        }
        for f in entry.qc_flags
    ]
    if flags:
        conn.execute(insert(S.qc_flags), flags)

"""Review and sign-out in the results database: user accounts, each specimen's review status,
reviewers' gate overrides and the append-only audit trail (tables of migration 0003).

Status of a specimen (per patient and specimen name, across its versions): ``pending`` until a
technician marks it ``reviewed``; a director ``released`` it; a released specimen is locked (no
gate changes) until a director un-releases it with a reason. Every change bumps the specimen's
``etag``: a change made against an older etag is refused (:class:`Conflict`), so two reviewers
never silently overwrite each other. Every change writes one :data:`~cytowhim.db.schema.review_audit`
row in the same transaction; the database refuses UPDATE and DELETE on that table (triggers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, insert, select, update

from . import schema as S
from .connect import writing

ROLES = ("technician", "director")
STATUSES = ("pending", "reviewed", "released")


class ReviewError(ValueError):
    """A review action that is not allowed as asked (the message says why)."""


class Forbidden(ReviewError):
    """The user's role may not do this."""


class Conflict(ReviewError):
    """The specimen changed since the user loaded it."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --- users -----------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password)


def add_user(engine: Any, name: str, password: str, role: str, by: str = "cli") -> None:
    """Create an account; ReviewError for a bad role, a short password or a taken name."""
    name = name.strip()
    if role not in ROLES:
        raise ReviewError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not name:
        raise ReviewError("a user needs a name")
    if len(password) < 8:
        raise ReviewError("the password must have at least 8 characters")
    with writing(engine) as conn:
        if conn.execute(select(S.users.c.id).where(S.users.c.name == name)).first():
            raise ReviewError(f"user {name!r} exists already")
        conn.execute(
            insert(S.users).values(
                name=name,
                password_hash=hash_password(password),
                role=role,
                disabled=False,
                created_utc=_now(),
            )
        )
        _audit(conn, by, "user added", "", "", f"{name} ({role})", {}, {"name": name, "role": role})


def users(engine: Any) -> list[dict[str, Any]]:
    """Every account: name, role, disabled, created_utc (no password hashes)."""
    u = S.users
    with engine.connect() as conn:
        rows = conn.execute(
            select(u.c.name, u.c.role, u.c.disabled, u.c.created_utc).order_by(u.c.name)
        )
        return [dict(r._mapping) for r in rows]


def disable_user(engine: Any, name: str, by: str = "cli") -> None:
    with writing(engine) as conn:
        done = conn.execute(update(S.users).where(S.users.c.name == name).values(disabled=True))
        if not done.rowcount:
            raise ReviewError(f"no user {name!r}")
        _audit(conn, by, "user disabled", "", "", name, {"disabled": False}, {"disabled": True})


def authenticate(engine: Any, name: str, password: str) -> dict[str, Any] | None:
    """The user (name, role) if the password is right and the account enabled, else None."""
    from werkzeug.security import check_password_hash

    u = S.users
    with engine.connect() as conn:
        row = conn.execute(select(u).where(u.c.name == name)).first()
    if row is None or row.disabled or not check_password_hash(row.password_hash, password):
        return None
    return {"name": row.name, "role": row.role}


def user(engine: Any, name: str) -> dict[str, Any] | None:
    """An enabled user's name and role (None: unknown or disabled)."""
    u = S.users
    with engine.connect() as conn:
        row = conn.execute(select(u.c.name, u.c.role, u.c.disabled).where(u.c.name == name)).first()
    return None if row is None or row.disabled else {"name": row.name, "role": row.role}


def has_users(engine: Any) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(S.users)).scalar())


# --- audit -----------------------------------------------------------------------------------


def _audit(conn, who, action, patient, specimen, detail, before, after) -> None:
    conn.execute(
        insert(S.review_audit).values(
            utc=_now(),
            user_name=who,
            action=action,
            patient=patient,
            specimen=specimen,
            detail=detail,
            before=_json(before),
            after=_json(after),
        )
    )


def audit_trail(engine: Any, patient: str | None = None, specimen: str | None = None) -> list:
    """Audit rows (oldest first), all or one specimen's."""
    a = S.review_audit
    q = select(a).order_by(a.c.id)
    if patient is not None:
        q = q.where(a.c.patient == patient)
    if specimen is not None:
        q = q.where(a.c.specimen == specimen)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


# --- status ----------------------------------------------------------------------------------


def status(engine: Any, patient: str, specimen: str, conn: Any = None) -> dict[str, Any]:
    """The specimen's review status: status, etag, changed_by, changed_utc (pending, 0 if none)."""
    r = S.review_status
    q = select(r.c.status, r.c.etag, r.c.changed_by, r.c.changed_utc).where(
        and_(r.c.patient == patient, r.c.specimen == specimen)
    )
    if conn is None:
        with engine.connect() as c:
            row = c.execute(q).first()
    else:
        row = conn.execute(q).first()
    if row is None:
        return {"status": "pending", "etag": 0, "changed_by": "", "changed_utc": None}
    return dict(row._mapping)


def _bump(conn, patient, specimen, etag, who, new_status=None) -> dict[str, Any]:
    """Check the etag and move the specimen to its next etag (and status); Conflict if stale."""
    old = status(None, patient, specimen, conn)
    if int(etag) != old["etag"]:
        raise Conflict(
            f"{patient} {specimen} was changed by {old['changed_by'] or 'someone'} at "
            f"{old['changed_utc']} since you loaded it; reload to see the change"
        )
    values = {
        "status": new_status or old["status"],
        "etag": old["etag"] + 1,
        "changed_by": who,
        "changed_utc": _now(),
    }
    r = S.review_status
    stale = Conflict(f"{patient} {specimen} was changed by someone else just now; reload it")
    if old["etag"] == 0 and old["changed_by"] == "":
        from sqlalchemy.exc import IntegrityError

        try:  # another writer inserting at once: the unique constraint refuses the second
            with conn.begin_nested():
                conn.execute(insert(r).values(patient=patient, specimen=specimen, **values))
        except IntegrityError:
            raise stale from None
    else:  # only if no one moved the etag since it was read (PostgreSQL: READ COMMITTED)
        done = conn.execute(
            update(r)
            .where(and_(r.c.patient == patient, r.c.specimen == specimen, r.c.etag == old["etag"]))
            .values(**values)
        )
        if done.rowcount != 1:
            raise stale
    return old | {"new": values}


def set_status(
    engine: Any,
    patient: str,
    specimen: str,
    action: str,
    who: Mapping[str, str],
    etag: int,
    reason: str = "",
    qc_failed: bool = False,
    version: int | None = None,
    run_uid: str = "",
) -> dict[str, Any]:
    """``action``: 'review' (technician or director), 'release' and 'unrelease' (director).
    A failed QC blocks release unless a reason is given; un-release needs a reason.
    ``version`` (and ``run_uid``): the registered version the user saw, kept in the audit row; a
    newer version registered later takes the specimen back to pending (:func:`worklist`).
    Forbidden, Conflict or ReviewError when not allowed; returns the new status."""
    role, name = who["role"], who["name"]
    reason = (reason or "").strip()
    with writing(engine) as conn:
        old = status(None, patient, specimen, conn)
        current = old["status"]
        if action == "review":
            if current == "released":
                raise ReviewError("released results are locked: un-release them first")
            new = "reviewed"
        elif action == "release":
            if role != "director":
                raise Forbidden("only a director may release results")
            if current == "released":
                raise ReviewError("already released")
            if qc_failed and not reason:
                raise ReviewError("QC failed for this specimen: releasing needs a reason")
            new = "released"
        elif action == "unrelease":
            if role != "director":
                raise Forbidden("only a director may un-release results")
            if current != "released":
                raise ReviewError("not released")
            if not reason:
                raise ReviewError("un-releasing needs a reason")
            new = "reviewed"
        else:
            raise ReviewError(f"unknown action {action!r}")
        bumped = _bump(conn, patient, specimen, etag, name, new)
        _audit(
            conn,
            name,
            action,
            patient,
            specimen,
            reason,
            {"status": current, "etag": old["etag"]},
            {"status": new, "etag": bumped["new"]["etag"], "qc_failed": qc_failed}
            | ({"version": int(version), "run_uid": run_uid} if version is not None else {}),
        )
        return bumped["new"]


SIGN_ACTIONS = ("review", "release", "unrelease")


def _pending_again(engine: Any, rows: list[dict[str, Any]]) -> None:
    """Specimens reviewed or released at an older version than their newest (a re-run with
    changed inputs registered since) go back to pending, with a 'new version' audit row
    (``rows``: :func:`worklist`'s, updated in place)."""
    signed = {(r["patient"], r["specimen"]): r for r in rows if r["status"] != "pending"}
    if not signed:
        return
    a = S.review_audit
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    with engine.connect() as conn:
        q = (
            select(a.c.patient, a.c.specimen, a.c.after)
            .where(a.c.action.in_(SIGN_ACTIONS))
            .where(a.c.patient.in_(sorted({p for p, _ in signed})))
            .order_by(a.c.id)
        )
        for patient, specimen, after in conn.execute(q):
            if (patient, specimen) in signed:
                seen[(patient, specimen)] = json.loads(after or "{}")
    for key, row in signed.items():
        signed_at = seen.get(key, {}).get("version")
        if signed_at is None or int(row["version"]) <= int(signed_at):
            continue
        patient, specimen = key
        try:
            with writing(engine) as conn:
                old = status(None, patient, specimen, conn)
                if old["status"] == "pending":
                    continue
                bumped = _bump(conn, patient, specimen, old["etag"], "system", "pending")
                _audit(
                    conn,
                    "system",
                    "new version",
                    patient,
                    specimen,
                    f"version {row['version']} (run {row['run_uid']}) registered after version "
                    f"{signed_at} was {old['status']}: pending again",
                    {"status": old["status"], "etag": old["etag"], "version": int(signed_at)},
                    {
                        "status": "pending",
                        "etag": bumped["new"]["etag"],
                        "version": int(row["version"]),
                        "run_uid": row["run_uid"],
                    },
                )
        except Conflict:  # someone else moved it just now: their change stands
            continue
        row["status"], row["etag"] = "pending", bumped["new"]["etag"]


# --- gate overrides --------------------------------------------------------------------------


def add_overrides(
    engine: Any,
    who: Mapping[str, str],
    etag: int,
    *,
    patient: str,
    specimen: str,
    tube: str,
    file: str,
    changes: list[dict[str, Any]],
    counts_before: Any,
    counts_after: Any,
    reason: str,
) -> dict[str, Any]:
    """Several gates of one tube changed together (``changes``: population, before, after; e.g.
    the sibling quadrants of a moved centre): one etag step, an override and an audit row per
    population, all in one transaction. Same refusals as :func:`add_override`."""
    if not (reason or "").strip():
        raise ReviewError("a gate change needs a reason")
    if not changes:
        raise ReviewError("no gate changed")
    o = S.gate_overrides
    with writing(engine) as conn:
        if status(None, patient, specimen, conn)["status"] == "released":
            raise ReviewError("released results are locked: un-release them first")
        bumped = _bump(conn, patient, specimen, etag, who["name"])
        for change in changes:
            population, gate_before, gate_after = (
                change["population"],
                change["before"],
                change["after"],
            )
            conn.execute(
                update(o)
                .where(
                    and_(
                        o.c.patient == patient,
                        o.c.specimen == specimen,
                        o.c.tube == tube,
                        o.c.population == population,
                        o.c.active.is_(True),
                    )
                )
                .values(active=False)
            )
            conn.execute(
                insert(o).values(
                    patient=patient,
                    specimen=specimen,
                    tube=tube,
                    file=file,
                    population=population,
                    gate_before=_json(gate_before),
                    gate_after=_json(gate_after),
                    counts_before=_json(counts_before),
                    counts_after=_json(counts_after),
                    reason=reason.strip(),
                    created_by=who["name"],
                    created_utc=_now(),
                    active=True,
                )
            )
            _audit(
                conn,
                who["name"],
                "gate override",
                patient,
                specimen,
                f"{tube} / {population}: {reason.strip()}",
                {"gate": gate_before, "counts": counts_before},
                {"gate": gate_after, "counts": counts_after},
            )
        return bumped["new"]


def overrides(engine: Any, patient: str | None = None, specimen: str | None = None) -> list:
    """Active overrides (oldest first), all or one specimen's; gates and counts decoded."""
    o = S.gate_overrides
    q = select(o).where(o.c.active.is_(True)).order_by(o.c.id)
    if patient is not None:
        q = q.where(o.c.patient == patient)
    if specimen is not None:
        q = q.where(o.c.specimen == specimen)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        for k in ("gate_before", "gate_after", "counts_before", "counts_after"):
            r[k] = json.loads(r[k])
    return rows


def overrides_document(engine: Any) -> dict[str, dict[str, Any]]:
    """The active overrides as an overrides file (:mod:`gating.overrides`): FCS file name ->
    population -> {reason, gate}."""
    from pathlib import Path

    doc: dict[str, dict[str, Any]] = {}
    for r in overrides(engine):
        reason = f"{r['reason']} ({r['created_by']} {r['created_utc']:%Y-%m-%d %H:%M} UTC)"
        doc.setdefault(Path(r["file"]).name, {})[r["population"]] = {
            "reason": reason,
            "gate": r["gate_after"],
        }
    return doc


# --- worklist --------------------------------------------------------------------------------


def worklist(engine: Any) -> list[dict[str, Any]]:
    """Newest version of every specimen: patient, specimen, run, day, status, etag, number of QC
    failures and warnings and of reference flags, run folder."""
    sp, pt, rn, rs = S.specimens, S.patients, S.runs, S.review_status
    newest = (
        select(sp.c.patient_id, sp.c.specimen, func.max(sp.c.version).label("v"))
        .group_by(sp.c.patient_id, sp.c.specimen)
        .subquery()
    )
    q = (
        select(
            sp.c.id,
            pt.c.patient,
            sp.c.specimen,
            sp.c.version,
            sp.c.timepoint,
            sp.c.draw_time,
            rn.c.run_uid,
            rn.c.started_utc,
            rn.c.out_dir,
            rs.c.status,
            rs.c.etag,
        )
        .join(pt, pt.c.id == sp.c.patient_id)
        .join(rn, rn.c.id == sp.c.run_id)
        .join(
            newest,
            and_(
                newest.c.patient_id == sp.c.patient_id,
                newest.c.specimen == sp.c.specimen,
                newest.c.v == sp.c.version,
            ),
        )
        .outerjoin(rs, and_(rs.c.patient == pt.c.patient, rs.c.specimen == sp.c.specimen))
        .order_by(rn.c.started_utc.desc(), pt.c.patient, sp.c.specimen)
    )
    qf, pop = S.qc_flags, S.populations
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
        flags: dict[int, dict[str, int]] = {}
        for sid, sev, n in conn.execute(
            select(qf.c.specimen_row, qf.c.severity, func.count()).group_by(
                qf.c.specimen_row, qf.c.severity
            )
        ):
            flags.setdefault(sid, {})[sev] = n
        refs = dict(
            conn.execute(
                select(pop.c.specimen_row, func.count())
                .where(pop.c.reference_flag != "")
                .group_by(pop.c.specimen_row)
            ).all()
        )
    for r in rows:
        r["status"] = r["status"] or "pending"
        r["etag"] = r["etag"] or 0
        f = flags.get(r["id"], {})
        r["qc_fail"] = f.get("fail", 0)
        r["qc_warn"] = sum(v for k, v in f.items() if k != "fail")
        r["reference_flags"] = refs.get(r["id"], 0)
        r["day"] = (r["draw_time"] or r["started_utc"]).date().isoformat()
    _pending_again(engine, rows)
    return rows

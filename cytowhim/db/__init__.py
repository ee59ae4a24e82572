"""The lab's results database: every run's specimens, across days, in one place.

``cytowhim run`` registers each finished specimen (:meth:`ResultsDB.register`); ``history``,
``compare --db`` and ``controls`` read it back. For analysts::

    from cytowhim.db import ResultsDB

    db = ResultsDB()                      # $CYTOWHIM_DB, else the user's SQLite file
    db.patients()                         # one row per patient
    db.populations(["P1"])                # population counts of P1's specimens (newest versions)
    db.history("P1", ["CD4+ T cells"])    # the time course, CBC included

SQLite by default (:func:`~cytowhim.db.connect.default_url`), PostgreSQL by URL; the schema is
migrated with Alembic on opening (:mod:`cytowhim.db.connect`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

import pandas as pd

from . import query
from .connect import DatabaseError, default_url, shown
from .register import RunInfo, SpecimenEntry

__all__ = [
    "HISTORY_COLUMNS",
    "DatabaseError",
    "ResultsDB",
    "RunInfo",
    "SpecimenEntry",
    "default_url",
]

#: Columns of :meth:`ResultsDB.history` (and ``history.csv``).
HISTORY_COLUMNS = (
    "patient",
    "specimen",
    "draw_time",
    "hours_post_dose",
    "timepoint",
    "visit",
    "tube",
    "population",
    "absolute_per_uL",
    "error",
    "reference_low",
    "reference_high",
    "flag",
    "qc_status",
    "run",
)
CBC_TUBE = "CBC"


class ResultsDB:
    """A results database (``url``: SQLAlchemy URL; default :func:`default_url`), opened and
    migrated to the newest schema."""

    def __init__(self, url: str | None = None):
        from .connect import create

        self.engine = create(url)

    @property
    def url(self) -> str:
        """The URL, password hidden."""
        return shown(self.engine.url)

    def __repr__(self) -> str:
        return f"ResultsDB({self.url!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def register(self, entry: SpecimenEntry, run: RunInfo) -> str:
        """Register a finished specimen: 'added', 'new version' or 'unchanged' (same inputs)."""
        from .register import register

        return register(self.engine, entry, run)

    def set_control_targets(self, targets: pd.DataFrame, source: str = "") -> int:
        """Store lot targets (as :func:`cytowhim.controls.read_lot_file` gives them), replacing
        those of the same lot, population and tube; returns how many."""
        from sqlalchemy import delete, insert

        from . import schema as S
        from .connect import writing

        now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        rows = [
            {
                "lot": r["lot"],
                "population": r["population"],
                "tube": r.get("tube", "") or "",
                **{k: _num(r.get(k)) for k in ("mean", "sd", "low", "high")},
                "source": source,
                "registered_utc": now,
            }
            for r in targets.to_dict("records")
        ]
        t = S.control_targets
        with writing(self.engine) as conn:
            for r in rows:
                conn.execute(
                    delete(t).where(
                        (t.c.lot == r["lot"])
                        & (t.c.population == r["population"])
                        & (t.c.tube == r["tube"])
                    )
                )
            if rows:
                conn.execute(insert(t), rows)
        return len(rows)

    def review_control_day(self, lot: str, day: date, reviewed_by: str, reason: str) -> None:
        """Record that someone reviewed ``lot``'s failure on ``day``: that day's patient results
        are no longer flagged for it (the review stays in the database)."""
        from sqlalchemy import insert

        from . import schema as S
        from .connect import writing

        if not reason.strip() or not reviewed_by.strip():
            raise ValueError("a control review needs who reviewed it and a reason")
        with writing(self.engine) as conn:
            conn.execute(
                insert(S.control_reviews).values(
                    lot=lot,
                    day=day,
                    reviewed_by=reviewed_by,
                    reviewed_utc=datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0),
                    reason=reason,
                )
            )

    # --- reading ---------------------------------------------------------------------------

    def patients(self) -> pd.DataFrame:
        """patient, sex, specimens, first_draw, last_draw."""
        return query.patients(self.engine)

    def specimens(
        self, patients: Sequence[str] | None = None, *, latest: bool = True
    ) -> pd.DataFrame:
        """One row per patient specimen (newest version unless ``latest=False``)."""
        return query.specimens(self.engine, patients, latest=latest).drop(columns="specimen_row")

    def populations(
        self,
        patients: Sequence[str] | None = None,
        *,
        latest: bool = True,
        controls: bool = False,
        flag_controls: bool = True,
        released_only: bool = False,
    ) -> pd.DataFrame:
        """Population rows (the columns of ``populations.csv`` with visit, draw_time,
        hours_post_dose, version, run ...). Patient rows drawn on a day whose control broke a
        Westgard rule, not yet reviewed, carry QC 'control out of range' (``flag_controls``).
        ``controls=True``: the control material's rows instead. ``released_only``: only
        specimens a director released (``cytowhim review``)."""
        table = query.populations(self.engine, patients, latest=latest, controls=controls)
        if released_only:
            table = query.only_released(self.engine, table)
        if flag_controls and not controls:
            from ..controls import flag_patients

            table = flag_patients(table, self.control_report())
        return table.drop(columns="specimen_row")

    def cbc(
        self, patients: Sequence[str] | None = None, *, released_only: bool = False
    ) -> pd.DataFrame:
        """CBC values (cells/µL): specimen details + analyte, per_uL."""
        table = query.cbc(self.engine, patients)
        if released_only:
            table = query.only_released(self.engine, table)
        return table.drop(columns="specimen_row")

    def qc_flags(self, patients: Sequence[str] | None = None) -> pd.DataFrame:
        """QC flags of the newest specimen versions."""
        return query.qc_flags(self.engine, patients).drop(columns="specimen_row")

    def population_table(
        self,
        patients: Sequence[str] | None = None,
        *,
        timepoints: Sequence[str] | None = None,
        visits: Sequence[str] | None = None,
        released_only: bool = False,
    ) -> pd.DataFrame:
        """The newest counts as ``populations.csv`` has them (what ``compare`` takes), for a
        cohort: given patients, and/or specimens of given timepoints or visits (``released_only``:
        of released specimens only)."""
        table = self.populations(patients, released_only=released_only)
        if timepoints is not None:
            table = table[table["timepoint"].isin([str(t) for t in timepoints])]
        if visits is not None:
            table = table[table["visit"].isin([str(v) for v in visits])]
        return table.reset_index(drop=True)

    def history(
        self,
        patient: str,
        populations: Sequence[str] | None = None,
        *,
        sources: dict[str, str] | None = None,
        released_only: bool = False,
    ) -> pd.DataFrame:
        """One patient's counts over time (:data:`HISTORY_COLUMNS`): each population from its
        reporting tube (``sources``; default the bundled panels' ``report:``), and the CBC
        (WBC, ANC, ALC, AMC; tube 'CBC'), in draw order (``released_only``: of released
        specimens only)."""
        from ..compare import _choose_tubes

        table = self.populations([patient], released_only=released_only)
        if table.empty:
            known = ", ".join(self.patients()["patient"].head(20)) or "none"
            what = "released results" if released_only else "results"
            raise DatabaseError(
                f"results database {self.url}: no {what} for patient {patient!r} "
                f"(patients: {known})"
            )
        if sources is None:
            from ..panels import Panels

            sources = Panels.load().report
        wanted = list(dict.fromkeys(table["population"]))
        if populations is not None:
            unknown = [p for p in populations if p not in wanted and p not in _CBC]
            if unknown:
                raise DatabaseError(
                    f"patient {patient!r} has no population {', '.join(map(repr, unknown))} "
                    f"(has: {', '.join(wanted)})"
                )
            wanted = [p for p in populations if p in wanted]
        tubes = _choose_tubes(table, wanted, sources, [])
        keep = [
            tubes.get(p) == t and p in wanted for p, t in zip(table["population"], table["tube"])
        ]
        rows = table[keep].rename(
            columns={"absolute_error_per_uL": "error", "reference_flag": "flag"}
        )
        cbc = self.cbc([patient], released_only=released_only)
        if populations is not None:
            cbc = cbc[cbc["analyte"].isin(populations)]
        if not cbc.empty:
            cbc = cbc.rename(columns={"analyte": "population", "per_uL": "absolute_per_uL"})
            cbc = cbc.assign(
                tube=CBC_TUBE,
                error=float("nan"),
                reference_low=float("nan"),
                reference_high=float("nan"),
                flag="",
                qc_status="",
            )
            rows = pd.concat([rows, cbc], ignore_index=True)
        out = rows[list(HISTORY_COLUMNS)].sort_values(
            ["draw_time", "specimen", "tube", "population"], kind="stable"
        )
        return out.reset_index(drop=True)

    # --- control material ------------------------------------------------------------------

    def control_targets(self, lot: str | None = None) -> pd.DataFrame:
        """Stored lot targets (columns of :func:`cytowhim.controls.read_lot_file`)."""
        from sqlalchemy import select

        from ..controls import targets_frame
        from . import schema as S

        t = S.control_targets
        q = select(t.c.lot, t.c.population, t.c.tube, t.c.mean, t.c.sd, t.c.low, t.c.high)
        if lot is not None:
            q = q.where(t.c.lot == lot)
        with self.engine.connect() as conn:
            return targets_frame([dict(r) for r in conn.execute(q).mappings()])

    def control_reviews(self) -> pd.DataFrame:
        """Reviews of control failures: lot, day, reviewed_by, reviewed_utc, reason."""
        from sqlalchemy import select

        from . import schema as S

        t = S.control_reviews
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.lot, t.c.day, t.c.reviewed_by, t.c.reviewed_utc, t.c.reason)
            ).mappings()
            return pd.DataFrame(
                [dict(r) for r in rows],
                columns=["lot", "day", "reviewed_by", "reviewed_utc", "reason"],
            )

    def control_report(self, lot: str | None = None) -> Any:
        """:class:`cytowhim.controls.ControlReport` of the control results against their
        stored targets (all lots, or ``lot``)."""
        from ..controls import evaluate

        targets = self.control_targets(lot)
        results = query.populations(self.engine, None, controls=True)
        return evaluate(results, targets, self.control_reviews())


_CBC = ("WBC", "ANC", "ALC", "AMC")


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x != x else x

"""The results database's tables, as the newest migration leaves them (SQLAlchemy Core).

One row per patient; per specimen one row per *version* (a new version when its inputs change:
FCS files, manifest row, CBC, strategies, rules; the part's ``inputs_key``); below a version its
tubes, population counts, CBC values and QC flags. Runs record who ran what, when, with which
versions. Control lots hold targets for control material; control reviews release a day whose
control broke a Westgard rule. The migrations (``migrations/versions``) build exactly these
tables; :mod:`tests.test_db` checks that they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: Text columns of a population row, as ``populations.csv`` has them.
POPULATION_TEXT = (
    "tube",
    "population",
    "parent",
    "base",
    "units",
    "reported",
    "qc",
    "qc_status",
    "reference_flag",
    "reference_band",
    "reference_source",
)
#: Numeric columns of a population row (floats; events and base_events are integers).
POPULATION_NUMBERS = (
    "events",
    "percent_of_parent",
    "base_events",
    "percent_of_base",
    "absolute_per_uL",
    "absolute_error_per_uL",
    "reference_low",
    "reference_high",
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_uid", String(36), nullable=False, unique=True),
    Column("started_utc", DateTime, nullable=False),
    Column("run_by", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("cytowhim_version", String(40), nullable=False),
    Column("out_dir", Text, nullable=False),
    Column("command", Text, nullable=False),
    Column("settings", Text, nullable=False),  # JSON: strategy hashes, panels, rules
)

patients = Table(
    "patients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient", String(200), nullable=False, unique=True),
    Column("sex", String(16), nullable=False, default=""),
)

specimens = Table(
    "specimens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False, index=True),
    Column("specimen", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("inputs_key", String(64), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("registered_utc", DateTime, nullable=False),
    Column("timepoint", String(200), nullable=False),
    Column("visit", String(200), nullable=False),
    Column("draw_time", DateTime),
    Column("draw_date", Date),  # the manifest's draw_date, or draw_time's date
    Column("dose_time", DateTime),
    Column("hours_post_dose", Float),
    Column("age", Float),
    Column("control_lot", String(200), nullable=False, default=""),  # migration 0002
    # not unique: going back to earlier inputs (a corrected manifest) adds a new version
    Index("ix_specimens_inputs", "patient_id", "specimen", "inputs_key"),
    UniqueConstraint("patient_id", "specimen", "version", name="uq_specimen_version"),
)

tubes = Table(
    "tubes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("specimen_row", Integer, ForeignKey("specimens.id"), nullable=False, index=True),
    Column("tube", String(200), nullable=False),
    Column("file", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("strategy_sha256", String(64), nullable=False),
    Column("n_events", Integer),
)

populations = Table(
    "populations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("specimen_row", Integer, ForeignKey("specimens.id"), nullable=False, index=True),
    *(Column(c, Text, nullable=False, default="") for c in POPULATION_TEXT),
    *(Column(c, Float) for c in POPULATION_NUMBERS),
)

cbc = Table(
    "cbc",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("specimen_row", Integer, ForeignKey("specimens.id"), nullable=False, index=True),
    Column("analyte", String(16), nullable=False),
    Column("per_uL", Float, nullable=False),
)

qc_flags = Table(
    "qc_flags",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("specimen_row", Integer, ForeignKey("specimens.id"), nullable=False, index=True),
    Column("tube", Text, nullable=False),
    Column("population", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
)

control_targets = Table(  # migration 0002
    "control_targets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("lot", String(200), nullable=False),
    Column("population", String(200), nullable=False),
    Column("tube", String(200), nullable=False, default=""),
    Column("mean", Float),
    Column("sd", Float),
    Column("low", Float),
    Column("high", Float),
    Column("source", Text, nullable=False, default=""),
    Column("registered_utc", DateTime, nullable=False),
    UniqueConstraint("lot", "population", "tube", name="uq_control_target"),
)

control_reviews = Table(  # migration 0002
    "control_reviews",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("lot", String(200), nullable=False),
    Column("day", Date, nullable=False),
    Column("reviewed_by", String(200), nullable=False),
    Column("reviewed_utc", DateTime, nullable=False),
    Column("reason", Text, nullable=False),
)

# --- review and sign-out (migration 0003; cytowhim.db.review) ---------------------------------

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),  # technician | director
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_utc", DateTime, nullable=False),
)

review_status = Table(  # one row per patient's specimen (all its versions)
    "review_status",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient", String(200), nullable=False),
    Column("specimen", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # pending | reviewed | released
    Column("etag", Integer, nullable=False),  # bumped by every change of the specimen
    Column("changed_by", String(200), nullable=False),
    Column("changed_utc", DateTime, nullable=False),
    UniqueConstraint("patient", "specimen", name="uq_review_status"),
)

gate_overrides = Table(
    "gate_overrides",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient", String(200), nullable=False),
    Column("specimen", String(200), nullable=False),
    Column("tube", String(200), nullable=False),
    Column("file", Text, nullable=False),
    Column("population", String(200), nullable=False),
    Column("gate_before", Text, nullable=False),  # JSON: the gate as in a strategy file
    Column("gate_after", Text, nullable=False),
    Column("counts_before", Text, nullable=False),  # JSON: population -> events, absolute
    Column("counts_after", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_utc", DateTime, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Index("ix_gate_overrides_specimen", "patient", "specimen"),
)

review_audit = Table(  # append-only: triggers refuse UPDATE and DELETE
    "review_audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("utc", DateTime, nullable=False),
    Column("user_name", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("patient", String(200), nullable=False),
    Column("specimen", String(200), nullable=False),
    Column("detail", Text, nullable=False),
    Column("before", Text, nullable=False),  # JSON
    Column("after", Text, nullable=False),  # JSON
)

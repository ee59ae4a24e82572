"""Results: runs, patients, specimen versions, tubes, population counts, CBC, QC flags.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

TEXT = (
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
NUMBERS = (
    "events",
    "percent_of_parent",
    "base_events",
    "percent_of_base",
    "absolute_per_uL",
    "absolute_error_per_uL",
    "reference_low",
    "reference_high",
)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_uid", sa.String(36), nullable=False, unique=True),
        sa.Column("started_utc", sa.DateTime, nullable=False),
        sa.Column("run_by", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("cytowhim_version", sa.String(40), nullable=False),
        sa.Column("out_dir", sa.Text, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient", sa.String(200), nullable=False, unique=True),
        sa.Column("sex", sa.String(16), nullable=False),
    )
    op.create_table(
        "specimens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("specimen", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("inputs_key", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("registered_utc", sa.DateTime, nullable=False),
        sa.Column("timepoint", sa.String(200), nullable=False),
        sa.Column("visit", sa.String(200), nullable=False),
        sa.Column("draw_time", sa.DateTime),
        sa.Column("draw_date", sa.Date),
        sa.Column("dose_time", sa.DateTime),
        sa.Column("hours_post_dose", sa.Float),
        sa.Column("age", sa.Float),
        sa.UniqueConstraint("patient_id", "specimen", "version", name="uq_specimen_version"),
    )
    op.create_index("ix_specimens_patient_id", "specimens", ["patient_id"])
    op.create_index("ix_specimens_inputs", "specimens", ["patient_id", "specimen", "inputs_key"])
    for name, columns in (
        (
            "tubes",
            [
                sa.Column("tube", sa.String(200), nullable=False),
                sa.Column("file", sa.Text, nullable=False),
                sa.Column("file_sha256", sa.String(64), nullable=False),
                sa.Column("strategy_sha256", sa.String(64), nullable=False),
                sa.Column("n_events", sa.Integer),
            ],
        ),
        (
            "populations",
            [sa.Column(c, sa.Text, nullable=False) for c in TEXT]
            + [sa.Column(c, sa.Float) for c in NUMBERS],
        ),
        (
            "cbc",
            [
                sa.Column("analyte", sa.String(16), nullable=False),
                sa.Column("per_uL", sa.Float, nullable=False),
            ],
        ),
        (
            "qc_flags",
            [
                sa.Column("tube", sa.Text, nullable=False),
                sa.Column("population", sa.Text, nullable=False),
                sa.Column("rule", sa.Text, nullable=False),
                sa.Column("severity", sa.String(16), nullable=False),
                sa.Column("message", sa.Text, nullable=False),
            ],
        ),
    ):
        op.create_table(
            name,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("specimen_row", sa.Integer, sa.ForeignKey("specimens.id"), nullable=False),
            *columns,
        )
        op.create_index(f"ix_{name}_specimen_row", name, ["specimen_row"])

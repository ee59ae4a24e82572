"""Control material: a specimen's control lot, lot targets, reviews of a day's control failure.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite can; a batch copy would trip the foreign keys of filled tables)
    op.add_column(
        "specimens", sa.Column("control_lot", sa.String(200), nullable=False, server_default="")
    )
    op.create_table(
        "control_targets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("lot", sa.String(200), nullable=False),
        sa.Column("population", sa.String(200), nullable=False),
        sa.Column("tube", sa.String(200), nullable=False),
        sa.Column("mean", sa.Float),
        sa.Column("sd", sa.Float),
        sa.Column("low", sa.Float),
        sa.Column("high", sa.Float),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("registered_utc", sa.DateTime, nullable=False),
        sa.UniqueConstraint("lot", "population", "tube", name="uq_control_target"),
    )
    op.create_table(
        "control_reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("lot", sa.String(200), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("reviewed_by", sa.String(200), nullable=False),
        sa.Column("reviewed_utc", sa.DateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )

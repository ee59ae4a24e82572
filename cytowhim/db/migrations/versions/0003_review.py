"""Review and sign-out: users, specimen review status, gate overrides, an append-only audit trail.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION review_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'review_audit is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_utc", sa.DateTime, nullable=False),
    )
    op.create_table(
        "review_status",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("specimen", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("etag", sa.Integer, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("changed_utc", sa.DateTime, nullable=False),
        sa.UniqueConstraint("patient", "specimen", name="uq_review_status"),
    )
    op.create_table(
        "gate_overrides",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("specimen", sa.String(200), nullable=False),
        sa.Column("tube", sa.String(200), nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("population", sa.String(200), nullable=False),
        sa.Column("gate_before", sa.Text, nullable=False),
        sa.Column("gate_after", sa.Text, nullable=False),
        sa.Column("counts_before", sa.Text, nullable=False),
        sa.Column("counts_after", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_utc", sa.DateTime, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_index("ix_gate_overrides_specimen", "gate_overrides", ["patient", "specimen"])
    op.create_table(
        "review_audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("utc", sa.DateTime, nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("specimen", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("before", sa.Text, nullable=False),
        sa.Column("after", sa.Text, nullable=False),
    )
    # append-only in the database itself: UPDATE and DELETE are refused
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER review_audit_no_change BEFORE UPDATE OR DELETE ON review_audit "
            "FOR EACH ROW EXECUTE FUNCTION review_audit_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER review_audit_no_{verb.lower()} BEFORE {verb} ON review_audit "
                "BEGIN SELECT RAISE(ABORT, 'review_audit is append-only'); END"
            )

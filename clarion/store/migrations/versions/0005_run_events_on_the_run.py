"""A run's events move onto the run: `workflow_runs.events`, a JSON array oldest first, replaces the
`workflow_run_events` table, so that a step's checkpoint rewrites one row instead of adding several.
Downgrading brings the table back empty.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# Each event as the engine now writes it, keeping the old table's row id as its id.
POSTGRES_COPY = """
UPDATE workflow_runs SET events = moved.events
FROM (
    SELECT run_id, jsonb_agg(jsonb_build_object(
        'id', pk::text, 'event', event, 'status', status, 'step_ref', step_ref, 'step_type', step_type,
        'attempt', attempt, 'data', data,
        'inserted_at', to_char(inserted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    ) ORDER BY pk) AS events
    FROM workflow_run_events GROUP BY run_id
) AS moved
WHERE workflow_runs.id = moved.run_id
"""
SQLITE_COPY = """
UPDATE workflow_runs SET events = (
    SELECT json_group_array(json_object(
        'id', CAST(e.pk AS TEXT), 'event', e.event, 'status', e.status, 'step_ref', e.step_ref,
        'step_type', e.step_type, 'attempt', e.attempt, 'data', json(e.data),
        'inserted_at', replace(e.inserted_at, ' ', 'T') || '+00:00'
    ))
    FROM (SELECT * FROM workflow_run_events WHERE run_id = workflow_runs.id ORDER BY pk) AS e
)
WHERE EXISTS (SELECT 1 FROM workflow_run_events WHERE run_id = workflow_runs.id)
"""


def upgrade() -> None:
    op.add_column("workflow_runs", sa.Column("events", JSON, nullable=False, server_default="[]"))
    op.execute(POSTGRES_COPY if op.get_bind().dialect.name == "postgresql" else SQLITE_COPY)
    op.drop_index(op.f("ix_workflow_run_events_run_id_pk"), table_name="workflow_run_events")
    op.drop_table("workflow_run_events")


def downgrade() -> None:
    op.create_table(
        "workflow_run_events",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("step_ref", sa.String(length=255), nullable=True),
        sa.Column("step_type", sa.String(length=32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_workflow_run_events_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_workflow_run_events")),
    )
    op.create_index(
        op.f("ix_workflow_run_events_run_id_pk"), "workflow_run_events", ["run_id", "pk"], unique=False
    )
    op.drop_column("workflow_runs", "events")

"""The first run of each recipient through a workflow whose trigger frequency is once per recipient (or
per recipient and tenant): later triggers find the recipient here and start no run for it.

Revision ID: 0015
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow_first_runs",
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("workflow_key", sa.String(length=255), nullable=False),
        sa.Column("recipient_collection", sa.String(length=255), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("tenant", sa.String(length=255), nullable=False),
        sa.Column("workflow_run_id", sa.String(length=36), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_workflow_first_runs_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "environment_id",
            "workflow_key",
            "recipient_collection",
            "recipient_id",
            "tenant",
            name=op.f("pk_workflow_first_runs"),
        ),
    )


def downgrade() -> None:
    op.drop_table("workflow_first_runs")

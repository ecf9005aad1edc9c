"""Indexes for the workflow recipient runs list filtered by recipient or by workflow, newest first.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECIPIENT = "ix_workflow_runs_environment_id_recipient_collection_recipient_id_pk"
WORKFLOW = "ix_workflow_runs_environment_id_workflow_key_pk"


def upgrade() -> None:
    op.create_index(
        op.f(RECIPIENT), "workflow_runs", ["environment_id", "recipient_collection", "recipient_id", "pk"]
    )
    op.create_index(op.f(WORKFLOW), "workflow_runs", ["environment_id", "workflow_key", "pk"])


def downgrade() -> None:
    op.drop_index(op.f(WORKFLOW), table_name="workflow_runs")
    op.drop_index(op.f(RECIPIENT), table_name="workflow_runs")

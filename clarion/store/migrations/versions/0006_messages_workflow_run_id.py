"""Messages carry their trigger's `workflow_run_id` as an indexed column, filled from `source` for the
messages already stored, so that listing a trigger's messages (`GET /v1/messages?workflow_run_id=`) is an
index range instead of a scan of the environment's messages.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_messages_environment_id_workflow_run_id_pk"
BACKFILL = {
    "postgresql": "UPDATE messages SET workflow_run_id = source ->> 'workflow_run_id'",
    "sqlite": "UPDATE messages SET workflow_run_id = json_extract(source, '$.workflow_run_id')",
}


def upgrade() -> None:
    op.add_column("messages", sa.Column("workflow_run_id", sa.String(length=36), nullable=True))
    op.execute(BACKFILL[op.get_bind().dialect.name])
    op.create_index(op.f(INDEX), "messages", ["environment_id", "workflow_run_id", "pk"])


def downgrade() -> None:
    op.drop_index(op.f(INDEX), table_name="messages")
    op.drop_column("messages", "workflow_run_id")

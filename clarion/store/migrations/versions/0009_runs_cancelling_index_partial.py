"""The runs' cancelling index holds only the runs that have a cancellation key, the only ones a cancel
looks for. Most triggers give none, so every run wrote an entry there that nothing ever read.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANCELLING = "ix_workflow_runs_environment_id_workflow_key_cancellation_key"


def _recreate(where: str | None) -> None:
    op.drop_index(op.f(CANCELLING), table_name="workflow_runs")
    held = None if where is None else sa.text(where)
    op.create_index(
        op.f(CANCELLING),
        "workflow_runs",
        ["environment_id", "workflow_key", "cancellation_key"],
        sqlite_where=held,
        postgresql_where=held,
    )


def upgrade() -> None:
    _recreate("cancellation_key IS NOT NULL")


def downgrade() -> None:
    _recreate(None)

"""Two of the jobs' indexes hold only the jobs their queries look for: the unique index the jobs with a
key, the staging index the scheduled and retryable jobs. Every job was in both before, so each insert
and each change of state wrote entries nothing ever read.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNIQUE = "ix_jobs_unique_key"
STAGING = "ix_jobs_state_queue_scheduled_at"


def _recreate(unique_held: str, staging_where: str | None) -> None:
    op.drop_index(op.f(UNIQUE), table_name="jobs")
    op.drop_index(op.f(STAGING), table_name="jobs")
    held = sa.text(unique_held)
    op.create_index(
        op.f(UNIQUE), "jobs", ["unique_key"], unique=True, sqlite_where=held, postgresql_where=held
    )
    waiting = None if staging_where is None else sa.text(staging_where)
    op.create_index(
        op.f(STAGING),
        "jobs",
        ["state", "queue", "scheduled_at"],
        sqlite_where=waiting,
        postgresql_where=waiting,
    )


def upgrade() -> None:
    _recreate(
        "unique_key IS NOT NULL AND state NOT IN ('cancelled', 'discarded')",
        "state IN ('scheduled', 'retryable')",
    )


def downgrade() -> None:
    _recreate("state NOT IN ('cancelled', 'discarded')", None)

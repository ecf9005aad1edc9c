"""A batched message's counts of all its batch's activities and distinct actors, which the feed's items
show (`total_activities`, `total_actors`) where the message holds only the rendered ones. NULL for the
messages of one trigger, whose counts are their lists' lengths; adding nullable columns rewrites no rows.

Revision ID: 0018
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("total_activities", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("total_actors", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "total_actors")
    op.drop_column("messages", "total_activities")

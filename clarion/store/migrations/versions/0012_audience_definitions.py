"""Audiences declared in files (`audiences/<key>/audience.json`): each audience has a type, static (members
added and removed) or dynamic (members computed from their users' properties), and the document it was
pushed from with its SHA-256. Audiences created by adding members to them are static and have no document.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("type", sa.String(length=16), nullable=False, server_default="static"))
        batch_op.add_column(
            sa.Column(
                "definition", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            )
        )
        batch_op.add_column(sa.Column("sha", sa.String(length=64)))


def downgrade() -> None:
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.drop_column("sha")
        batch_op.drop_column("definition")
        batch_op.drop_column("type")

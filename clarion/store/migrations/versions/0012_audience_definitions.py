"""Audiences declared in files (`audiences/<key>/audience.json`): each audience has a type, static (members
added and removed) or dynamic (members computed from their users' properties), and the document it was
pushed from with its SHA-256. Audiences created by adding members to them are static and have no document.

A run's trigger source may name the audience that started it (`audience:<key>`), up to 300 characters. On
PostgreSQL the column is widened (no rewrite of the table); SQLite does not enforce a text's declared
length, and altering a column there would copy the whole runs table.

Revision ID: 0012
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0015"
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
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "workflow_runs", "trigger_source", type_=sa.String(length=300), existing_type=sa.String(length=32)
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Runs started by an audience entry keep only their source's type.
        op.execute("UPDATE workflow_runs SET trigger_source = split_part(trigger_source, ':', 1)")
        op.alter_column(
            "workflow_runs", "trigger_source", type_=sa.String(length=32), existing_type=sa.String(length=300)
        )
    with op.batch_alter_table("audiences", schema=None) as batch_op:
        batch_op.drop_column("sha")
        batch_op.drop_column("definition")
        batch_op.drop_column("type")

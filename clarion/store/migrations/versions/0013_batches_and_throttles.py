"""Batches and their activities, and throttle windows: what the batch and throttle steps keep between runs.
One open batch per identity is held by a partial unique index; activities live in a table of their own,
keyed by batch, so a batch of any size pages through `GET /v1/messages/{id}/activities`, and a message made
after a batch names it (`messages.batch_id`).

Revision ID: 0013
Revises: 0016
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPEN = sa.text("state = 'open'")


def _environment(table: str) -> list[Any]:
    return [
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f(f"fk_{table}_environment_id_environments"),
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("pk", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        *_environment("batches"),
        sa.Column("workflow_key", sa.String(length=255), nullable=False),
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("step_ref", sa.String(length=255), nullable=False),
        sa.Column("recipient_collection", sa.String(length=255), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_by", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("activity_count", sa.Integer(), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extension_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_batches")),
        sa.UniqueConstraint("id", name=op.f("uq_batches_id")),
    )
    op.create_index(
        "ix_batches_open",
        "batches",
        [
            "environment_id",
            "workflow_key",
            "version_id",
            "step_ref",
            "recipient_collection",
            "recipient_id",
            "key",
        ],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.create_table(
        "batch_activities",
        sa.Column("pk", ROW_ID, autoincrement=True, nullable=False),
        *_environment("batch_activities"),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("actor_collection", sa.String(length=255), nullable=True),
        sa.Column("actor_id", sa.String(length=255), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_batch_activities_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_batch_activities")),
        sa.UniqueConstraint("run_id", "batch_id", name=op.f("uq_batch_activities_run_id_batch_id")),
    )
    op.create_index(op.f("ix_batch_activities_batch_id_pk"), "batch_activities", ["batch_id", "pk"])
    op.create_table(
        "throttles",
        *_environment("throttles"),
        sa.Column("workflow_key", sa.String(length=255), nullable=False),
        sa.Column("step_ref", sa.String(length=255), nullable=False),
        sa.Column("recipient_collection", sa.String(length=255), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "environment_id",
            "workflow_key",
            "step_ref",
            "recipient_collection",
            "recipient_id",
            "key",
            name=op.f("pk_throttles"),
        ),
    )
    op.create_index(op.f("ix_throttles_window_ends_at"), "throttles", ["window_ends_at"])
    op.add_column("messages", sa.Column("batch_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "batch_id")
    op.drop_table("throttles")
    op.drop_table("batch_activities")
    op.drop_table("batches")

"""A message's events move onto the message: `messages.events`, a JSON array oldest first, replaces the
`message_events` table, so that making a message writes one row instead of three, and an engagement
change updates the row it changes anyway. Downgrading brings the table back empty.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# Each event as the store now writes it, keeping the old table's row id as its id.
POSTGRES_COPY = """
UPDATE messages SET events = moved.events
FROM (
    SELECT message_id, jsonb_agg(jsonb_build_object(
        'id', pk::text, 'type', type, 'data', data,
        'inserted_at', to_char(inserted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    ) ORDER BY pk) AS events
    FROM message_events GROUP BY message_id
) AS moved
WHERE messages.id = moved.message_id
"""
SQLITE_COPY = """
UPDATE messages SET events = (
    SELECT json_group_array(json_object(
        'id', CAST(e.pk AS TEXT), 'type', e.type, 'data', json(e.data),
        'inserted_at', replace(e.inserted_at, ' ', 'T') || '+00:00'
    ))
    FROM (SELECT * FROM message_events WHERE message_id = messages.id ORDER BY pk) AS e
)
WHERE EXISTS (SELECT 1 FROM message_events WHERE message_id = messages.id)
"""


def upgrade() -> None:
    op.add_column("messages", sa.Column("events", JSON, nullable=False, server_default="[]"))
    op.execute(POSTGRES_COPY if op.get_bind().dialect.name == "postgresql" else SQLITE_COPY)
    op.drop_index(op.f("ix_message_events_message_id_pk"), table_name="message_events")
    op.drop_table("message_events")


def downgrade() -> None:
    op.create_table(
        "message_events",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("data", JSON, nullable=True),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_message_events_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_message_events")),
    )
    op.create_index(
        op.f("ix_message_events_message_id_pk"), "message_events", ["message_id", "pk"], unique=False
    )
    op.drop_column("messages", "events")

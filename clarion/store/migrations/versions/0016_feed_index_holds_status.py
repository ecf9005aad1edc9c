"""The feed's index also holds each message's delivery status, after the timestamps it holds for the badge
counts: the feed leaves out messages still `queued` (held for a send window until it opens), and its
page and counts then still read the index alone. It is rebuilt under the same name, so a new message
still writes one feed entry.

Revision ID: 0016
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FEED = "ix_messages_feed"
FEED_COLUMNS = [
    "environment_id",
    "recipient_collection",
    "recipient_id",
    "channel_id",
    "pk",
    "archived_at",
    "read_at",
    "seen_at",
]


def upgrade() -> None:
    op.drop_index(op.f(FEED), table_name="messages")
    op.create_index(op.f(FEED), "messages", [*FEED_COLUMNS, "status"])


def downgrade() -> None:
    op.drop_index(op.f(FEED), table_name="messages")
    op.create_index(op.f(FEED), "messages", FEED_COLUMNS)

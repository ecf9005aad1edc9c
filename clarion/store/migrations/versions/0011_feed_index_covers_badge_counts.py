"""The feed's index also holds each message's archived, read and seen timestamps, after `pk`: the feed's
badge counts (every unarchived message of a user on a channel, those unread, those unseen) are then
counted from the index alone instead of reading each of the user's rows, and the page still walks it
newest first. It replaces the index it widens, so a new message writes one feed entry as before.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NARROW = "ix_messages_environment_id_recipient_collection_recipient_id_channel_id_pk"
FEED = "ix_messages_feed"
FEED_KEY = ["environment_id", "recipient_collection", "recipient_id", "channel_id", "pk"]


def upgrade() -> None:
    op.create_index(op.f(FEED), "messages", [*FEED_KEY, "archived_at", "read_at", "seen_at"])
    op.drop_index(op.f(NARROW), table_name="messages")


def downgrade() -> None:
    op.create_index(op.f(NARROW), "messages", FEED_KEY)
    op.drop_index(op.f(FEED), table_name="messages")

"""What users, objects and tenants share as recipients: their record shape, inline channel data and
preferences written in the caller's transaction, and the clean-up when a recipient is deleted.

Users are stored in `users`, objects and tenants in `objects`; everything that hangs off a recipient is keyed
by (collection, id) with users in the `$users` collection (`clarion.store.tables`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.json_merge import deep_merge
from clarion.store.tables import (
    USERS_COLLECTION,
    audience_members,
    channel_data,
    preference_sets,
    subscriptions,
)


@dataclass(frozen=True)
class RecipientRecord:
    collection: str
    id: str
    properties: dict[str, Any]
    inserted_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class InlineRecipientData:
    """Channel data (channel id → data) and preference sets (set id → set) sent along with an upsert."""

    channel_data: dict[str, dict[str, Any]] | None = None
    preferences: dict[str, dict[str, Any]] | None = None


async def write_inline_data(
    connection: AsyncConnection,
    environment_id: str,
    collection: str,
    recipient_id: str,
    inline: InlineRecipientData,
    now: datetime,
) -> None:
    """Set inline channel data (replacing per channel) and deep-merge inline preference sets, as Knock does
    on identify."""
    name = connection.dialect.name
    key = {"environment_id": environment_id, "recipient_collection": collection, "recipient_id": recipient_id}
    if inline.channel_data:
        await connection.execute(
            dialect.upsert(
                channel_data,
                name,
                [
                    {**key, "channel_id": channel_id, "data": data, "inserted_at": now, "updated_at": now}
                    for channel_id, data in inline.channel_data.items()
                ],
                conflict=["environment_id", "recipient_collection", "recipient_id", "channel_id"],
                update=["data", "updated_at"],
            )
        )
    if inline.preferences:
        await connection.execute(
            dialect.upsert(
                preference_sets,
                name,
                [
                    {**key, "set_id": set_id, "preferences": body, "inserted_at": now, "updated_at": now}
                    for set_id, body in inline.preferences.items()
                ],
                conflict=["environment_id", "recipient_collection", "recipient_id", "set_id"],
                update=lambda excluded: {
                    "preferences": dialect.deep_merge(preference_sets.c.preferences, excluded.preferences),
                    "updated_at": excluded.updated_at,
                },
            )
        )


async def delete_recipient_data(
    connection: AsyncConnection, environment_id: str, collection: str, recipient_ids: list[str]
) -> None:
    """Remove everything attached to the given recipients: channel data, preferences, subscriptions held
    by them or on them, and (for users) audience memberships."""
    for table in (channel_data, preference_sets):
        await connection.execute(
            table.delete().where(
                table.c.environment_id == environment_id,
                table.c.recipient_collection == collection,
                table.c.recipient_id.in_(recipient_ids),
            )
        )
    await connection.execute(
        subscriptions.delete().where(
            subscriptions.c.environment_id == environment_id,
            sa.or_(
                sa.and_(
                    subscriptions.c.recipient_collection == collection,
                    subscriptions.c.recipient_id.in_(recipient_ids),
                ),
                sa.and_(
                    subscriptions.c.object_collection == collection,
                    subscriptions.c.object_id.in_(recipient_ids),
                ),
            ),
        )
    )
    if collection == USERS_COLLECTION:
        await connection.execute(
            audience_members.delete().where(
                audience_members.c.environment_id == environment_id,
                audience_members.c.user_id.in_(recipient_ids),
            )
        )


def merge_duplicates(items: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Fold repeated ids of one batch into one entry (later wins, deep-merged), since one INSERT … ON
    CONFLICT statement may touch each row only once."""
    merged: dict[str, dict[str, Any]] = {}
    for recipient_id, properties in items:
        merged[recipient_id] = deep_merge(merged.get(recipient_id, {}), properties)
    return merged

"""Channel data: what one recipient (user, object or tenant, addressed by (collection, id)) stores for one
channel, such as push tokens or chat connections.

A set replaces the data for that channel and, as Knock does, creates the recipient with no properties when it
does not exist yet, in the same transaction (`clarion.store.recipients.ensure_recipients`). The data is stored
as given: checking it against the channel's provider happens before (`clarion.schemas.channel_data`).
Inline channel data on identify is written by `clarion.store.recipients`; deleting a recipient deletes its
channel data there too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batching import chunks
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.recipients import ensure_recipients
from clarion.store.tables import channel_data


@dataclass(frozen=True)
class ChannelDataRecord:
    channel_id: str
    data: dict[str, Any]
    updated_at: datetime


async def read_channel_data(
    connection: AsyncConnection, environment_id: str, channel_id: str, recipients: Sequence[RecipientKey]
) -> dict[RecipientKey, dict[str, Any]]:
    """The data that each of `recipients` that has some stores for the channel."""
    found: dict[RecipientKey, dict[str, Any]] = {}
    c = channel_data.c
    for chunk in chunks(list(dict.fromkeys(recipients))):
        rows = await connection.execute(
            sa.select(c.recipient_collection, c.recipient_id, c.data).where(
                c.environment_id == environment_id,
                c.channel_id == channel_id,
                sa.tuple_(c.recipient_collection, c.recipient_id).in_([tuple(key) for key in chunk]),
            )
        )
        found.update((RecipientKey(row.recipient_collection, row.recipient_id), row.data) for row in rows)
    return found


class ChannelDataStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def find(
        self, environment_id: str, collection: str, recipient_id: str, channel_id: str
    ) -> ChannelDataRecord | None:
        async with self.database.reader.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(
                        channel_data.c.channel_id, channel_data.c.data, channel_data.c.updated_at
                    ).where(
                        channel_data.c.environment_id == environment_id,
                        channel_data.c.recipient_collection == collection,
                        channel_data.c.recipient_id == recipient_id,
                        channel_data.c.channel_id == channel_id,
                    )
                )
            ).first()
        return ChannelDataRecord(row.channel_id, row.data, row.updated_at) if row else None

    async def set(
        self, environment_id: str, collection: str, recipient_id: str, channel_id: str, data: dict[str, Any]
    ) -> ChannelDataRecord:
        now = utcnow()
        async with self.database.writer.begin() as connection:
            await ensure_recipients(connection, environment_id, collection, [recipient_id])
            await connection.execute(
                dialect.upsert(
                    channel_data,
                    connection.dialect.name,
                    {
                        "environment_id": environment_id,
                        "recipient_collection": collection,
                        "recipient_id": recipient_id,
                        "channel_id": channel_id,
                        "data": data,
                        "inserted_at": now,
                        "updated_at": now,
                    },
                    conflict=["environment_id", "recipient_collection", "recipient_id", "channel_id"],
                    update=["data", "updated_at"],
                )
            )
        return ChannelDataRecord(channel_id, data, now)

    async def unset(self, environment_id: str, collection: str, recipient_id: str, channel_id: str) -> None:
        """Remove the data if any; unsetting what is not set is not an error."""
        async with self.database.writer.begin() as connection:
            await connection.execute(
                channel_data.delete().where(
                    channel_data.c.environment_id == environment_id,
                    channel_data.c.recipient_collection == collection,
                    channel_data.c.recipient_id == recipient_id,
                    channel_data.c.channel_id == channel_id,
                )
            )

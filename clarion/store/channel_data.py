"""Channel data: what one recipient (user, object or tenant, addressed by (collection, id)) stores for one
channel, such as push tokens or chat connections.

A set replaces the data for that channel and, as Knock does, creates the recipient with no properties when it
does not exist yet, in the same transaction. The data is stored as given: checking it against the channel's
provider happens before (`clarion.schemas.channel_data`). Inline channel data on identify is written by
`clarion.store.recipients`; deleting a recipient deletes its channel data there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.tables import USERS_COLLECTION, channel_data, objects, users


@dataclass(frozen=True)
class ChannelDataRecord:
    channel_id: str
    data: dict[str, Any]
    updated_at: datetime


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
            await _ensure_recipient(connection, environment_id, collection, recipient_id, now)
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


async def _ensure_recipient(
    connection: AsyncConnection, environment_id: str, collection: str, recipient_id: str, now: datetime
) -> None:
    row: dict[str, Any] = {
        "environment_id": environment_id,
        "id": recipient_id,
        "properties": {},
        "inserted_at": now,
        "updated_at": now,
    }
    if collection == USERS_COLLECTION:
        statement = dialect.insert_ignore(
            users, connection.dialect.name, row, conflict=["environment_id", "id"]
        )
    else:
        statement = dialect.insert_ignore(
            objects,
            connection.dialect.name,
            {**row, "collection": collection},
            conflict=["environment_id", "collection", "id"],
        )
    await connection.execute(statement)

"""Objects: any non-user recipient or subscribable thing, addressed by (collection, id).

Upserts deep-merge properties in the database exactly as users do (`clarion.store.users`), and a batch that
sets one object several times has the outcome of those sets run one by one. Tenants are
objects of the reserved `$tenants` collection; `clarion.store.tenants` adds their settings on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import NotFoundError
from clarion.store.batching import ordered_chunks
from clarion.store.db import Database
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipients import (
    InlineRecipientData,
    RecipientEntry,
    RecipientRecord,
    delete_recipient_data,
    upsert_entries,
    upsert_recipients,
)
from clarion.store.tables import objects


def object_record(row: sa.Row[Any] | Mapping[str, Any]) -> RecipientRecord:
    m = row._mapping if isinstance(row, sa.Row) else row
    return RecipientRecord(m["collection"], m["id"], m["properties"], m["inserted_at"], m["updated_at"])


async def upsert_objects(
    connection: AsyncConnection, environment_id: str, collection: str, entries: Sequence[RecipientEntry]
) -> list[RecipientRecord]:
    """Set many objects of one collection in the caller's transaction, with the outcome of setting them one
    by one in the given order (`clarion.store.recipients.upsert_entries`); returns, for each entry, the
    object as it stood right after that entry."""
    return await upsert_entries(connection, environment_id, collection, entries, object_record)


async def load_objects(
    connection: AsyncConnection, environment_id: str, collection: str, object_ids: Sequence[str]
) -> list[RecipientRecord]:
    """The existing objects among `object_ids` of one collection, read on the caller's connection."""
    rows = await connection.execute(
        sa.select(objects).where(
            objects.c.environment_id == environment_id,
            objects.c.collection == collection,
            objects.c.id.in_(set(object_ids)),
        )
    )
    return [object_record(row) for row in rows]


async def delete_objects(
    connection: AsyncConnection, environment_id: str, collection: str, object_ids: Sequence[str]
) -> int:
    deleted = 0
    for chunk in ordered_chunks(set(object_ids), key=lambda object_id: (object_id,)):
        result = await connection.execute(
            objects.delete().where(
                objects.c.environment_id == environment_id,
                objects.c.collection == collection,
                objects.c.id.in_(chunk),
            )
        )
        deleted += int(result.rowcount)
    await delete_recipient_data(connection, environment_id, collection, object_ids)
    return deleted


class ObjectStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def set(
        self,
        environment_id: str,
        collection: str,
        object_id: str,
        properties: dict[str, Any],
        inline: InlineRecipientData | None = None,
    ) -> RecipientRecord:
        (record,) = await self.set_many(
            environment_id, collection, [(object_id, properties, inline or InlineRecipientData())]
        )
        return record

    async def set_many(
        self,
        environment_id: str,
        collection: str,
        entries: Sequence[RecipientEntry],
    ) -> list[RecipientRecord]:
        """Set many objects in one write (bulk set), as if one after another."""
        return await upsert_recipients(self.database, environment_id, collection, entries, object_record)

    async def get(self, environment_id: str, collection: str, object_id: str) -> RecipientRecord:
        found = await self.get_many(environment_id, collection, [object_id])
        if object_id not in found:
            raise NotFoundError(f"The object {object_id!r} was not found in the collection {collection!r}")
        return found[object_id]

    async def get_many(
        self, environment_id: str, collection: str, object_ids: Sequence[str]
    ) -> dict[str, RecipientRecord]:
        if not object_ids:
            return {}
        async with self.database.reader.connect() as connection:
            return {
                record.id: record
                for record in await load_objects(connection, environment_id, collection, object_ids)
            }

    async def page(
        self, environment_id: str, collection: str, page: PageRequest
    ) -> tuple[list[RecipientRecord], Page]:
        query = sa.select(objects).where(
            objects.c.environment_id == environment_id, objects.c.collection == collection
        )
        async with self.database.reader.connect() as connection:
            result = await fetch_page(connection, query, objects.c.pk, page)
        return [object_record(row) for row in result.rows], result

    async def delete(self, environment_id: str, collection: str, object_id: str) -> None:
        async with self.database.writer.begin() as connection:
            deleted = await delete_objects(connection, environment_id, collection, [object_id])
        if not deleted:
            raise NotFoundError(f"The object {object_id!r} was not found in the collection {collection!r}")

    async def delete_many(self, environment_id: str, collection: str, object_ids: Sequence[str]) -> int:
        async with self.database.writer.begin() as connection:
            return await delete_objects(connection, environment_id, collection, object_ids)

"""Objects: any non-user recipient or subscribable thing, addressed by (collection, id).

Upserts deep-merge properties in the database exactly as users do (`clarion.store.users`). Tenants are
objects of the reserved `$tenants` collection; `clarion.store.tenants` adds their settings on top.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from clarion.errors import NotFoundError
from clarion.store import dialect
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipients import (
    InlineRecipientData,
    RecipientRecord,
    delete_recipient_data,
    merge_duplicates,
    write_inline_data,
)
from clarion.store.tables import objects


def object_record(row: sa.Row[Any]) -> RecipientRecord:
    m = row._mapping
    return RecipientRecord(m["collection"], m["id"], m["properties"], m["inserted_at"], m["updated_at"])


@functools.cache
def _upsert_statement(dialect_name: str) -> Insert:
    """The set-object upsert, built once per dialect and run with one parameter row per object."""
    return dialect.upsert(
        objects,
        dialect_name,
        None,
        conflict=["environment_id", "collection", "id"],
        update=lambda excluded: {
            "properties": dialect.deep_merge(objects.c.properties, excluded.properties),
            "updated_at": excluded.updated_at,
        },
    ).returning(*objects.c)


async def upsert_objects(
    connection: AsyncConnection,
    environment_id: str,
    collection: str,
    entries: Sequence[tuple[str, dict[str, Any], InlineRecipientData]],
) -> list[RecipientRecord]:
    """Set many objects of one collection in the caller's transaction; returns them in first-seen order."""
    if not entries:
        return []
    now = utcnow()
    merged = merge_duplicates([(object_id, properties) for object_id, properties, _ in entries])
    rows = [
        {
            "environment_id": environment_id,
            "collection": collection,
            "id": object_id,
            "properties": properties,
            "inserted_at": now,
            "updated_at": now,
        }
        for object_id, properties in merged.items()
    ]
    statement = _upsert_statement(connection.dialect.name)
    records = {record.id: record for record in map(object_record, await connection.execute(statement, rows))}
    for object_id, _, inline in entries:
        if inline.channel_data or inline.preferences:
            await write_inline_data(connection, environment_id, collection, object_id, inline, now)
    return [records[object_id] for object_id in merged]


async def delete_objects(
    connection: AsyncConnection, environment_id: str, collection: str, object_ids: list[str]
) -> int:
    result = await connection.execute(
        objects.delete().where(
            objects.c.environment_id == environment_id,
            objects.c.collection == collection,
            objects.c.id.in_(object_ids),
        )
    )
    await delete_recipient_data(connection, environment_id, collection, object_ids)
    return int(result.rowcount)


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
        async with self.database.writer.begin() as connection:
            (record,) = await upsert_objects(
                connection,
                environment_id,
                collection,
                [(object_id, properties, inline or InlineRecipientData())],
            )
        return record

    async def set_many(
        self,
        environment_id: str,
        collection: str,
        entries: Sequence[tuple[str, dict[str, Any], InlineRecipientData]],
    ) -> list[RecipientRecord]:
        async with self.database.writer.begin() as connection:
            return await upsert_objects(connection, environment_id, collection, entries)

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
            rows = await connection.execute(
                sa.select(objects).where(
                    objects.c.environment_id == environment_id,
                    objects.c.collection == collection,
                    objects.c.id.in_(set(object_ids)),
                )
            )
            return {record.id: record for record in map(object_record, rows)}

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
            return await delete_objects(connection, environment_id, collection, list(object_ids))

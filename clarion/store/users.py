"""Users: upsert with Knock's deep merge of properties, read, list, delete and merge.

An identify is one INSERT … ON CONFLICT statement whose merge runs in the database
(`clarion_deep_merge`), so concurrent identifies of one user never lose each other's properties. Inline
channel data and preferences are written in the same transaction (`clarion.store.recipients`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from clarion.errors import NotFoundError
from clarion.store import dialect
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.direct import DirectQuery
from clarion.store.group_commit import GroupCommitter
from clarion.store.json_merge import deep_merge
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipients import (
    InlineRecipientData,
    RecipientRecord,
    delete_recipient_data,
    merge_duplicates,
    write_inline_data,
)
from clarion.store.tables import USERS_COLLECTION, channel_data, preference_sets, users


def user_record(row: sa.Row[Any] | Mapping[str, Any]) -> RecipientRecord:
    m = row._mapping if isinstance(row, sa.Row) else row
    return RecipientRecord(USERS_COLLECTION, m["id"], m["properties"], m["inserted_at"], m["updated_at"])


_GET_USER = DirectQuery(
    sa.select(users.c.id, users.c.properties, users.c.inserted_at, users.c.updated_at).where(
        users.c.environment_id == sa.bindparam("environment_id"), users.c.id == sa.bindparam("user_id")
    )
)


@functools.cache
def _upsert_statement(dialect_name: str) -> Insert:
    """The identify upsert, built once per dialect (building it costs more than running it)."""
    return dialect.upsert(
        users,
        dialect_name,
        None,
        conflict=["environment_id", "id"],
        update=lambda excluded: {
            "properties": dialect.deep_merge(users.c.properties, excluded.properties),
            "updated_at": excluded.updated_at,
        },
    ).returning(*users.c)


async def upsert_users(
    connection: AsyncConnection,
    environment_id: str,
    entries: Sequence[tuple[str, dict[str, Any], InlineRecipientData]],
) -> list[RecipientRecord]:
    """Identify many users in the caller's transaction; returns them in first-seen order."""
    if not entries:
        return []
    now = utcnow()
    merged = merge_duplicates([(user_id, properties) for user_id, properties, _ in entries])
    statement = _upsert_statement(connection.dialect.name)
    rows = [
        {
            "environment_id": environment_id,
            "id": user_id,
            "properties": properties,
            "inserted_at": now,
            "updated_at": now,
        }
        for user_id, properties in merged.items()
    ]
    records = {record.id: record for record in map(user_record, await connection.execute(statement, rows))}
    for user_id, _, inline in entries:
        if inline.channel_data or inline.preferences:
            await write_inline_data(connection, environment_id, USERS_COLLECTION, user_id, inline, now)
    return [records[user_id] for user_id in merged]


IdentifyItem = tuple[str, str, dict[str, Any], InlineRecipientData]
"""(environment_id, user_id, properties, inline data): one identify waiting for its group commit."""


async def upsert_user_batch(
    connection: AsyncConnection, items: Sequence[IdentifyItem]
) -> list[RecipientRecord]:
    """Identify the users of many concurrent requests at once, one statement per environment."""
    by_environment: dict[str, list[tuple[str, dict[str, Any], InlineRecipientData]]] = {}
    for environment_id, user_id, properties, inline in items:
        by_environment.setdefault(environment_id, []).append((user_id, properties, inline))
    records: dict[tuple[str, str], RecipientRecord] = {}
    for environment_id, entries in by_environment.items():
        for record in await upsert_users(connection, environment_id, entries):
            records[environment_id, record.id] = record
    return [records[environment_id, user_id] for environment_id, user_id, _, _ in items]


class UserStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._identifies = GroupCommitter(database, upsert_user_batch)

    async def identify(
        self,
        environment_id: str,
        user_id: str,
        properties: dict[str, Any],
        inline: InlineRecipientData | None = None,
    ) -> RecipientRecord:
        return await self._identifies.submit(
            (environment_id, user_id, properties, inline or InlineRecipientData())
        )

    async def identify_many(
        self, environment_id: str, entries: Sequence[tuple[str, dict[str, Any], InlineRecipientData]]
    ) -> list[RecipientRecord]:
        async with self.database.writer.begin() as connection:
            return await upsert_users(connection, environment_id, entries)

    async def get(self, environment_id: str, user_id: str) -> RecipientRecord:
        row = await self.database.direct.fetch_one(_GET_USER, environment_id=environment_id, user_id=user_id)
        if row is None:
            raise NotFoundError(f"The user {user_id!r} was not found")
        return user_record(row)

    async def get_many(self, environment_id: str, user_ids: Sequence[str]) -> dict[str, RecipientRecord]:
        if not user_ids:
            return {}
        async with self.database.reader.connect() as connection:
            rows = await connection.execute(
                sa.select(users).where(
                    users.c.environment_id == environment_id, users.c.id.in_(set(user_ids))
                )
            )
            return {record.id: record for record in map(user_record, rows)}

    async def page(self, environment_id: str, page: PageRequest) -> tuple[list[RecipientRecord], Page]:
        query = sa.select(users).where(users.c.environment_id == environment_id)
        async with self.database.reader.connect() as connection:
            result = await fetch_page(connection, query, users.c.pk, page)
        return [user_record(row) for row in result.rows], result

    async def delete(self, environment_id: str, user_id: str) -> None:
        async with self.database.writer.begin() as connection:
            deleted = await self._delete(connection, environment_id, [user_id])
        if not deleted:
            raise NotFoundError(f"The user {user_id!r} was not found")

    async def delete_many(self, environment_id: str, user_ids: Sequence[str]) -> int:
        async with self.database.writer.begin() as connection:
            return await self._delete(connection, environment_id, list(user_ids))

    @staticmethod
    async def _delete(connection: AsyncConnection, environment_id: str, user_ids: list[str]) -> int:
        result = await connection.execute(
            users.delete().where(users.c.environment_id == environment_id, users.c.id.in_(user_ids))
        )
        await delete_recipient_data(connection, environment_id, USERS_COLLECTION, user_ids)
        return int(result.rowcount)

    async def merge(self, environment_id: str, user_id: str, from_user_id: str) -> RecipientRecord:
        """Fold `from_user_id` into `user_id` and delete it: properties deep-merged with the primary winning,
        preference sets and channel data added where the primary has none."""
        async with self.database.writer.begin() as connection:
            rows = {
                row.id: row
                for row in await connection.execute(
                    sa.select(users).where(
                        users.c.environment_id == environment_id, users.c.id.in_([user_id, from_user_id])
                    )
                )
            }
            for missing in (user_id, from_user_id):
                if missing not in rows:
                    raise NotFoundError(f"The user {missing!r} was not found")
            if user_id == from_user_id:
                return user_record(rows[user_id])
            properties = deep_merge(rows[from_user_id].properties, rows[user_id].properties)
            now = utcnow()
            updated = (
                await connection.execute(
                    users.update()
                    .where(users.c.environment_id == environment_id, users.c.id == user_id)
                    .values(properties=properties, updated_at=now)
                    .returning(*users.c)
                )
            ).one()
            for table, key in ((preference_sets, "set_id"), (channel_data, "channel_id")):
                await self._adopt(connection, table, key, environment_id, user_id, from_user_id)
            await self._delete(connection, environment_id, [from_user_id])
        return user_record(updated)

    @staticmethod
    async def _adopt(
        connection: AsyncConnection,
        table: sa.Table,
        key: str,
        environment_id: str,
        user_id: str,
        from_user_id: str,
    ) -> None:
        """Move the secondary's rows of `table` to the primary where the primary has no row with that key."""
        owned = sa.select(table.c[key]).where(
            table.c.environment_id == environment_id,
            table.c.recipient_collection == USERS_COLLECTION,
            table.c.recipient_id == user_id,
        )
        await connection.execute(
            table.update()
            .where(
                table.c.environment_id == environment_id,
                table.c.recipient_collection == USERS_COLLECTION,
                table.c.recipient_id == from_user_id,
                table.c[key].not_in(owned),
            )
            .values(recipient_id=user_id)
        )

"""Preference sets of users and objects (tenants included): read, replace, merge, update one section, delete.

A set is one row of `preference_sets` keyed by (recipient collection, recipient id, set id) whose body is
the whole set as JSON. Every write is one INSERT … ON CONFLICT statement per chunk, merges included (they
run in the database through `clarion_deep_merge`), so concurrent writes to one set never lose each other's
keys; rows go in the store's one write order (`clarion.store.batching`), so concurrent bulk writes never
deadlock. Writing a set creates its recipient, empty, when it does not exist yet, as Knock does
(`clarion.store.recipients.ensure_recipients`). A read of a set that was never written is an empty set,
never an error. Laying a tenant's default set under a recipient's set follows
`clarion.store.preference_merge`; inline preferences on identify are written by `clarion.store.recipients`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batching import chunks, ordered_chunks
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.preference_merge import merge_preference_sets
from clarion.store.recipients import ensure_recipients
from clarion.store.tables import TENANTS_COLLECTION, preference_sets

DEFAULT_SET_ID = "default"


class PersistenceStrategy(StrEnum):
    """How a written body meets the stored set (`__persistence_strategy__` on the wire)."""

    MERGE = "merge"
    REPLACE = "replace"


@dataclass(frozen=True)
class PreferenceSetRecord:
    id: str
    preferences: dict[str, Any] = field(default_factory=dict)


def _nested(path: Sequence[str], value: Any) -> dict[str, Any]:
    nested: Any = value
    for key in reversed(path):
        nested = {key: nested}
    result: dict[str, Any] = nested
    return result


def _merge(excluded: Any) -> dict[str, Any]:
    return {
        "preferences": dialect.deep_merge(preference_sets.c.preferences, excluded.preferences),
        "updated_at": excluded.updated_at,
    }


def _replace(excluded: Any) -> dict[str, Any]:
    return {"preferences": excluded.preferences, "updated_at": excluded.updated_at}


async def write_sets(
    connection: AsyncConnection,
    environment_id: str,
    collection: str,
    set_id: str,
    bodies: Mapping[str, dict[str, Any]],
    strategy: PersistenceStrategy,
) -> dict[str, dict[str, Any]]:
    """Write set `set_id` of many recipients of one collection in the caller's transaction (their recipients
    created if missing); returns the stored bodies by recipient id."""
    await ensure_recipients(connection, environment_id, collection, list(bodies))
    now = utcnow()
    stored: dict[str, dict[str, Any]] = {}
    for chunk in ordered_chunks(bodies, key=lambda recipient_id: (recipient_id,)):
        rows = [
            {
                "environment_id": environment_id,
                "recipient_collection": collection,
                "recipient_id": recipient_id,
                "set_id": set_id,
                "preferences": bodies[recipient_id],
                "inserted_at": now,
                "updated_at": now,
            }
            for recipient_id in chunk
        ]
        statement = dialect.upsert(
            preference_sets,
            connection.dialect.name,
            rows,
            conflict=["environment_id", "recipient_collection", "recipient_id", "set_id"],
            update=_merge if strategy is PersistenceStrategy.MERGE else _replace,
        ).returning(preference_sets.c.recipient_id, preference_sets.c.preferences)
        for row in await connection.execute(statement):
            stored[row.recipient_id] = row.preferences
    return stored


async def delete_sets(
    connection: AsyncConnection,
    environment_id: str,
    collection: str,
    recipient_ids: Sequence[str],
    set_id: str,
) -> None:
    for chunk in ordered_chunks(set(recipient_ids), key=lambda recipient_id: (recipient_id,)):
        await connection.execute(
            preference_sets.delete().where(
                preference_sets.c.environment_id == environment_id,
                preference_sets.c.recipient_collection == collection,
                preference_sets.c.recipient_id.in_(chunk),
                preference_sets.c.set_id == set_id,
            )
        )


async def read_sets(
    connection: AsyncConnection,
    environment_id: str,
    collection: str,
    recipient_ids: Sequence[str],
    set_id: str,
) -> dict[str, dict[str, Any]]:
    """The stored bodies of set `set_id` of many recipients, by recipient id (absent when never written)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(list(dict.fromkeys(recipient_ids))):
        rows = await connection.execute(
            sa.select(preference_sets.c.recipient_id, preference_sets.c.preferences).where(
                preference_sets.c.environment_id == environment_id,
                preference_sets.c.recipient_collection == collection,
                preference_sets.c.recipient_id.in_(list(chunk)),
                preference_sets.c.set_id == set_id,
            )
        )
        found.update({row.recipient_id: row.preferences for row in rows})
    return found


class PreferenceStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def list_sets(
        self, environment_id: str, collection: str, recipient_id: str
    ) -> list[PreferenceSetRecord]:
        """Every stored set of a recipient, `default` first, then by set id."""
        async with self.database.reader.connect() as connection:
            rows = await connection.execute(
                sa.select(preference_sets.c.set_id, preference_sets.c.preferences)
                .where(
                    preference_sets.c.environment_id == environment_id,
                    preference_sets.c.recipient_collection == collection,
                    preference_sets.c.recipient_id == recipient_id,
                )
                .order_by(
                    sa.case((preference_sets.c.set_id == DEFAULT_SET_ID, 0), else_=1),
                    preference_sets.c.set_id,
                )
            )
            return [PreferenceSetRecord(row.set_id, row.preferences) for row in rows]

    async def get(
        self,
        environment_id: str,
        collection: str,
        recipient_id: str,
        set_id: str,
        *,
        tenant: str | None = None,
    ) -> PreferenceSetRecord:
        """A recipient's set (empty when never written), laid over the default set of `tenant` when given."""
        async with self.database.reader.connect() as connection:
            stored = await read_sets(connection, environment_id, collection, [recipient_id], set_id)
            body = stored.get(recipient_id, {})
            if tenant is not None:
                defaults = await read_sets(
                    connection, environment_id, TENANTS_COLLECTION, [tenant], DEFAULT_SET_ID
                )
                body = merge_preference_sets(defaults.get(tenant, {}), body)
        return PreferenceSetRecord(set_id, body)

    async def get_many(
        self, environment_id: str, collection: str, recipient_ids: Sequence[str], set_id: str
    ) -> dict[str, PreferenceSetRecord]:
        """Set `set_id` of each recipient (empty when never written), in one query per batch."""
        async with self.database.reader.connect() as connection:
            stored = await read_sets(connection, environment_id, collection, recipient_ids, set_id)
        return {
            recipient_id: PreferenceSetRecord(set_id, stored.get(recipient_id, {}))
            for recipient_id in recipient_ids
        }

    async def write(
        self,
        environment_id: str,
        collection: str,
        recipient_id: str,
        set_id: str,
        body: dict[str, Any],
        strategy: PersistenceStrategy = PersistenceStrategy.REPLACE,
    ) -> PreferenceSetRecord:
        """Replace a set with `body`, or deep-merge `body` into it."""
        async with self.database.writer.begin() as connection:
            stored = await write_sets(
                connection, environment_id, collection, set_id, {recipient_id: body}, strategy
            )
        return PreferenceSetRecord(set_id, stored[recipient_id])

    async def write_at(
        self,
        environment_id: str,
        collection: str,
        recipient_id: str,
        set_id: str,
        path: Sequence[str],
        value: Any,
    ) -> PreferenceSetRecord:
        """Replace the value at `path` in a set (a section such as `workflows`, or one key inside it) and keep
        the rest of the set."""
        cleared = _nested(path, None)
        patch = _nested(path, value)
        now = utcnow()
        async with self.database.writer.begin() as connection:
            await ensure_recipients(connection, environment_id, collection, [recipient_id])
            # Merging `null` at the path first drops whatever was there, so the second merge sets the new
            # value whole instead of merging into the old one; both run in one statement.
            statement = dialect.upsert(
                preference_sets,
                connection.dialect.name,
                {
                    "environment_id": environment_id,
                    "recipient_collection": collection,
                    "recipient_id": recipient_id,
                    "set_id": set_id,
                    "preferences": patch,
                    "inserted_at": now,
                    "updated_at": now,
                },
                conflict=["environment_id", "recipient_collection", "recipient_id", "set_id"],
                update=lambda excluded: {
                    "preferences": dialect.deep_merge(
                        dialect.deep_merge(
                            preference_sets.c.preferences, sa.literal(cleared, dialect.JSONType)
                        ),
                        excluded.preferences,
                    ),
                    "updated_at": excluded.updated_at,
                },
            ).returning(preference_sets.c.preferences)
            stored = (await connection.execute(statement)).scalar_one()
        return PreferenceSetRecord(set_id, stored)

    async def delete(self, environment_id: str, collection: str, recipient_id: str, set_id: str) -> None:
        async with self.database.writer.begin() as connection:
            await delete_sets(connection, environment_id, collection, [recipient_id], set_id)

    async def replace_many(
        self,
        environment_id: str,
        collection: str,
        recipient_ids: Sequence[str],
        set_id: str,
        body: dict[str, Any],
    ) -> int:
        """Replace set `set_id` of many recipients with one body in one transaction, creating missing
        recipients (bulk set preferences); returns how many recipients were written."""
        unique = dict.fromkeys(recipient_ids)
        async with self.database.writer.begin() as connection:
            stored = await write_sets(
                connection,
                environment_id,
                collection,
                set_id,
                {recipient_id: body for recipient_id in unique},
                PersistenceStrategy.REPLACE,
            )
        return len(stored)

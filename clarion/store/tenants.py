"""Tenants: objects of the reserved `$tenants` collection plus their default preference set.

A tenant's name, custom properties and `settings.branding` are the object's properties, deep-merged on every
set exactly like any object (`clarion.store.objects`). Its `settings.preference_set` is the tenant's own
`default` preference set (`clarion.store.preferences`), written in the same transaction: merged into the
stored one by default, replaced on request, removed when set to null. Reads return the default set with
the tenant, fetched in one query per page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import NotFoundError
from clarion.store.batching import rounds
from clarion.store.db import Database
from clarion.store.objects import delete_objects, load_objects, object_record, upsert_objects
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.preferences import (
    DEFAULT_SET_ID,
    PersistenceStrategy,
    delete_sets,
    read_sets,
    write_sets,
)
from clarion.store.recipients import InlineRecipientData, RecipientRecord
from clarion.store.tables import TENANTS_COLLECTION, objects


@dataclass(frozen=True)
class DefaultPreferencesWrite:
    """A write of a tenant's default preference set: `body` laid on the stored set by `strategy`, or the set
    removed when `body` is None."""

    body: dict[str, Any] | None
    strategy: PersistenceStrategy = PersistenceStrategy.MERGE


@dataclass(frozen=True)
class TenantEntry:
    """One tenant to set. `properties` are merged onto the stored ones (name, custom properties and
    `settings: {branding}`); `default_preferences` None leaves the default preference set as it is."""

    id: str
    properties: dict[str, Any]
    inline: InlineRecipientData = field(default_factory=InlineRecipientData)
    default_preferences: DefaultPreferencesWrite | None = None


@dataclass(frozen=True)
class TenantRecord:
    id: str
    properties: dict[str, Any]
    default_preferences: dict[str, Any] | None
    inserted_at: datetime
    updated_at: datetime


def _tenant(record: RecipientRecord, default_preferences: dict[str, Any] | None) -> TenantRecord:
    return TenantRecord(
        record.id, record.properties, default_preferences, record.inserted_at, record.updated_at
    )


async def upsert_tenants(
    connection: AsyncConnection, environment_id: str, entries: Sequence[TenantEntry]
) -> list[TenantRecord]:
    """Set many tenants in the caller's transaction, with the outcome of setting them one by one in the
    given order (a repeated id goes to a later round, `clarion.store.batching`); returns, for each entry,
    the tenant as it stood right after that entry. Within a round every tenant row is upserted first, in
    key order, so that concurrent writers of the same tenants queue on those rows."""
    found: dict[int, TenantRecord] = {}
    for positions in rounds([entry.id for entry in entries]):
        batch = [entries[position] for position in positions]
        records = await upsert_objects(
            connection,
            environment_id,
            TENANTS_COLLECTION,
            [(entry.id, entry.properties, entry.inline) for entry in batch],
        )
        writes = {
            entry.id: entry.default_preferences for entry in batch if entry.default_preferences is not None
        }
        for strategy in PersistenceStrategy:
            bodies = {
                tenant_id: write.body
                for tenant_id, write in writes.items()
                if write.body is not None and write.strategy is strategy
            }
            if bodies:
                await write_sets(
                    connection, environment_id, TENANTS_COLLECTION, DEFAULT_SET_ID, bodies, strategy
                )
        removed = [tenant_id for tenant_id, write in writes.items() if write.body is None]
        if removed:
            await delete_sets(connection, environment_id, TENANTS_COLLECTION, removed, DEFAULT_SET_ID)
        defaults = await read_sets(
            connection, environment_id, TENANTS_COLLECTION, [entry.id for entry in batch], DEFAULT_SET_ID
        )
        found.update(
            (position, _tenant(record, defaults.get(record.id)))
            for position, record in zip(positions, records, strict=True)
        )
    return [found[position] for position in range(len(entries))]


class TenantStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def set(self, environment_id: str, entry: TenantEntry) -> TenantRecord:
        async with self.database.writer.begin() as connection:
            (record,) = await upsert_tenants(connection, environment_id, [entry])
        return record

    async def set_many(self, environment_id: str, entries: Sequence[TenantEntry]) -> list[TenantRecord]:
        """Set many tenants in one transaction (bulk set), as if one after another."""
        async with self.database.writer.begin() as connection:
            return await upsert_tenants(connection, environment_id, entries)

    async def get(self, environment_id: str, tenant_id: str) -> TenantRecord:
        found = await self.get_many(environment_id, [tenant_id])
        if tenant_id not in found:
            raise NotFoundError(f"The tenant {tenant_id!r} was not found")
        return found[tenant_id]

    async def get_many(self, environment_id: str, tenant_ids: Sequence[str]) -> dict[str, TenantRecord]:
        if not tenant_ids:
            return {}
        async with self.database.reader.connect() as connection:
            records = await load_objects(connection, environment_id, TENANTS_COLLECTION, tenant_ids)
            defaults = await read_sets(
                connection, environment_id, TENANTS_COLLECTION, [r.id for r in records], DEFAULT_SET_ID
            )
        return {record.id: _tenant(record, defaults.get(record.id)) for record in records}

    async def page(
        self,
        environment_id: str,
        page: PageRequest,
        *,
        name: str | None = None,
        tenant_id: str | None = None,
    ) -> tuple[list[TenantRecord], Page]:
        """One page of tenants, optionally only those with exactly this name or id."""
        query = sa.select(objects).where(
            objects.c.environment_id == environment_id, objects.c.collection == TENANTS_COLLECTION
        )
        if name is not None:
            query = query.where(objects.c.properties["name"].as_string() == name)
        if tenant_id is not None:
            query = query.where(objects.c.id == tenant_id)
        async with self.database.reader.connect() as connection:
            result = await fetch_page(connection, query, objects.c.pk, page)
            records = [object_record(row) for row in result.rows]
            defaults = await read_sets(
                connection, environment_id, TENANTS_COLLECTION, [r.id for r in records], DEFAULT_SET_ID
            )
        return [_tenant(record, defaults.get(record.id)) for record in records], result

    async def delete(self, environment_id: str, tenant_id: str) -> None:
        async with self.database.writer.begin() as connection:
            deleted = await delete_objects(connection, environment_id, TENANTS_COLLECTION, [tenant_id])
        if not deleted:
            raise NotFoundError(f"The tenant {tenant_id!r} was not found")

    async def delete_many(self, environment_id: str, tenant_ids: Sequence[str]) -> int:
        """Delete many tenants (and their preference sets and channel data) in one transaction; returns how
        many existed."""
        async with self.database.writer.begin() as connection:
            return await delete_objects(connection, environment_id, TENANTS_COLLECTION, tenant_ids)

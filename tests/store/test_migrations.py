"""The migrations build exactly the schema `clarion.store.tables` declares: no table, column or index of
the metadata is missing from a migrated store, and the store has none the metadata lacks."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from clarion.runtime import Runtime
from clarion.store.tables import metadata


async def test_the_migrated_schema_is_the_declared_one(runtime: Runtime) -> None:
    def differences(connection: Any) -> list[Any]:
        # Types are left out: the stores spell the same declared type in their own words.
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        return list(compare_metadata(context, metadata))

    async with runtime.database.reader.connect() as connection:
        assert await connection.run_sync(differences) == []

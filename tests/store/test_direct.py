"""Direct reads return exactly what SQLAlchemy Core returns for the same query, on both stores."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store.db import create_database
from clarion.store.direct import DirectQuery, PostgresDirectReader
from clarion.store.tables import users

STATEMENT = (
    sa.select(users.c.id, users.c.properties, users.c.inserted_at, users.c.updated_at)
    .where(users.c.environment_id == sa.bindparam("environment_id"))
    .order_by(users.c.pk)
)
QUERY = DirectQuery(STATEMENT)


async def test_rows_match_core_results(runtime: Runtime) -> None:
    environment = await runtime.environments.create(f"direct-{uuid.uuid4().hex[:8]}")
    await runtime.users.identify(environment.id, "a", {"n": 123456789012345678901234567890, "x": {"y": [1]}})
    await runtime.users.identify(environment.id, "b", {"name": "B"})
    direct = await runtime.database.direct.fetch_all(QUERY, environment_id=environment.id)
    async with runtime.database.reader.connect() as connection:
        core = [
            dict(row._mapping)
            for row in await connection.execute(STATEMENT, {"environment_id": environment.id})
        ]
    assert direct == core
    assert [row["id"] for row in direct] == ["a", "b"]
    assert direct[0]["inserted_at"].tzinfo is not None
    assert direct[0]["properties"]["n"] == 123456789012345678901234567890
    assert await runtime.database.direct.fetch_all(QUERY, environment_id="nowhere") == []


async def test_concurrent_first_reads_open_one_postgres_pool(runtime: Runtime) -> None:
    if runtime.database.dialect_name != "postgresql":
        pytest.skip("SQLite's direct reader is one connection opened up front")
    database = create_database(runtime.database.url)
    reader = database.direct
    assert isinstance(reader, PostgresDirectReader)
    try:
        opened: list[object] = []
        original = reader._acquire_pool

        async def counting() -> object:
            pool = await original()
            opened.append(pool)
            return pool

        reader._acquire_pool = counting  # type: ignore[method-assign]
        await asyncio.gather(*(reader.fetch_all(QUERY, environment_id="x") for _ in range(5)))
        assert len({id(pool) for pool in opened}) == 1
    finally:
        await database.dispose()


async def test_postgres_plans_each_direct_read_for_its_values(runtime: Runtime) -> None:
    # A generic plan of `id = ANY($ids)` built from stale statistics filters the ids over the whole
    # environment instead of looking each one up in the index.
    if runtime.database.dialect_name != "postgresql":
        pytest.skip("SQLite has no plan cache to configure")
    setting = DirectQuery(
        sa.select(sa.func.current_setting(sa.literal_column("'plan_cache_mode'")).label("mode"))
    )
    assert await runtime.database.direct.fetch_all(setting) == [{"mode": "force_custom_plan"}]

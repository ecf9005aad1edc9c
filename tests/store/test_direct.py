"""Direct reads return exactly what SQLAlchemy Core returns for the same query, on both stores."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store.db import create_database
from clarion.store.direct import DirectQuery, PostgresDirectReader
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import users
from clarion.store.users import _GET_USERS

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


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


async def test_postgres_batched_get_looks_each_id_up_in_the_index_even_in_a_generic_plan(
    runtime: Runtime, database_url: str
) -> None:
    # A generic plan of `id = ANY($ids)` made from stale statistics once read every user of the
    # environment per batch; the batched get must plan as one index lookup per id whatever they say.
    if runtime.database.dialect_name != "postgresql":
        pytest.skip("SQLite has no plan cache: every statement is planned for its values")
    environment = await runtime.environments.create(f"plan-{uuid.uuid4().hex[:8]}")
    await runtime.users.identify_many(
        environment.id, [(f"u{n}", {"n": n}, InlineRecipientData()) for n in range(500)]
    )
    sql = _GET_USERS.compiled_for(runtime.database.writer.dialect).sql
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE batched_get AS {sql}")
        explained = await connection.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE batched_get(ARRAY['u1', 'u7', 'u404', 'missing'], "
            f"'{environment.id}')"
        )
    finally:
        await connection.close()
    plan = json.loads(explained)[0]["Plan"]
    assert plan["Actual Rows"] == 3
    scans = [node for node in _plan_nodes(plan) if node["Node Type"].endswith("Scan")]
    assert sorted(node["Node Type"] for node in scans) == ["Function Scan", "Index Scan"]
    (index_scan,) = (node for node in scans if node["Node Type"] == "Index Scan")
    assert index_scan["Actual Loops"] == 4
    assert "wanted.value" in index_scan["Index Cond"]

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
from clarion.store.direct import DirectQuery, PostgresDirectReader
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import users
from clarion.store.users import USERS_BY_IDS

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


BACKEND = DirectQuery(sa.select(sa.func.pg_backend_pid().label("pid")))


def _postgres_reader(runtime: Runtime, max_size: int = 10) -> PostgresDirectReader:
    if runtime.database.dialect_name != "postgresql":
        pytest.skip("SQLite's direct reader is one connection opened up front")
    direct = runtime.database.direct
    assert isinstance(direct, PostgresDirectReader)
    return PostgresDirectReader(direct.dsn, direct.dialect, max_size=max_size)


async def _backend(reader: PostgresDirectReader) -> int:
    (row,) = await reader.fetch_all(BACKEND)
    return int(row["pid"])


async def test_postgres_connections_are_bounded_and_reused(runtime: Runtime) -> None:
    reader = _postgres_reader(runtime, max_size=2)
    try:
        concurrent = set(await asyncio.gather(*(_backend(reader) for _ in range(10))))
        assert 1 <= len(concurrent) <= 2
        assert {await _backend(reader) for _ in range(5)} <= concurrent
    finally:
        await reader.close()


async def test_a_statement_the_server_refuses_leaves_its_connection_in_use(runtime: Runtime) -> None:
    reader = _postgres_reader(runtime, max_size=1)
    refused = DirectQuery(sa.select(sa.literal_column("'not a number'::integer").label("n")))
    try:
        before = await _backend(reader)
        with pytest.raises(asyncpg.PostgresError):
            await reader.fetch_all(refused)
        assert await _backend(reader) == before
    finally:
        await reader.close()


async def test_a_statement_cut_off_midway_is_never_continued_on_its_connection(runtime: Runtime) -> None:
    reader = _postgres_reader(runtime, max_size=1)
    sleeping = DirectQuery(sa.select(sa.func.pg_sleep(sa.literal_column("5")).label("slept")))
    try:
        before = await _backend(reader)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.fetch_all(sleeping), timeout=0.2)
        after = await asyncio.wait_for(_backend(reader), timeout=2)
        assert after != before
    finally:
        await reader.close()


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
    sql = USERS_BY_IDS.compiled_for(runtime.database.writer.dialect).sql
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

"""Coalesced point reads: concurrent reads share one query, yet each sees exactly what a read of its own
would, on both stores."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store import dialect
from clarion.store.coalesced_reads import CoalescedReads
from clarion.store.direct import DirectQuery, DirectReader
from clarion.store.tables import users

QUERY = DirectQuery(
    lambda dialect_name: dialect.select_by_keys(
        [users.c.id, users.c.properties],
        users.c.id,
        "ids",
        dialect_name,
        users.c.environment_id == sa.bindparam("environment_id"),
    )
)


class CountingReader:
    """The store's direct reader, counting the queries that reach it; `fail` makes the next ones raise."""

    def __init__(self, reader: DirectReader) -> None:
        self.reader = reader
        self.queries: list[dict[str, Any]] = []
        self.fail: Exception | None = None

    async def fetch_all(self, query: DirectQuery, **parameters: Any) -> list[dict[str, Any]]:
        self.queries.append(parameters)
        if self.fail is not None:
            raise self.fail
        return await self.reader.fetch_all(query, **parameters)

    def usage(self) -> tuple[int, int]:
        return self.reader.usage()

    async def close(self) -> None:
        await self.reader.close()


async def _environment_with_users(runtime: Runtime, *user_ids: str) -> str:
    environment = await runtime.environments.create(f"coalesce-{uuid.uuid4().hex[:8]}")
    for user_id in user_ids:
        await runtime.users.identify(environment.id, user_id, {"name": user_id.upper()})
    return environment.id


async def test_concurrent_reads_share_one_query_and_each_gets_its_row(runtime: Runtime) -> None:
    environment_id = await _environment_with_users(runtime, "a", "b", "c")
    reader = CountingReader(runtime.database.direct)
    reads = CoalescedReads(reader, QUERY)
    rows = await asyncio.gather(
        *(reads.fetch(environment_id, user_id) for user_id in ["c", "a", "zz", "a", "b"])
    )
    assert [row and row["properties"]["name"] for row in rows] == ["C", "A", None, "A", "B"]
    assert reader.queries == [{"environment_id": environment_id, "ids": ["a", "b", "c", "zz"]}]


async def test_reads_of_several_environments_never_see_each_others_rows(runtime: Runtime) -> None:
    first = await _environment_with_users(runtime, "only-first")
    second = await _environment_with_users(runtime)
    await runtime.users.identify(first, "shared", {"home": "first"})
    await runtime.users.identify(second, "shared", {"home": "second"})
    reads = CoalescedReads(runtime.database.direct, QUERY)
    rows = await asyncio.gather(
        reads.fetch(first, "shared"), reads.fetch(second, "shared"), reads.fetch(second, "only-first")
    )
    assert [row and row["properties"]["home"] for row in rows[:2]] == ["first", "second"]
    assert rows[2] is None


async def test_a_read_asked_after_a_write_sees_it_even_while_a_batch_is_running(runtime: Runtime) -> None:
    environment_id = await _environment_with_users(runtime, "u")
    reader = CountingReader(runtime.database.direct)
    reads = CoalescedReads(reader, QUERY)
    first = asyncio.create_task(reads.fetch(environment_id, "u"))
    await asyncio.sleep(0)  # the first batch is under way
    await runtime.users.identify(environment_id, "u", {"name": "Renamed"})
    second = await reads.fetch(environment_id, "u")
    assert (await first) is not None
    assert second is not None and second["properties"]["name"] == "Renamed"
    assert len(reader.queries) == 2


async def test_a_failed_query_fails_its_batch_and_the_next_batch_runs(runtime: Runtime) -> None:
    environment_id = await _environment_with_users(runtime, "u")
    reader = CountingReader(runtime.database.direct)
    reads = CoalescedReads(reader, QUERY)
    reader.fail = RuntimeError("connection lost")
    results = await asyncio.gather(
        reads.fetch(environment_id, "u"), reads.fetch(environment_id, "v"), return_exceptions=True
    )
    assert [str(result) for result in results] == ["connection lost", "connection lost"]
    reader.fail = None
    row = await reads.fetch(environment_id, "u")
    assert row is not None and row["id"] == "u"


async def test_a_cancelled_read_leaves_the_others_of_its_batch_answered(runtime: Runtime) -> None:
    environment_id = await _environment_with_users(runtime, "a", "b")
    reads = CoalescedReads(runtime.database.direct, QUERY)
    cancelled = asyncio.create_task(reads.fetch(environment_id, "a"))
    kept = asyncio.create_task(reads.fetch(environment_id, "b"))
    await asyncio.sleep(0)
    cancelled.cancel()
    row = await kept
    assert row is not None and row["id"] == "b"
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_batches_are_cut_at_the_maximum_size(runtime: Runtime) -> None:
    environment_id = await _environment_with_users(runtime, "a", "b", "c")
    reader = CountingReader(runtime.database.direct)
    reads = CoalescedReads(reader, QUERY, max_batch=2)
    rows = await asyncio.gather(*(reads.fetch(environment_id, user_id) for user_id in "abc"))
    assert [row and row["id"] for row in rows] == ["a", "b", "c"]
    assert [query["ids"] for query in reader.queries] == [["a", "b"], ["c"]]

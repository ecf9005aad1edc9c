"""The shared rate-limit counter: windows reset, and idle buckets are pruned."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store.rate_limits import PRUNE_AFTER_SECONDS, DatabaseRateCounter
from clarion.store.tables import rate_limit_counters


async def _buckets(runtime: Runtime, prefix: str) -> set[str]:
    async with runtime.database.reader.connect() as connection:
        rows = await connection.execute(
            sa.select(rate_limit_counters.c.bucket).where(rate_limit_counters.c.bucket.startswith(prefix))
        )
        return {row.bucket for row in rows}


async def test_counts_per_window_and_prunes_idle_buckets(runtime: Runtime) -> None:
    counter = DatabaseRateCounter(runtime.database)
    prefix = uuid.uuid4().hex
    start = 1_700_000_000
    assert [await counter.hit(f"{prefix}|a", start) for _ in range(3)] == [1, 2, 3]
    assert await counter.hit(f"{prefix}|a", start + 1) == 1
    assert await counter.hit(f"{prefix}|idle", start + 1) == 1
    assert await _buckets(runtime, prefix) == {f"{prefix}|a", f"{prefix}|idle"}
    later = start + 2 + PRUNE_AFTER_SECONDS
    assert await counter.hit(f"{prefix}|a", later) == 1
    assert await _buckets(runtime, prefix) == {f"{prefix}|a"}

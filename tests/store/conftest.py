"""Fixtures for store tests that need genuinely concurrent transactions: a second connection pool on the
session's database, standing in for another Clarion process, and a helper that runs writes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store.db import Database, create_database


@pytest.fixture
async def second_database(runtime: Runtime) -> AsyncIterator[Database]:
    """Another process's connections to the same database: its transactions race the runtime's."""
    database = create_database(runtime.database.url)
    try:
        yield database
    finally:
        await database.dispose()


def require_postgres(runtime: Runtime) -> None:
    if runtime.database.dialect_name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no two write transactions interleave")


async def race(*writes: Callable[[], Awaitable[object]], trials: int = 4) -> None:
    """Run `writes` at the same time, `trials` times over; the first failure (a deadlock, say) propagates."""
    for _ in range(trials):
        await asyncio.gather(*(write() for write in writes))


async def wait_until_blocked(database: Database) -> None:
    """Return once some transaction of this database waits for a row lock (PostgreSQL)."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with database.reader.connect() as connection:
        for _ in range(500):
            if await connection.scalar(query):
                return
            await asyncio.sleep(0.01)
    raise AssertionError("no transaction ever waited for a lock")

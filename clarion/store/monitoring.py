"""What the store tells monitoring (`GET /metrics`): how many jobs wait or run in each queue, and how many
of each connection pool's connections are in use. Read when scraped, never on a request's path."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from clarion.jobs.job import JobState
from clarion.store.db import Database
from clarion.store.tables import jobs

WATCHED_JOB_STATES = (JobState.AVAILABLE, JobState.EXECUTING, JobState.RETRYABLE)

_JOB_COUNTS = (
    sa.select(jobs.c.queue, jobs.c.state, sa.func.count().label("jobs"))
    .where(jobs.c.state.in_([state.value for state in WATCHED_JOB_STATES]))
    .group_by(jobs.c.queue, jobs.c.state)
)


async def job_counts(database: Database) -> dict[tuple[str, str], int]:
    """(queue, state) → how many jobs are in that state, for the watched states, in one query (the
    claiming index leads with state and queue)."""
    async with database.reader.connect() as connection:
        rows = (await connection.execute(_JOB_COUNTS)).all()
    return {(row.queue, row.state): row.jobs for row in rows}


@dataclass(frozen=True)
class PoolUsage:
    pool: str
    in_use: int
    size: int
    """The connections it keeps; a SQLAlchemy pool may open `max_overflow` more under load."""


def _engine_pool(name: str, engine_pool: sa.Pool) -> PoolUsage:
    assert isinstance(engine_pool, QueuePool), f"{name}: an unexpected pool class {type(engine_pool)}"
    return PoolUsage(name, engine_pool.checkedout(), engine_pool.size())


def pool_usage(database: Database) -> list[PoolUsage]:
    """Each pool once: on PostgreSQL the reader and writer engines share theirs."""
    writer = database.writer.sync_engine.pool
    reader = database.reader.sync_engine.pool
    pools = [_engine_pool("writer", writer)]
    if reader is not writer:
        pools.append(_engine_pool("reader", reader))
    in_use, size = database.direct.usage()
    pools.append(PoolUsage("direct", in_use, size))
    return pools

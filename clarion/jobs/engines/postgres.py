"""The PostgreSQL queue engine: claims with `FOR UPDATE SKIP LOCKED` so any number of workers in any number
of processes share the queue, and wakes them with `LISTEN/NOTIFY` when jobs arrive.

Inserting a job sends `NOTIFY clarion_jobs, '<queue>'` in the inserting transaction, so PostgreSQL delivers
it only on commit. Each worker holds one dedicated connection that LISTENs; when that connection is lost it
reconnects with a pause, and the producers' polling timer covers the notifications missed meanwhile. It
says so once per loss, not once per try: an outage is logged by `clarion.store.availability`. This
is the only module of `clarion.jobs` that touches a raw asyncpg connection. The queue's clock is the
server's `now()` (the start of the statement's transaction). The rest of the engine is shared with SQLite
(`engines/base.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.jobs.engines.base import Clock, Listener, SQLQueueEngine, WakeUp
from clarion.jobs.job import Job, JobState
from clarion.store.db import Database
from clarion.store.dialect import JSONType
from clarion.store.direct import DirectQuery
from clarion.store.recipients import RowParameters
from clarion.store.tables import UTCDateTime, jobs

logger = logging.getLogger(__name__)

CHANNEL = "clarion_jobs"
RECONNECT_SECONDS = 1.0
FIRST_CONNECT_SECONDS = 5.0


_ISO_8601 = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


class PostgresQueueEngine(SQLQueueEngine):
    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        super().__init__(database, clock=clock)
        self._enqueue_all: tuple[DirectQuery, RowParameters] | None = None

    def _update_locked(self, selected: sa.Select[Any], values: dict[str, Any]) -> sa.Update:
        # The CTE is an optimization fence (MATERIALIZED): the locking SELECT runs exactly once, taking
        # `limit` rows and skipping those other claimers hold, instead of being folded into the UPDATE and
        # re-evaluated per row, which could lock more rows than asked for or claim a row twice.
        locked = selected.with_for_update(skip_locked=True).cte("locked").prefix_with("MATERIALIZED")
        return jobs.update().where(jobs.c.id == locked.c.id).values(**values).returning(*jobs.c)

    def _database_now(self, seconds: float) -> sa.ColumnElement[datetime]:
        now: sa.ColumnElement[datetime] = sa.func.now()
        if seconds:
            now = now + sa.literal(timedelta(seconds=seconds), sa.Interval())
        return sa.type_coerce(now, UTCDateTime)

    def _database_now_text(self) -> sa.ColumnElement[str]:
        return sa.func.to_char(sa.func.timezone("UTC", sa.func.now()), _ISO_8601, type_=sa.String)

    def _append_error(self, at: sa.ColumnElement[str], error: sa.ColumnElement[str]) -> sa.ColumnElement[Any]:
        entry = sa.func.jsonb_build_object(
            sa.literal("attempt", sa.String),
            jobs.c.attempt,
            sa.literal("at", sa.String),
            at,
            sa.literal("error", sa.String),
            error,
        )
        return jobs.c.errors.op("||", return_type=JSONType)(sa.func.jsonb_build_array(entry))

    async def enqueue_all(self, new_jobs: Sequence[Job]) -> None:
        """One statement per chunk, alone in autocommit on the direct connections
        (`Database.write_statement`): the insert, and the wake-ups of the queues it made jobs available
        in, as a CTE. A SQLAlchemy transaction would add BEGIN and COMMIT round trips and more CPU than a
        group commit of triggers costs."""
        if self._enqueue_all is None:
            insert, row_parameters = self._insert_all_statement("postgresql")
            inserted = insert.cte("inserted")
            due = (
                sa.select(inserted.c.queue)
                .where(inserted.c.state == JobState.AVAILABLE.value)
                .distinct()
                .subquery("due")
            )
            statement = sa.select(sa.func.pg_notify(CHANNEL, due.c.queue))
            self._enqueue_all = (DirectQuery(statement), row_parameters)
        query, row_parameters = self._enqueue_all
        for parameters in self._insert_all_batches(new_jobs, row_parameters, self.database.writer.dialect):
            await self.database.write_statement(query, **parameters)

    async def _notify(self, connection: AsyncConnection, queues: Iterable[str]) -> None:
        for queue in queues:
            await connection.execute(sa.select(sa.func.pg_notify(CHANNEL, queue)))

    async def listen(self, wake_up: WakeUp) -> Listener:
        url = sa.make_url(self.database.url).set(drivername="postgresql")
        listener = PostgresListener(
            url.render_as_string(hide_password=False), wake_up, connect_timeout=self.database.wait_seconds
        )
        await listener.start()
        return listener


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _connection: event.set()


class PostgresListener:
    """One LISTEN connection, kept open (reconnected when lost) until `close`."""

    def __init__(self, dsn: str, wake_up: WakeUp, *, connect_timeout: float) -> None:
        self._dsn = dsn
        self._wake_up = wake_up
        self._connect_timeout = connect_timeout
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="clarion-jobs-listen")
        # Wait for the first LISTEN so that jobs inserted right after start wake the worker; a server that
        # is not reachable yet only delays wake-ups to the next poll.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), FIRST_CONNECT_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._wake_up(payload)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                if not failing:
                    logger.warning("job wake-ups: cannot connect to PostgreSQL (%s); polling meanwhile", exc)
                    failing = True
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(_setter(lost))
            try:
                await connection.add_listener(CHANNEL, self._on_notification)
                if failing:
                    logger.warning("job wake-ups: listening again")
                    failing = False
                self._connected.set()
                await lost.wait()
                logger.warning("job wake-ups: the LISTEN connection was lost; reconnecting")
                failing = True
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                if not failing:
                    logger.warning("job wake-ups: LISTEN failed (%s); reconnecting", exc)
                    failing = True
            finally:
                with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError):
                    await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(RECONNECT_SECONDS)

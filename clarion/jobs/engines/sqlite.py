"""The SQLite queue engine: the shared engine (`engines/base.py`) with a single-writer claim and in-process
wake-ups.

SQLite has one writer at a time (BEGIN IMMEDIATE on the store's writer connection, `clarion.store.db`), so a
claim needs no row locks: `UPDATE … WHERE id IN (the first `demand` due ids) RETURNING *` runs alone.
Wake-ups stay inside the process: the listeners are called once the inserting transaction commits, so the
woken producer finds the job. Another process using the same file (a second `clarion worker`) is woken
only by its polling timer.

The queue's clock is SQLite's `'now'` (UTC, to the millisecond), written in `UTCDateTime`'s text layout
(`2024-05-22 12:00:00.123000`, microseconds padded with zeros) so that it compares correctly, as text, with
the timestamps the store writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.jobs.engines.base import Clock, Listener, SQLQueueEngine, WakeUp
from clarion.jobs.job import Job, JobState
from clarion.store.db import Database
from clarion.store.tables import UTCDateTime, jobs

_STORED_LAYOUT = "%Y-%m-%d %H:%M:%f000"
"""`UTCDateTime`'s layout: SQLite's `%f` is seconds with three decimals, padded here to six."""
_ISO_8601 = "%Y-%m-%dT%H:%M:%f000+00:00"


class SQLiteQueueEngine(SQLQueueEngine):
    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        super().__init__(database, clock=clock)
        self._listeners: list[WakeUp] = []

    def _update_locked(self, selected: sa.Select[Any], values: dict[str, Any]) -> sa.Update:
        return jobs.update().where(jobs.c.id.in_(selected)).values(**values).returning(*jobs.c)

    def _database_now(self, seconds: float) -> sa.ColumnElement[datetime]:
        return sa.type_coerce(sa.func.strftime(_STORED_LAYOUT, "now", f"{seconds:+.6f} seconds"), UTCDateTime)

    def _database_now_text(self) -> sa.ColumnElement[str]:
        return sa.func.strftime(_ISO_8601, "now", type_=sa.String)

    def _append_error(self, at: sa.ColumnElement[str], error: sa.ColumnElement[str]) -> sa.ColumnElement[Any]:
        entry = sa.func.json_object("attempt", jobs.c.attempt, "at", at, "error", error)
        return sa.func.json_insert(jobs.c.errors, "$[#]", entry)

    async def enqueue_all(self, new_jobs: Sequence[Job]) -> None:
        """`insert_all` in a transaction of its own on the writer's driver connection
        (`Database.write_on_driver`): a group commit of triggers is one statement, which a SQLAlchemy
        transaction would cost more than."""
        query, row_parameters = self._insert_all_query("sqlite")
        compiled = query.compiled_for(self.database.writer.dialect)
        batches = [
            compiled.parameters(parameters)
            for parameters in self._insert_all_batches(new_jobs, row_parameters, self.database.writer.dialect)
        ]

        def insert(connection: sqlite3.Connection) -> set[str]:
            rows = [row for batch in batches for row in connection.execute(compiled.sql, batch).fetchall()]
            return {queue for queue, state in rows if state == JobState.AVAILABLE.value}

        self._wake(sorted(await self.database.write_on_driver(insert)))

    async def _notify(self, connection: AsyncConnection, queues: Iterable[str]) -> None:
        names = list(queues)
        # Fired as the commit starts; the calls run on the loop's next turn, after the inline commit.
        event.listen(connection.sync_connection, "commit", lambda _connection: self._wake(names), once=True)

    def _wake(self, queues: Sequence[str]) -> None:
        loop = asyncio.get_running_loop()
        for queue in queues:
            for wake_up in list(self._listeners):
                loop.call_soon(wake_up, queue)

    async def listen(self, wake_up: WakeUp) -> Listener:
        self._listeners.append(wake_up)
        return _LocalListener(self._listeners, wake_up)


class _LocalListener:
    def __init__(self, listeners: list[WakeUp], wake_up: WakeUp) -> None:
        self._listeners = listeners
        self._wake_up = wake_up

    async def close(self) -> None:
        if self._wake_up in self._listeners:
            self._listeners.remove(self._wake_up)

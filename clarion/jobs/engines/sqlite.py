"""The SQLite queue engine: the shared engine (`engines/base.py`) with a single-writer claim and in-process
wake-ups.

SQLite has one writer at a time (BEGIN IMMEDIATE on the store's writer connection, `clarion.store.db`), so a
claim needs no row locks: `UPDATE … WHERE id IN (the first `demand` due ids) RETURNING *` runs alone.
Wake-ups stay inside the process: inserting a job calls the listeners at once, and the woken producer's claim
then waits for the writer, that is for the inserting transaction to end. Another process using the same
file (a second `clarion worker`) is woken only by its polling timer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.jobs.engines.base import Clock, Listener, SQLQueueEngine, WakeUp
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.tables import jobs


class SQLiteQueueEngine(SQLQueueEngine):
    def __init__(self, database: Database, *, clock: Clock = utcnow) -> None:
        super().__init__(database, clock=clock)
        self._listeners: list[WakeUp] = []

    def _claim_statement(self, due: sa.Select[Any], values: dict[str, Any]) -> sa.Update:
        return jobs.update().where(jobs.c.id.in_(due)).values(**values).returning(*jobs.c)

    async def _notify(self, connection: AsyncConnection, queues: Iterable[str]) -> None:
        for queue in queues:
            for wake_up in list(self._listeners):
                wake_up(queue)

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

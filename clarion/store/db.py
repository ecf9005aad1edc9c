"""Connections to the store: one `Database` holding a reader and a writer `AsyncEngine` over the same URL.

On SQLite the writer is a single connection that opens every transaction with BEGIN IMMEDIATE, so writers
queue inside the process instead of failing with SQLITE_BUSY on a lock upgrade, and the file runs in WAL
mode so readers never wait for it. On PostgreSQL both names refer to the same pooled engine. Repositories
read through `reader` and write through `writer`; which store is in use is decided in `clarion.runtime`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from clarion.store.json_merge import deep_merge

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


def _sqlite_deep_merge(base: str | None, update: str | None) -> str | None:
    if update is None:
        return base
    patch = json.loads(update)
    current = json.loads(base) if base is not None else None
    if isinstance(current, dict) and isinstance(patch, dict):
        return json.dumps(deep_merge(current, patch))
    return update


def _prepare_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so BEGIN can be emitted as we choose.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()
        dbapi_connection.create_function("clarion_deep_merge", 2, _sqlite_deep_merge, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass(frozen=True)
class Database:
    url: str
    reader: AsyncEngine
    writer: AsyncEngine

    @property
    def dialect_name(self) -> str:
        return self.writer.dialect.name

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def create_database(url: str, *, pool_size: int = 10) -> Database:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        reader = create_async_engine(url, pool_size=pool_size, max_overflow=0)
        _prepare_sqlite(writer, immediate=True)
        _prepare_sqlite(reader, immediate=False)
        return Database(url=url, reader=reader, writer=writer)
    db = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
    return Database(url=url, reader=db, writer=db)

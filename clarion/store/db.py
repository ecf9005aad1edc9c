"""Connections to the store: one `Database` with a reader and a writer `AsyncEngine`, and a direct reader.

On SQLite (through `clarion.store.sqlite_driver`, which runs calls inline) the writer is a single
connection that opens every transaction with BEGIN IMMEDIATE, so writers queue inside the process instead
of failing with SQLITE_BUSY on a lock upgrade, and the file runs in WAL mode so readers never wait for it.
On PostgreSQL both engines share one pool; reads run in autocommit. Hot point reads bypass the engines
through `clarion.store.direct`. Which store is in use is decided in `clarion.runtime`.

Every wait on the database is bounded by `wait_seconds` (`Settings.request_db_timeout` in processes that
serve requests): on PostgreSQL by asyncpg's connect `timeout` and `command_timeout` (a timer the driver
arms per statement, far cheaper than a task per statement), the pool's checkout timeout, and the server's
`statement_timeout` as a backstop for a statement whose cancel request got lost; on SQLite the lock waits
(`clarion.store.sqlite_driver`). A wait that runs out raises, and `availability` turns it into a 503.
Schema upgrades are not bounded: they may rewrite tables, or wait for another starter's upgrade
(`schema_transaction`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import greenlet_spawn

from clarion.store import json_codec, sqlite_driver
from clarion.store.availability import StoreAvailability
from clarion.store.direct import (
    DirectQuery,
    DirectReader,
    PostgresDirectReader,
    SQLiteDirectReader,
    asyncpg_bounds,
)
from clarion.store.json_merge import deep_merge
from clarion.store.wal_checkpointer import BACKSTOP_PAGES, WalCheckpointer

T = TypeVar("T")

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=0",  # lock waits leave the event loop free (`clarion.store.sqlite_driver`)
    "PRAGMA foreign_keys=ON",
)


_JSON_CODEC: dict[str, Any] = {"json_serializer": json_codec.dumps, "json_deserializer": json_codec.loads}


def _sqlite_deep_merge(base: str | None, update: str | None) -> str | None:
    if update is None:
        return base
    patch = json_codec.loads(update)
    current = json_codec.loads(base) if base is not None else None
    if isinstance(current, dict) and isinstance(patch, dict):
        return json_codec.dumps(deep_merge(current, patch))
    return update


def _prepare_sqlite(engine: AsyncEngine, *, writer: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        if writer:
            # The checkpoints are the checkpointer's (`clarion.store.wal_checkpointer`), this one a backstop.
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        cursor.close()
        dbapi_connection.create_function("clarion_deep_merge", 2, _sqlite_deep_merge, deterministic=True)

    if writer:

        @event.listens_for(engine.sync_engine, "begin")
        def on_begin(connection: sa.Connection) -> None:
            # Straight on the driver: a statement through SQLAlchemy's execution path costs more than
            # the rest of a small transaction.
            driver_connection = connection.connection.driver_connection
            assert isinstance(driver_connection, sqlite_driver.InlineConnection)
            driver_connection.begin_immediate()


@dataclass(frozen=True)
class Database:
    url: str
    reader: AsyncEngine
    writer: AsyncEngine
    direct: DirectReader
    wait_seconds: float
    """The bound on each wait on the database."""
    checkpointer: WalCheckpointer | None = None
    """SQLite's: checkpoints the write-ahead log in a thread of its own."""
    availability: StoreAvailability = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "availability", StoreAvailability(self.ping))

    async def ping(self) -> None:
        """Raise unless the database answers a statement within the bound."""
        async with self.reader.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    @asynccontextmanager
    async def schema_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for schema upgrades, without the bound on statements: on PostgreSQL on a
        connection of its own, on SQLite the writer's (whose statements have no timer to run out)."""
        if self.dialect_name == "sqlite":
            async with self.writer.begin() as connection:
                yield connection
            return
        engine = create_async_engine(self.url, poolclass=NullPool, **_JSON_CODEC)
        try:
            async with engine.begin() as connection:
                yield connection
        finally:
            await engine.dispose()

    @property
    def dialect_name(self) -> str:
        return self.writer.dialect.name

    @property
    def write_batches_gather(self) -> bool:
        """Whether a group commit should wait a loop turn for more writes before its first batch. On
        SQLite every batch pays for a SQLAlchemy transaction (~250 µs), and gathering raised identify
        by a quarter under wrk; on PostgreSQL the usual batch is one statement in one round trip
        (`write_statement`), and the turn's latency cost a seventh instead."""
        return self.dialect_name == "sqlite"

    async def write_statement(self, query: DirectQuery, **parameters: Any) -> list[dict[str, Any]]:
        """Run one write statement, atomic by itself, and return its rows (RETURNING). PostgreSQL runs
        it alone in autocommit on the direct reader's connections: one round trip, where a SQLAlchemy
        transaction adds BEGIN and COMMIT round trips and more CPU than a small statement costs.
        SQLite's writes queue for its single writer, so there it runs in a transaction of its own on the
        writer's driver connection (`write_on_driver`)."""
        if self.dialect_name == "postgresql":
            return await self.direct.fetch_all(query, **parameters)
        compiled = query.compiled_for(self.writer.dialect)
        arguments = compiled.parameters(parameters)

        def run(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            return [compiled.row(raw) for raw in connection.execute(compiled.sql, arguments).fetchall()]

        return await self.write_on_driver(run)

    async def write_on_driver(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """SQLite: `work` on the writer's bare driver connection, in a transaction of its own, in turn with
        every other writer (the pool's one connection). A transaction through SQLAlchemy's async engine
        costs ~250 µs whatever it writes (greenlet hand-offs, its transaction and result objects), more
        than a group commit's one statement. Here the connection is taken from the pool itself, in the one
        greenlet the pool needs to wait in: an empty write costs ~100 µs this way and ~250 µs through an
        engine connection."""
        pool = self.writer.sync_engine.pool

        def checked_out() -> T:
            pooled = pool.connect()
            try:
                inline = pooled.driver_connection
                assert isinstance(inline, sqlite_driver.InlineConnection)
                return inline.transaction(work)
            finally:
                pooled.close()

        try:
            return await greenlet_spawn(checked_out)
        except sqlite3.Error as exc:
            # As SQLAlchemy raises the driver's errors, so that callers tell them apart as they do
            # elsewhere (a refused row from a store that failed, `clarion.store.errors`).
            raise sa.exc.DBAPIError.instance(None, None, exc, sqlite3.Error) from exc

    def describe(self) -> str:
        """Where the data lives, for people: the SQLite file, or the PostgreSQL server and database."""
        url = self.writer.url
        if self.dialect_name == "sqlite":
            return f"SQLite ({url.database})"
        return f"PostgreSQL ({url.host}:{url.port or 5432}/{url.database})"

    async def dispose(self) -> None:
        await self.availability.close()
        await self.direct.close()
        await self.writer.dispose()
        if self.reader.sync_engine.pool is not self.writer.sync_engine.pool:
            await self.reader.dispose()
        if self.checkpointer is not None:
            self.checkpointer.stop()


def create_database(url: str, *, pool_size: int = 10, wait_seconds: float = 5.0) -> Database:
    """The store at `url`, every wait on it bounded by `wait_seconds` (see the module's docstring)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        checkpointer = WalCheckpointer(path)
        writer = create_async_engine(
            url,
            async_creator=sqlite_driver.creator(
                path, wait_seconds=wait_seconds, after_commit=checkpointer.nudge
            ),
            pool_size=1,
            max_overflow=0,
            pool_timeout=wait_seconds,
            **_JSON_CODEC,
        )
        # Readers run in autocommit mode: no BEGIN is sent, so there is nothing to roll back either.
        reader = create_async_engine(
            url,
            async_creator=sqlite_driver.creator(path, wait_seconds=wait_seconds),
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=wait_seconds,
            isolation_level="AUTOCOMMIT",
            **_JSON_CODEC,
        )
        _prepare_sqlite(writer, writer=True)
        _prepare_sqlite(reader, writer=False)
        direct = SQLiteDirectReader(path, reader.dialect, wait_seconds=wait_seconds)
        return Database(
            url=url,
            reader=reader,
            writer=writer,
            direct=direct,
            wait_seconds=wait_seconds,
            checkpointer=checkpointer,
        )
    db = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=wait_seconds,
        connect_args=asyncpg_bounds(wait_seconds),
        **_JSON_CODEC,
    )
    # Reads share the pool but skip BEGIN/ROLLBACK: each read is one statement, one round trip.
    reader = db.execution_options(isolation_level="AUTOCOMMIT")
    dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    postgres_direct = PostgresDirectReader(dsn, db.dialect, wait_seconds=wait_seconds)
    return Database(url=url, reader=reader, writer=db, direct=postgres_direct, wait_seconds=wait_seconds)

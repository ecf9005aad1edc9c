"""Direct reads: hot SELECTs compiled once per dialect and run straight on the driver.

SQLAlchemy's async engine costs a few hundred microseconds per statement (greenlet hand-offs, pool
checkout, result wrapping), many times the cost of an indexed point read. Queries on the hottest paths of
the API (getting users, `clarion.store.coalesced_reads`) are therefore written in Core like every other query,
compiled once per dialect, and executed here: on SQLite on one read-only connection called inline (see
`clarion.store.sqlite_driver` for why inline), on PostgreSQL on a few asyncpg connections of its own. Column
types are converted with the same processors SQLAlchemy would apply, so rows look exactly like Core
results. Reads go through here, and on PostgreSQL the writes that are one statement, atomic by itself
(`clarion.store.db.Database.write_statement`; on SQLite those run on the writer's driver connection,
`Database.write_on_driver`); every other write runs in a SQLAlchemy transaction, where `fetch_in` runs a
compiled query straight on the transaction's driver connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import json_codec, sqlite_driver


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    parameter_names: tuple[str, ...]
    bind_processors: tuple[Callable[[Any], Any] | None, ...]
    columns: tuple[str, ...]
    result_processors: tuple[Callable[[Any], Any] | None, ...]
    constants: Mapping[str, Any]
    """The values of the statement's own literals (`sa.literal`, a function's constant arguments), for
    parameters the caller does not give."""

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        given = [values[name] if name in values else self.constants[name] for name in self.parameter_names]
        return [
            process(value) if process else value
            for value, process in zip(given, self.bind_processors, strict=True)
        ]

    def row(self, raw: tuple[Any, ...]) -> dict[str, Any]:
        return {
            column: process(value) if process and value is not None else value
            for column, process, value in zip(self.columns, self.result_processors, raw, strict=True)
        }


Statement = sa.Select[Any] | sa.Insert
"""A SELECT, or an INSERT … RETURNING, whose parameters are named `bindparam`s."""


class DirectQuery:
    """A statement compiled lazily for each dialect it runs on, given as such, or as a function of the
    dialect's name when its SQL differs per store."""

    def __init__(self, statement: Statement | Callable[[str], Statement]) -> None:
        self.statement = statement
        self._compiled: dict[str, CompiledQuery] = {}

    def compiled_for(self, dialect: sa.Dialect) -> CompiledQuery:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compile(dialect)
            self._compiled[dialect.name] = compiled
        return compiled

    def _compile(self, dialect: sa.Dialect) -> CompiledQuery:
        statement = self.statement(dialect.name) if callable(self.statement) else self.statement
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        columns = list(statement.exported_columns)
        return CompiledQuery(
            sql=compiled.string,
            parameter_names=names,
            bind_processors=tuple(
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
            ),
            columns=tuple(str(column.key) for column in columns),
            result_processors=tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
            ),
            constants={
                name: compiled.binds[name].effective_value
                for name in names
                if not compiled.binds[name].required
            },
        )


async def fetch_in(
    connection: AsyncConnection, query: DirectQuery, parameters: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The rows of `query` run in the caller's transaction, on its driver: SQLAlchemy's per-row parameter
    and result handling of a many-row statement costs more than the database's work."""
    compiled = query.compiled_for(connection.dialect)
    result = await connection.exec_driver_sql(compiled.sql, tuple(compiled.parameters(parameters)))
    return [compiled.row(tuple(raw)) for raw in result]


async def execute_in(connection: AsyncConnection, query: DirectQuery, parameters: Mapping[str, Any]) -> None:
    """`fetch_in` for a statement that returns no rows."""
    compiled = query.compiled_for(connection.dialect)
    await connection.exec_driver_sql(compiled.sql, tuple(compiled.parameters(parameters)))


class DirectReader(Protocol):
    async def fetch_all(self, query: DirectQuery, **parameters: Any) -> list[dict[str, Any]]: ...

    def usage(self) -> tuple[int, int]:
        """(connections running a statement now, connections it may hold), for monitoring."""
        ...

    async def close(self) -> None: ...


class SQLiteDirectReader:
    """Reads in WAL mode wait for no writer; the rare lock they meet (another process recovering the log)
    is waited out off the loop, as `clarion.store.sqlite_driver` does for every connection."""

    def __init__(self, path: str, dialect: sa.Dialect, *, wait_seconds: float) -> None:
        self.dialect = dialect
        self._wait_seconds = wait_seconds
        self._connection = sqlite_driver.connect(path)
        self._connection.execute("PRAGMA query_only=ON")

    async def fetch_all(self, query: DirectQuery, **parameters: Any) -> list[dict[str, Any]]:
        compiled = query.compiled_for(self.dialect)
        arguments = compiled.parameters(parameters)
        try:
            rows = self._connection.execute(compiled.sql, arguments).fetchall()
        except sqlite3.OperationalError as exc:
            if not sqlite_driver.is_busy(exc):
                raise
            rows = await sqlite_driver.retry_while_busy(
                lambda: self._connection.execute(compiled.sql, arguments).fetchall(), exc, self._wait_seconds
            )
        return [compiled.row(raw) for raw in rows]

    def usage(self) -> tuple[int, int]:
        # Its one connection's statements run inline, so none is ever seen running from outside.
        return 0, 1

    async def close(self) -> None:
        self._connection.close()


def asyncpg_bounds(wait_seconds: float) -> dict[str, Any]:
    """`asyncpg.connect` arguments bounding each wait by `wait_seconds`: connecting, each statement (a timer
    the driver arms itself, far cheaper than a task per statement), and each statement again on the server,
    a little later, as a backstop for a statement whose cancel request got lost."""
    return {
        "timeout": wait_seconds,
        "command_timeout": wait_seconds,
        "server_settings": {"statement_timeout": str(round(wait_seconds * 1000) + 500)},
    }


class PostgresDirectReader:
    """Statements on a few asyncpg connections of its own, each taken from a list of idle ones and put
    back. asyncpg's pool costs ~80 µs of CPU per statement for its acquire and release (connection
    holders, reset hooks, timeouts), as much as a batched point read itself; these statements leave no
    session state behind (no transactions, no settings), so nothing needs resetting between them. With
    `wait_seconds`, each statement and each new connection (with its set-up) waits at most that long."""

    def __init__(
        self, dsn: str, dialect: sa.Dialect, max_size: int = 10, *, wait_seconds: float | None = None
    ) -> None:
        self.dsn = dsn
        self.dialect = dialect
        self.max_size = max_size
        self.wait_seconds = wait_seconds
        self._bounds = asyncpg_bounds(wait_seconds) if wait_seconds is not None else {}
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[asyncpg.Connection] = []
        self._busy = 0

    async def _connect(self) -> asyncpg.Connection:
        # One bound for the connection and its set-up statements together, as for a single wait.
        async with asyncio.timeout(self.wait_seconds):
            return await self._connect_unbounded()

    async def _connect_unbounded(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self.dsn, **self._bounds)
        # The same text-to-Python decoding SQLAlchemy's asyncpg dialect installs, so that its result
        # processors apply unchanged.
        try:
            for type_name, prefix in (("json", b""), ("jsonb", b"\x01")):
                await connection.set_type_codec(
                    type_name,
                    encoder=lambda value, prefix=prefix: prefix + value.encode(),
                    decoder=lambda value, prefix=prefix: json_codec.loads(value[len(prefix) :]),
                    schema="pg_catalog",
                    format="binary",
                )
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def _idle_connection(self) -> asyncpg.Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
        return await self._connect()

    async def fetch_all(self, query: DirectQuery, **parameters: Any) -> list[dict[str, Any]]:
        compiled = query.compiled_for(self.dialect)
        arguments = compiled.parameters(parameters)
        async with self._slots:
            self._busy += 1
            try:
                connection = await self._idle_connection()
                try:
                    rows = await connection.fetch(compiled.sql, *arguments)
                except asyncpg.PostgresError:
                    self._idle.append(connection)  # refused by the server, which leaves it ready
                    raise
                except BaseException:
                    connection.terminate()  # cut off mid-statement (cancelled, connection lost): never reused
                    raise
                self._idle.append(connection)
            finally:
                self._busy -= 1
        return [compiled.row(tuple(raw)) for raw in rows]

    def usage(self) -> tuple[int, int]:
        return self._busy, self.max_size

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

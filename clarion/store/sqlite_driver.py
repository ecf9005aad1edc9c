"""An asyncio face on the standard `sqlite3` module that runs every call inline on the event loop.

SQLAlchemy's async engine expects an aiosqlite-style driver, which sends each call to a thread of its own
and back. For SQLite that hand-off costs far more than the work: an indexed read or a WAL append takes
microseconds, a thread round trip with its GIL hand-over tens to hundreds of them, and a request makes
several calls. So the calls run here, directly. Readers never wait in WAL mode; the one writer connection
waits only on a lock held by another process (`busy_timeout`), which in the embedded setup means a short
CLI command. The consequence to keep in mind: a slow statement holds the event loop for its duration, so
statements on SQLite must stay small (batched writes are chunked by their callers).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, operation: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        self._cursor.execute(operation, parameters)
        return self

    async def executemany(self, operation: str, parameters: Sequence[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(operation, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _ImmediateQueue:
    """Stands in for aiosqlite's request queue, which SQLAlchemy uses to set the isolation level: the
    function runs at once and its future resolves."""

    def put_nowait(self, request: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = request
        future.set_result(function())


class InlineConnection:
    def __init__(
        self, connection: sqlite3.Connection, after_commit: Callable[[], None] | None = None
    ) -> None:
        self._conn = connection
        self._after_commit = after_commit
        self._connection: sqlite3.Connection | None = connection
        self._tx = _ImmediateQueue()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    def begin_immediate(self) -> None:
        """Open a transaction holding the write lock from its start (see `clarion.store.db`)."""
        self._conn.execute("BEGIN IMMEDIATE")

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the bare connection in a transaction of its own, holding the write lock from its start:
        committed if it returns, rolled back if it raises."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(self._conn)
            self._commit()
        except BaseException:
            self._conn.rollback()  # a no-op after a commit that failed and ended the transaction
            raise
        return result

    def _commit(self) -> None:
        self._conn.commit()
        if self._after_commit is not None:
            self._after_commit()

    async def commit(self) -> None:
        self._commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        self._conn.close()

    async def create_function(self, name: str, arity: int, function: Callable[..., Any], **kw: Any) -> None:
        self._conn.create_function(name, arity, function, **kw)


def creator(path: str, after_commit: Callable[[], None] | None = None) -> Callable[[], Any]:
    """The `async_creator` for `create_async_engine` opening `path` with this driver; `after_commit` is
    called after each commit of its connections."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        return InlineConnection(connection, after_commit)

    return connect

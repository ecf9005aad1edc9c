"""An asyncio face on the standard `sqlite3` module that runs every call inline on the event loop.

SQLAlchemy's async engine expects an aiosqlite-style driver, which sends each call to a thread of its own
and back. For SQLite that hand-off costs far more than the work: an indexed read or a WAL append takes
microseconds, a thread round trip with its GIL hand-over tens to hundreds of them, and a request makes
several calls. So the calls run here, directly. The consequence to keep in mind: a slow statement holds the
event loop for its duration, so statements on SQLite must stay small (batched writes are chunked by their
callers).

No call waits for a lock inline, though: the connections run with `busy_timeout=0`, so a lock held by
another process (a CLI command's write, say) makes the call fail at once with SQLITE_BUSY, and the call is
tried again after an `asyncio.sleep` (`BUSY_PAUSES`) until it succeeds or `wait_seconds` have passed; then
the last SQLITE_BUSY is raised (`clarion.store.availability` answers it with a 503). The event loop runs
other work meanwhile. The calls that are not coroutines (BEGIN IMMEDIATE, run from SQLAlchemy's `begin`
event and from `Database.write_on_driver`, both inside SQLAlchemy's greenlet) sleep through SQLAlchemy's
`await_`.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy.util import await_

T = TypeVar("T")

BUSY_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
"""The sleeps between tries of a call that met another process's lock, the last one repeated: short first,
as most such locks are a CLI command's single small transaction."""


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether `exc` is SQLITE_BUSY (or one of its extended codes): a lock another connection holds."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


def _pauses(wait_seconds: float) -> Iterator[float]:
    deadline = time.monotonic() + wait_seconds
    for pause in itertools.chain(BUSY_PAUSES, itertools.repeat(BUSY_PAUSES[-1])):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        yield min(pause, remaining)


async def retry_while_busy(call: Callable[[], T], busy: sqlite3.OperationalError, wait_seconds: float) -> T:
    """`call` again, after it raised `busy`, with the event loop free between tries, until it succeeds or
    `wait_seconds` have passed (then the last SQLITE_BUSY is raised)."""
    for pause in _pauses(wait_seconds):
        await asyncio.sleep(pause)
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            busy = exc
    raise busy


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor, wait_seconds: float) -> None:
        self._cursor = cursor
        self._wait_seconds = wait_seconds

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
        try:
            self._cursor.execute(operation, parameters)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            await retry_while_busy(
                lambda: self._cursor.execute(operation, parameters), exc, self._wait_seconds
            )
        return self

    async def executemany(self, operation: str, parameters: Sequence[Sequence[Any]]) -> InlineCursor:
        try:
            self._cursor.executemany(operation, parameters)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            await retry_while_busy(
                lambda: self._cursor.executemany(operation, parameters), exc, self._wait_seconds
            )
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
        self,
        connection: sqlite3.Connection,
        after_commit: Callable[[], None] | None = None,
        *,
        wait_seconds: float,
    ) -> None:
        self._conn = connection
        self._after_commit = after_commit
        self._wait_seconds = wait_seconds
        self._connection: sqlite3.Connection | None = connection
        self._tx = _ImmediateQueue()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self._wait_seconds)

    def begin_immediate(self) -> None:
        """Open a transaction holding the write lock from its start (see `clarion.store.db`); called inside
        SQLAlchemy's greenlet, which it leaves to the event loop while another process holds the lock."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            await_(retry_while_busy(lambda: self._conn.execute("BEGIN IMMEDIATE"), exc, self._wait_seconds))

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the bare connection in a transaction of its own, holding the write lock from its start:
        committed if it returns, rolled back if it raises. Called inside SQLAlchemy's greenlet, as
        `begin_immediate`."""
        self.begin_immediate()
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


def connect(path: str) -> sqlite3.Connection:
    """A connection to `path` that never waits for a lock itself (`busy_timeout=0`)."""
    return sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)


def creator(
    path: str, *, wait_seconds: float, after_commit: Callable[[], None] | None = None
) -> Callable[[], Any]:
    """The `async_creator` for `create_async_engine` opening `path` with this driver: calls wait at most
    `wait_seconds` for another process's lock; `after_commit` is called after each commit."""

    async def connect_inline() -> InlineConnection:
        return InlineConnection(connect(path), after_commit, wait_seconds=wait_seconds)

    return connect_inline

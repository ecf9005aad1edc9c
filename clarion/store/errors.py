"""The store's own errors, translated from the database driver's at the store boundary.

    InvalidInputError (clarion.errors)
     └── DataRefusedError   the database refused the data written: a value it cannot store, a broken
                            constraint; writing the same data again fails again

`unavailability()` tells the other side: an error meaning the database did not answer within its bound
(unreachable, frozen, shutting down, locked by another process), which `clarion.store.availability` turns
into `ServiceUnavailableError` for callers (503).

`refused_data()` wraps a write and raises `DataRefusedError` (with the driver's error as its cause) for such
refusals, and lets every other failure through unchanged: a store that is unreachable or a transaction that
lost a race is not the data's fault, and retrying may succeed. Its caller is `clarion.engine.bulk`, which
turns refused rows into a bulk operation's error items.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy.exc

from clarion.errors import InvalidInputError

_DATA_SQLSTATE_CLASSES = ("22", "23")
"""SQL standard classes: data exception, integrity constraint violation."""

_UNAVAILABLE_SQLSTATES = ("08", "57P", "57014", "53300")
"""Connection exception; the server shutting down or starting; a statement cancelled (the server's own
`statement_timeout`, the backstop of the client's bound); too many connections."""


class DataRefusedError(InvalidInputError):
    """The database refused the data written, and would refuse it on every retry."""


def _refuses_data(exc: sqlalchemy.exc.DBAPIError) -> bool:
    # The SQLSTATE covers what a driver reports without a specific exception type (PostgreSQL's refusal of
    # the NUL character, for one).
    if isinstance(exc, sqlalchemy.exc.DataError | sqlalchemy.exc.IntegrityError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _DATA_SQLSTATE_CLASSES


@contextmanager
def refused_data() -> Iterator[None]:
    """Raise `DataRefusedError` from the database's refusal of the data written inside the block."""
    try:
        yield
    except sqlalchemy.exc.DBAPIError as exc:
        if not _refuses_data(exc):
            raise
        raise DataRefusedError(f"The store refused the data: {exc.orig}") from exc


@dataclass(frozen=True)
class Unavailability:
    reason: str
    outage: bool
    """Whether the database itself failed (unreachable, frozen) rather than one wait ran out on a lock
    another process holds, which says nothing about the next statement."""


def unavailability(exc: BaseException) -> Unavailability | None:
    """What made the database unavailable to the statement that raised `exc`, or None when `exc` means
    something else (a bug, refused data)."""
    seen: BaseException | None = exc
    while seen is not None:
        found = _unavailability_of(seen)
        if found is not None:
            return found
        seen = seen.orig if isinstance(seen, sqlalchemy.exc.DBAPIError) else seen.__cause__
    return None


def _unavailability_of(exc: BaseException) -> Unavailability | None:
    if isinstance(exc, sqlite3.OperationalError):
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
            return Unavailability("the database file is locked by another process", outage=False)
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return Unavailability(f"{type(exc).__name__}: {exc}", outage=True)
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return Unavailability("no pooled connection came free within the bound", outage=True)
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return Unavailability(f"connection lost: {exc.orig}", outage=True)
    if isinstance(exc, TimeoutError):
        return Unavailability("no answer within the bound", outage=True)
    if isinstance(exc, OSError):
        return Unavailability(f"{type(exc).__name__}: {exc}", outage=True)
    return None

"""The store's own errors, translated from the database driver's at the store boundary.

    InvalidInputError (clarion.errors)
     └── DataRefusedError   the database refused the data written: a value it cannot store, a broken
                            constraint; writing the same data again fails again

`refused_data()` wraps a write and raises `DataRefusedError` (with the driver's error as its cause) for such
refusals, and lets every other failure through unchanged: a store that is unreachable or a transaction that
lost a race is not the data's fault, and retrying may succeed. Its caller is `clarion.engine.bulk`, which
turns refused rows into a bulk operation's error items.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc

from clarion.errors import InvalidInputError

_DATA_SQLSTATE_CLASSES = ("22", "23")
"""SQL standard classes: data exception, integrity constraint violation."""


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

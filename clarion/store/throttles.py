"""Throttles: how many runs a throttle step let through in its current window, per workflow step, recipient
and resolved `throttle_key` (`ThrottleIdentity`).

Knock's throttle is a gate with a fixed window that the first run to pass opens: up to `limit` runs pass
until the window ends, the others are throttled (their run stops); the first run after the end opens the
next window. A throttled run opens nothing and counts for nothing. Each step keeps its own count, and
`window_ends_at` is the end of the run that opened the window (a dynamic window is the opener's).

`count_throttled` decides for many runs at once in the caller's transaction, in two statements whatever
their number (a statement takes up to `clarion.store.batching.ROWS_PER_STATEMENT` throttles): the first
takes each throttle's row, locked (inserting it when missing), the second writes the counts back. Runs of
one throttle are decided one after another in the order given. On PostgreSQL two transactions counting
the same throttle are serialised on its row, so the limit is never exceeded however they interleave; rows
are locked in identity order (code-point order), so they never deadlock. Windows that are over are pruned
by the retention pass (`clarion.store.retention`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batching import chunks
from clarion.store.db import Database
from clarion.store.dialect import RowParameters
from clarion.store.direct import DirectQuery, fetch_in
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import UTCDateTime, throttles

IDENTITY_COLUMNS = (
    "environment_id",
    "workflow_key",
    "step_ref",
    "recipient_collection",
    "recipient_id",
    "key",
)


@dataclass(frozen=True, slots=True)
class ThrottleIdentity:
    environment_id: str
    workflow_key: str
    step_ref: str
    recipient: RecipientKey
    key: str

    def stored(self) -> tuple[str, ...]:
        """The identity's columns as stored, in the primary key's order, which is also the lock order."""
        return (
            self.environment_id,
            self.workflow_key,
            self.step_ref,
            self.recipient.collection,
            self.recipient.id,
            self.key,
        )


@dataclass(slots=True)
class ThrottleEntry:
    """A run reaching a throttle step (built by `ThrottleSettings.entry`)."""

    identity: ThrottleIdentity
    limit: int
    window_ends_at: datetime
    """When a window this run opens ends; in the future."""


@dataclass(slots=True)
class ThrottleResult:
    passed: bool
    """The run goes on; otherwise it is throttled and stops."""
    count: int
    """Runs passed in the window, this one included when it passed."""
    window_ends_at: datetime


@dataclass(slots=True)
class _Window:
    passed: int
    started_at: datetime
    ends_at: datetime
    changed: bool = False


_STAMP = UTCDateTime()


def _stamp(moment: datetime, sa_dialect: sa.Dialect) -> str:
    return _STAMP.bound_text(moment, sa_dialect)


@functools.cache
def _take(dialect_name: str) -> tuple[DirectQuery, RowParameters]:
    """Each throttle's row, locked, inserted (no run passed yet) when missing."""
    rows, row_parameters = dialect.bound_rows([*IDENTITY_COLUMNS, "window_ends_at"], dialect_name)
    now = sa.bindparam("now", type_=UTCDateTime)
    source = (
        sa.select(
            *(rows.c[name] for name in IDENTITY_COLUMNS),
            sa.literal_column("0"),
            now,
            sa.cast(rows.c.window_ends_at, UTCDateTime),
        )
        .where(sa.true())  # SQLite reads "FROM … ON CONFLICT" as a join without it
        .order_by(rows.c.bound_row)
    )
    insert = dialect.insert(throttles, dialect_name).from_select(
        [*IDENTITY_COLUMNS, "passed", "window_started_at", "window_ends_at"], source
    )
    statement = insert.on_conflict_do_update(
        index_elements=list(IDENTITY_COLUMNS),
        # Changes nothing; taking the row is the point: a concurrent count waits for this one's commit.
        set_={"passed": throttles.c.passed},
    ).returning(
        *(throttles.c[name] for name in (*IDENTITY_COLUMNS, "passed", "window_started_at", "window_ends_at"))
    )
    return DirectQuery(statement), row_parameters


@functools.cache
def _write_back(dialect_name: str) -> tuple[sa.Update, RowParameters]:
    rows, row_parameters = dialect.bound_rows(
        [*IDENTITY_COLUMNS, "passed", "window_started_at", "window_ends_at"], dialect_name
    )
    statement = (
        throttles.update()
        .where(*(throttles.c[name] == rows.c[name] for name in IDENTITY_COLUMNS))
        .values(
            passed=sa.cast(rows.c.passed, sa.Integer),
            window_started_at=sa.cast(rows.c.window_started_at, UTCDateTime),
            window_ends_at=sa.cast(rows.c.window_ends_at, UTCDateTime),
        )
    )
    return statement, row_parameters


async def count_throttled(
    connection: AsyncConnection, entries: Sequence[ThrottleEntry], now: datetime
) -> list[ThrottleResult]:
    """Let each entry's run through its throttle or throttle it, in the caller's transaction; a result per
    entry, in order."""
    positions: dict[tuple[str, ...], list[int]] = {}
    for position, entry in enumerate(entries):
        positions.setdefault(entry.identity.stored(), []).append(position)
    sa_dialect = connection.dialect
    take, take_parameters = _take(sa_dialect.name)
    windows: dict[tuple[str, ...], _Window] = {}
    for chunk in chunks(sorted(positions)):
        rows = [
            [*identity, _stamp(entries[positions[identity][0]].window_ends_at, sa_dialect)]
            for identity in chunk
        ]
        for row in await fetch_in(connection, take, {"now": now, **take_parameters(rows)}):
            identity = tuple(row[name] for name in IDENTITY_COLUMNS)
            windows[identity] = _Window(row["passed"], row["window_started_at"], row["window_ends_at"])
    results: dict[int, ThrottleResult] = {}
    for identity, found in positions.items():
        window = windows[identity]
        for position in found:
            entry = entries[position]
            if window.ends_at <= now:
                window.passed, window.started_at, window.ends_at = 0, now, entry.window_ends_at
            passed = window.passed < entry.limit
            if passed:
                window.passed += 1
                window.changed = True
            results[position] = ThrottleResult(passed, window.passed, window.ends_at)
    statement, row_parameters = _write_back(sa_dialect.name)
    changed = sorted(identity for identity, window in windows.items() if window.changed)
    for chunk in chunks(changed):
        rows = [
            [
                *identity,
                str(windows[identity].passed),
                _stamp(windows[identity].started_at, sa_dialect),
                _stamp(windows[identity].ends_at, sa_dialect),
            ]
            for identity in chunk
        ]
        await connection.execute(statement, row_parameters(rows))
    return [results[position] for position in range(len(entries))]


async def prune_expired_throttles(database: Database, now: datetime, batch: int) -> int:
    """Delete throttle windows that ended before `now`, `batch` rows per transaction; returns how many. Rows
    locked by a count in progress are left for the next pass."""
    c = throttles.c
    key = sa.tuple_(*(c[name] for name in IDENTITY_COLUMNS))
    deleted = 0
    while True:
        expired = (
            sa.select(*(c[name] for name in IDENTITY_COLUMNS))
            .where(c.window_ends_at < now)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        async with database.writer.begin() as connection:
            result = await connection.execute(throttles.delete().where(key.in_(expired)))
        deleted += int(result.rowcount)
        if result.rowcount < batch:
            return deleted

"""Batches: the activities of runs that reached a batch step for the same recipient (and key) while a window
was open, kept until the run that carries the batch flushes it.

A batch has an identity (`BatchIdentity`: environment, workflow, recipient, resolved `batch_key`, and the
workflow version or the step, `clarion.engine.batch_settings`) and at most one open batch per identity, held
by a partial unique index. `join_batches` puts runs into their batches: the first run to find no open batch
opens one and carries it (it waits until `closes_at`, then flushes it), later runs add their activity and end
there; with `flush_leading` the opener goes on at once, outside the batch, and the second run carries it.
A sliding window moves `closes_at` to each joining run's window end, never past `extension_ends_at`; a batch
closes early, at once, when `batch_items_max_limit` activities are in it or a sliding cap has passed, and its
carrier must then be woken (`JoinResult.closed_now`). A batch whose window is over takes no more runs: the
next one opens a new batch. `flush_batches` flushes each batch once, giving its counts and the first or last
activities and actors to render; `remove_activities` takes cancelled runs' activities out of open batches;
`activities_page` pages through a batch's activities for `GET /v1/messages/{id}/activities`.

Guarantees, on both stores and under concurrent transactions on PostgreSQL:
- Everything runs in the caller's transaction (the checkpoint of a step), one statement per kind for all the
  entries given, whatever their number (up to `ROWS_PER_STATEMENT` rows a statement,
  `clarion.store.batching`). Entries for the same identity behave as if joined one after another, in the
  order given.
- Two transactions joining the same identity never make two open batches: the first to insert holds the
  unique index entry, and the other's upsert waits for it and then joins the committed batch. Every write
  locks batches in identity order (code-point order, `clarion.store.batching`), so they never deadlock.
- A batch is flushed once: the flush locks it and moves it to `flushed`; a second flush finds it gone.
  A join, a cancel and a flush of one batch are serialised on its row, so an activity is either in the
  flushed batch or in none.
- The carrier is not woken when a sliding window moves its close later: it wakes at the moment it was given
  and `flush_batches` tells it to wait again (`FlushOutcome.WAIT`) until the new `closes_at`. No other run's
  job is touched from a joining run's transaction.

Moments are the caller's `now`, so windows are tested with a clock of the test's own.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batch_activities import BatchContents, RenderRequest, batch_contents
from clarion.store.batching import chunks
from clarion.store.bulk_insert import BulkInsert
from clarion.store.dialect import RowParameters
from clarion.store.direct import DirectQuery, fetch_in
from clarion.store.ids import new_uuid
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import BATCHES_OPEN, UTCDateTime, batch_activities, batches

KEY_LENGTH = 255
"""Longer resolved batch keys are stored as their SHA-256 digest, which keeps them apart all the same."""


class BatchState(StrEnum):
    OPEN = "open"
    """Taking activities until `closes_at`."""
    CLOSED = "closed"
    """Its window is over or it is full: waiting for its carrier to flush it."""
    FLUSHED = "flushed"


@dataclass(frozen=True, slots=True)
class BatchIdentity:
    """Which batch a run joins. `step_ref` is '' for a batch per workflow version (`pinned`), `version_id`
    '' for one per step (`latest`)."""

    environment_id: str
    workflow_key: str
    recipient: RecipientKey
    step_ref: str
    version_id: str
    key: str

    def stored(self) -> tuple[str, ...]:
        """The identity's columns as stored, in the unique index's order, which is also the lock order."""
        return (
            self.environment_id,
            self.workflow_key,
            self.version_id,
            self.step_ref,
            self.recipient.collection,
            self.recipient.id,
            stored_key(self.key),
        )


IDENTITY_COLUMNS = (
    "environment_id",
    "workflow_key",
    "version_id",
    "step_ref",
    "recipient_collection",
    "recipient_id",
    "key",
)


def stored_key(key: str) -> str:
    if len(key) <= KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True)
class BatchJoin:
    """A run reaching a batch step (built by `BatchSettings.join`)."""

    run_id: str
    identity: BatchIdentity
    actor: RecipientKey | None
    data: Mapping[str, Any]
    """The trigger's data, the activity's."""
    closes_at: datetime
    """The end of the run's window: a batch it opens closes then; in a sliding window, the batch it joins
    closes then (within the cap)."""
    extension_limit_seconds: float | None = None
    """Set for a sliding window: how long after its opening a batch may stay open at most."""
    max_items: int | None = None
    flush_leading: bool = False


class JoinOutcome(StrEnum):
    WAIT = "wait"
    """The run carries the batch: it waits until `closes_at`, then flushes it (`flush_batches`)."""
    END = "end"
    """The run's activity is in the batch and the run ends; `run_id` carries the batch."""
    CONTINUE = "continue"
    """`flush_leading`: the run opened the batch for the runs after it and goes on at once, alone."""


@dataclass(slots=True)
class JoinResult:
    outcome: JoinOutcome
    batch_id: str
    opened: bool
    """The run opened the batch."""
    run_id: str | None
    """The run carrying the batch (this run for `WAIT`); None while a `flush_leading` batch has no second
    run."""
    closes_at: datetime
    """When the batch closes, as it stands after this run joined."""
    activity_count: int
    """Activities in the batch after this run joined."""
    closed_now: bool
    """The batch closed as this run joined (full, or a sliding cap passed): its carrier must be woken now."""


@dataclass(slots=True)
class _Batch:
    """A batch as a join sees it, changed in memory and written back once."""

    id: str
    state: BatchState
    opened_by: str
    run_id: str | None
    activity_count: int
    closes_at: datetime
    extension_ends_at: datetime | None
    changed: bool = False
    """Joined since it was read: written back at the end."""

    def takes_runs(self, now: datetime) -> bool:
        return self.state is BatchState.OPEN and self.closes_at > now

    def row(self, identity: tuple[str, ...], now: datetime) -> dict[str, Any]:
        return {
            **dict(zip(IDENTITY_COLUMNS, identity, strict=True)),
            "id": self.id,
            "state": self.state.value,
            "opened_by": self.opened_by,
            "run_id": self.run_id,
            "activity_count": self.activity_count,
            "closes_at": self.closes_at,
            "extension_ends_at": self.extension_ends_at,
            "updated_at": now,
        }


_STAMP = UTCDateTime()


def _stamp(moment: datetime | None, sa_dialect: sa.Dialect) -> str | None:
    return None if moment is None else _STAMP.bound_text(moment, sa_dialect)


_OPENING = ("id", "opened_by", "run_id", "closes_at", "extension_ends_at")
_RETURNED = (
    *IDENTITY_COLUMNS,
    "id",
    "state",
    "opened_by",
    "run_id",
    "activity_count",
    "closes_at",
    "extension_ends_at",
)


@functools.cache
def _take_open(dialect_name: str) -> tuple[DirectQuery, RowParameters]:
    """Each identity's open batch, locked, or a new one opened from its first entry's row. An open batch whose
    window is over is closed on the way (and returned so), which leaves the identity without an open batch.
    Built once per dialect: the rows are one bound parameter (`clarion.store.dialect.bound_rows`)."""
    rows, row_parameters = dialect.bound_rows([*IDENTITY_COLUMNS, *_OPENING], dialect_name)
    now = sa.bindparam("now", type_=UTCDateTime)
    source = (
        sa.select(
            *(rows.c[name] for name in (*IDENTITY_COLUMNS, "id")),
            sa.literal_column(f"'{BatchState.OPEN.value}'"),
            rows.c.opened_by,
            rows.c.run_id,
            sa.literal_column("0"),
            sa.cast(rows.c.closes_at, UTCDateTime),
            sa.cast(rows.c.extension_ends_at, UTCDateTime),
            now,
            now,
        )
        .where(sa.true())  # SQLite reads "FROM … ON CONFLICT" as a join without it
        .order_by(rows.c.bound_row)
    )
    insert = dialect.insert(batches, dialect_name).from_select(
        [
            *IDENTITY_COLUMNS,
            "id",
            "state",
            "opened_by",
            "run_id",
            "activity_count",
            "closes_at",
            "extension_ends_at",
            "inserted_at",
            "updated_at",
        ],
        source,
    )
    over = batches.c.closes_at <= insert.excluded.updated_at
    statement: sa.Insert = insert.on_conflict_do_update(
        index_elements=list(IDENTITY_COLUMNS),
        index_where=BATCHES_OPEN,
        set_={
            "state": sa.case(
                (over, sa.literal_column(f"'{BatchState.CLOSED.value}'")), else_=batches.c.state
            ),
            "updated_at": sa.case((over, insert.excluded.updated_at), else_=batches.c.updated_at),
        },
    ).returning(*(batches.c[name] for name in _RETURNED))
    return DirectQuery(statement), row_parameters


@functools.cache
def _write_back(dialect_name: str) -> tuple[sa.Update, RowParameters]:
    """What joining changed in batches already stored: state, carrier, count and close, per batch id."""
    rows, row_parameters = dialect.bound_rows(
        ["id", "state", "run_id", "activity_count", "closes_at"], dialect_name
    )
    statement = (
        batches.update()
        .where(batches.c.id == rows.c.id)
        .values(
            state=rows.c.state,
            run_id=rows.c.run_id,
            activity_count=sa.cast(rows.c.activity_count, sa.Integer),
            closes_at=sa.cast(rows.c.closes_at, UTCDateTime),
            updated_at=sa.bindparam("now", type_=UTCDateTime),
        )
    )
    return statement, row_parameters


_BATCH_INSERT = BulkInsert(batches, shared=["inserted_at"])
_ACTIVITY_INSERT = BulkInsert(batch_activities, shared=["inserted_at"])


def _extension_end(entry: BatchJoin, now: datetime) -> datetime | None:
    """A sliding window's cap for a batch `entry` opens at `now`."""
    if entry.extension_limit_seconds is None:
        return None
    return now + timedelta(seconds=entry.extension_limit_seconds)


class _Joining:
    """The entries of one `join_batches` call, played one after another against their batches."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.activities: list[dict[str, Any]] = []
        self.inserted: list[tuple[tuple[str, ...], _Batch]] = []

    def open(self, identity: tuple[str, ...], entry: BatchJoin) -> _Batch:
        """A new batch for `entry` to open, inserted at the end."""
        batch = _Batch(
            id=new_uuid(),
            state=BatchState.OPEN,
            opened_by=entry.run_id,
            run_id=None if entry.flush_leading else entry.run_id,
            activity_count=0,
            closes_at=entry.closes_at,
            extension_ends_at=_extension_end(entry, self.now),
        )
        self.inserted.append((identity, batch))
        return batch

    def opened(self, batch: _Batch, entry: BatchJoin) -> JoinResult:
        if entry.flush_leading:
            outcome = JoinOutcome.CONTINUE
        else:
            outcome = JoinOutcome.WAIT
            self.add(batch, entry)
        return JoinResult(outcome, batch.id, True, batch.run_id, batch.closes_at, batch.activity_count, False)

    def joined(self, batch: _Batch, entry: BatchJoin) -> JoinResult:
        self.add(batch, entry)
        outcome = JoinOutcome.END
        if batch.run_id is None:  # the second run of a `flush_leading` batch carries it
            batch.run_id = entry.run_id
            outcome = JoinOutcome.WAIT
        if entry.extension_limit_seconds is not None and batch.extension_ends_at is not None:
            batch.closes_at = min(entry.closes_at, batch.extension_ends_at)
        full = entry.max_items is not None and batch.activity_count >= entry.max_items
        closed_now = full or batch.closes_at <= self.now
        if closed_now:
            batch.state, batch.closes_at = BatchState.CLOSED, self.now
        return JoinResult(
            outcome, batch.id, False, batch.run_id, batch.closes_at, batch.activity_count, closed_now
        )

    def add(self, batch: _Batch, entry: BatchJoin) -> None:
        batch.activity_count += 1
        batch.changed = True
        actor = entry.actor
        self.activities.append(
            {
                "environment_id": entry.identity.environment_id,
                "batch_id": batch.id,
                "run_id": entry.run_id,
                "actor_collection": None if actor is None else actor.collection,
                "actor_id": None if actor is None else actor.id,
                "data": entry.data,
            }
        )

    async def write(self, connection: AsyncConnection, changed: Sequence[_Batch]) -> None:
        """Write what the entries did: the stored batches they changed, then the batches they opened after
        those closed (one identity has one open batch at any moment), then their activities."""
        sa_dialect = connection.dialect
        statement, row_parameters = _write_back(sa_dialect.name)
        for chunk in chunks(changed):
            rows = [
                [b.id, b.state.value, b.run_id, str(b.activity_count), _stamp(b.closes_at, sa_dialect)]
                for b in chunk
            ]
            await connection.execute(statement, {"now": self.now, **row_parameters(rows)})
        if self.inserted:
            opened = [batch.row(identity, self.now) for identity, batch in self.inserted]
            await _BATCH_INSERT.insert(connection, opened, inserted_at=self.now)
        if self.activities:
            await _ACTIVITY_INSERT.insert(connection, self.activities, inserted_at=self.now)


async def join_batches(
    connection: AsyncConnection, entries: Sequence[BatchJoin], now: datetime
) -> list[JoinResult]:
    """Put each entry's run into its batch, in the caller's transaction; a result per entry, in order."""
    positions: dict[tuple[str, ...], list[int]] = {}
    for position, entry in enumerate(entries):
        positions.setdefault(entry.identity.stored(), []).append(position)
    openers = {identity: entries[found[0]] for identity, found in positions.items()}
    taken = await _take_open_batches(connection, openers, now)
    joining = _Joining(now)
    results: dict[int, JoinResult] = {}
    for identity, found in sorted(positions.items()):
        batch = taken[identity]
        for index, position in enumerate(found):
            entry = entries[position]
            if index == 0 and batch.opened_by == entry.run_id:
                results[position] = joining.opened(batch, entry)
            elif batch.takes_runs(now):
                results[position] = joining.joined(batch, entry)
            else:
                batch = joining.open(identity, entry)
                results[position] = joining.opened(batch, entry)
    await joining.write(connection, [batch for batch in taken.values() if batch.changed])
    return [results[position] for position in range(len(entries))]


async def _take_open_batches(
    connection: AsyncConnection, openers: Mapping[tuple[str, ...], BatchJoin], now: datetime
) -> dict[tuple[str, ...], _Batch]:
    """Each identity's open batch, locked, or a new one its `openers` entry opened, in identity order (the
    lock order)."""
    sa_dialect = connection.dialect
    statement, row_parameters = _take_open(sa_dialect.name)
    taken: dict[tuple[str, ...], _Batch] = {}
    for chunk in chunks(sorted(openers)):
        rows = []
        for identity in chunk:
            opener = openers[identity]
            rows.append(
                [
                    *identity,
                    new_uuid(),
                    opener.run_id,
                    None if opener.flush_leading else opener.run_id,
                    _stamp(opener.closes_at, sa_dialect),
                    _stamp(_extension_end(opener, now), sa_dialect),
                ]
            )
        for row in await fetch_in(connection, statement, {"now": now, **row_parameters(rows)}):
            taken[tuple(row[name] for name in IDENTITY_COLUMNS)] = _Batch(
                id=row["id"],
                state=BatchState(row["state"]),
                opened_by=row["opened_by"],
                run_id=row["run_id"],
                activity_count=row["activity_count"],
                closes_at=row["closes_at"],
                extension_ends_at=row["extension_ends_at"],
            )
    return taken


def _identity_order(dialect_name: str) -> list[sa.ColumnElement[str]]:
    """The batches' lock order, the order `join_batches` locks them in (code-point order of the identity)."""
    return [dialect.code_point_order(batches.c[name], dialect_name) for name in IDENTITY_COLUMNS]


@dataclass(frozen=True, slots=True)
class BatchFlush:
    """The carrier of a batch, woken at its `closes_at`, flushing it."""

    batch_id: str
    run_id: str
    render_limit: int
    newest: bool
    """`batch_order: desc`: render the last activities rather than the first."""


class FlushOutcome(StrEnum):
    FLUSHED = "flushed"
    """The batch is closed for good; its contents go on with the run."""
    WAIT = "wait"
    """A sliding window moved the close later: wait again, until `closes_at`."""
    GONE = "gone"
    """Already flushed, or not this run's to flush: there is nothing to go on with."""


@dataclass(slots=True)
class FlushResult:
    outcome: FlushOutcome
    closes_at: datetime | None = None
    """`WAIT`: until when."""
    total_activities: int = 0
    contents: BatchContents = field(default_factory=BatchContents)
    """`FLUSHED`: the activities and actors to render, and how many distinct actors there are."""


async def flush_batches(
    connection: AsyncConnection, environment_id: str, requests: Sequence[BatchFlush], now: datetime
) -> list[FlushResult]:
    """Flush each batch whose window is over (closed, or open with `closes_at` reached) for the run that
    carries it, in the caller's transaction: a result per request, in order. A batch is flushed once."""
    c = batches.c
    found: dict[str, Any] = {}
    for chunk in chunks(sorted({request.batch_id for request in requests})):
        locked = (
            sa.select(c.id, c.state, c.run_id, c.closes_at, c.activity_count)
            .where(c.environment_id == environment_id, c.id.in_(list(chunk)))
            .order_by(*_identity_order(connection.dialect.name))
            .with_for_update()
        )
        for locked_row in await connection.execute(locked):
            found[locked_row.id] = locked_row
    results: list[FlushResult] = []
    flushed: dict[str, BatchFlush] = {}
    for request in requests:
        batch = found.get(request.batch_id)
        if batch is None or batch.run_id != request.run_id or batch.state == BatchState.FLUSHED:
            results.append(FlushResult(FlushOutcome.GONE))
        elif batch.state == BatchState.OPEN and batch.closes_at > now:
            results.append(FlushResult(FlushOutcome.WAIT, closes_at=batch.closes_at))
        else:
            flushed[request.batch_id] = request
            results.append(FlushResult(FlushOutcome.FLUSHED, total_activities=batch.activity_count))
    if not flushed:
        return results
    for chunk in chunks(sorted(flushed)):
        await connection.execute(
            batches.update()
            .where(c.environment_id == environment_id, c.id.in_(list(chunk)))
            .values(state=BatchState.FLUSHED.value, updated_at=now)
        )
    contents = await batch_contents(
        connection,
        environment_id,
        [
            RenderRequest(request.batch_id, request.render_limit, request.newest)
            for request in flushed.values()
        ],
    )
    for request, result in zip(requests, results, strict=True):
        if result.outcome is FlushOutcome.FLUSHED:
            result.contents = contents[request.batch_id]
    return results


@dataclass(frozen=True, slots=True)
class RemovedActivity:
    run_id: str
    batch_id: str
    carrier: bool
    """The run carries the batch: it keeps waiting to flush it (without its own activity), as Knock keeps
    a batch open when the run that opened it is cancelled."""


@functools.cache
def _uncounted(dialect_name: str) -> tuple[sa.Update, RowParameters]:
    rows, row_parameters = dialect.bound_rows(["id", "removed"], dialect_name)
    statement = (
        batches.update()
        .where(batches.c.id == rows.c.id)
        .values(
            activity_count=batches.c.activity_count - sa.cast(rows.c.removed, sa.Integer),
            updated_at=sa.bindparam("now", type_=UTCDateTime),
        )
    )
    return statement, row_parameters


async def remove_activities(
    connection: AsyncConnection, environment_id: str, run_ids: Sequence[str], now: datetime
) -> list[RemovedActivity]:
    """Take the activities of cancelled runs out of the batches still open, in the caller's transaction.
    Batches whose window is over keep theirs, as in Knock, where only the carrier can be cancelled then."""
    c, a = batches.c, batch_activities.c
    removed: list[RemovedActivity] = []
    for chunk in chunks(sorted(set(run_ids))):
        holding = sa.select(a.batch_id).where(a.environment_id == environment_id, a.run_id.in_(list(chunk)))
        locked = (
            sa.select(c.id, c.run_id)
            .where(
                c.environment_id == environment_id,
                c.state == BatchState.OPEN.value,
                c.closes_at > now,
                c.id.in_(holding),
            )
            .order_by(*_identity_order(connection.dialect.name))
            .with_for_update()
        )
        carriers = {row.id: row.run_id for row in await connection.execute(locked)}
        if not carriers:
            continue
        deleted = await connection.execute(
            batch_activities.delete()
            .where(
                a.environment_id == environment_id,
                a.run_id.in_(list(chunk)),
                a.batch_id.in_(sorted(carriers)),
            )
            .returning(a.run_id, a.batch_id)
        )
        taken = [
            RemovedActivity(row.run_id, row.batch_id, carriers[row.batch_id] == row.run_id) for row in deleted
        ]
        removed.extend(taken)
        counts = Counter(activity.batch_id for activity in taken)
        statement, row_parameters = _uncounted(connection.dialect.name)
        await connection.execute(
            statement,
            {"now": now, **row_parameters([[batch_id, str(n)] for batch_id, n in sorted(counts.items())])},
        )
    return removed

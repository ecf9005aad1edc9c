"""The queue engine: the `QueueEngine` protocol every store implements, and `SQLQueueEngine`, the SQLAlchemy
Core implementation both engines share.

Guarantees: a job is claimed by one worker at a time (`claim` hands each available job to exactly one caller);
a claim carries a lease (`lease_expires_at`) that the worker extends while the job runs, and a job whose lease
expires, or whose worker is dead (its heartbeat, `beat`, silent too long, or named dead by the caller), is
rescued by `rescue` (at-least-once: a worker that stalls past its lease or its heartbeats may see its job run
twice). Lease extensions and acknowledgements (`complete`, `retry`, `snooze`, `cancel`) name the attempt they
are for and change a job only while it still executes that attempt for that worker, so a late acknowledgement
of a rescued job changes nothing, even when the same worker has claimed the job again. A job is discarded in
one transaction with its kind's `DiscardHook`, whether its last attempt failed (`retry`) or it was rescued on
its last attempt (`rescue`). `insert` runs in the caller's transaction: the job exists, and wakes a worker,
only if that transaction commits.

Time is the database's: every instant the queue stores or compares (due times, leases, heartbeats, rescues,
prune cutoffs) comes from the store's own clock, so workers on hosts whose clocks disagree still agree on
whose lease has run out and whose heartbeat is silent. Only instants a caller passes in (`Job.scheduled_at`,
`stage(until=…)`) are the caller's host time. Tests may hand the engine a clock to move time themselves.

What differs per store (the locking update, wake-ups, the clock and JSON expressions) lives in
`engines/postgres.py` and `engines/sqlite.py`; the loops that call the engine live in `clarion.jobs.producer`,
`heartbeat`, `lifeline` and `pruner`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import ConflictError
from clarion.jobs.backoff import backoff_seconds
from clarion.jobs.job import (
    DiscardHook,
    Job,
    JobRecord,
    JobState,
)
from clarion.store import dialect
from clarion.store.db import Database
from clarion.store.direct import DirectQuery, fetch_in
from clarion.store.recipients import RowParameters
from clarion.store.tables import JOBS_UNIQUE_KEY_HELD, JOBS_WAITING, UTCDateTime, jobs, workers

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

WakeUp = Callable[[str], None]
"""Called with a queue's name when jobs may have become available in it."""

INSERT_CHUNK = 500
"""Rows per INSERT statement, well under SQLite's limit of bound parameters per statement."""

STAGE_LIMIT = 1_000
"""Due jobs made available per claim; the rest follow on the next claims."""

UNIQUE_INSERT_TRIES = 5
"""How often `insert` tries again when the job holding a unique key lets go of it mid-insert."""


class UniqueKeyContendedError(ConflictError):
    """A job could not be inserted because the jobs holding its unique key kept letting go of it while the
    insert looked for them: another insert with that key will succeed; try again."""


class Listener(Protocol):
    async def close(self) -> None: ...


class QueueEngine(Protocol):
    """The durable job queue. `insert` and `insert_all` run in the caller's transaction, every other
    method in a transaction of its own."""

    database: Database

    async def insert(self, connection: AsyncConnection, job: Job) -> JobRecord: ...
    async def insert_all(self, connection: AsyncConnection, new_jobs: Sequence[Job]) -> int: ...
    async def enqueue(self, job: Job) -> JobRecord: ...

    async def enqueue_all(self, new_jobs: Sequence[Job]) -> None: ...
    async def get(self, job_id: int) -> JobRecord | None: ...
    async def stage(self, queue: str, *, until: datetime | None = None) -> int: ...
    async def claim(
        self, queue: str, demand: int, worker_id: str, lease_seconds: float
    ) -> list[JobRecord]: ...
    async def extend_leases(
        self, worker_id: str, claimed: Sequence[JobRecord], lease_seconds: float
    ) -> int: ...
    async def complete(self, job: JobRecord) -> bool: ...
    async def complete_in(self, connection: AsyncConnection, job: JobRecord) -> bool: ...
    async def hold_in(self, connection: AsyncConnection, job: JobRecord) -> bool: ...
    async def retry(
        self, job: JobRecord, error: str, on_discarded: DiscardHook | None = None
    ) -> JobState | None: ...
    async def snooze(self, job: JobRecord, seconds: float) -> bool: ...
    async def cancel(self, job: JobRecord, reason: str) -> bool: ...
    async def beat(self, worker_id: str, queues: Sequence[str]) -> None: ...
    async def retire(self, worker_id: str) -> None: ...
    async def rescue(
        self,
        limit: int = ...,
        on_discarded: Mapping[str, DiscardHook] | None = None,
        *,
        dead_after: float | None = None,
        dead_workers: Collection[str] = (),
        rescuer: str | None = None,
    ) -> tuple[int, int]: ...
    async def prune(self, older_than: timedelta, limit: int = ...) -> int: ...
    async def listen(self, wake_up: WakeUp) -> Listener: ...


def job_record(row: sa.Row[Any], *, conflict: bool = False) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=m["id"],
        kind=m["kind"],
        args=m["args"],
        queue=m["queue"],
        state=JobState(m["state"]),
        priority=m["priority"],
        attempt=m["attempt"],
        max_attempts=m["max_attempts"],
        unique_key=m["unique_key"],
        errors=list(m["errors"]),
        scheduled_at=m["scheduled_at"],
        attempted_at=m["attempted_at"],
        attempted_by=m["attempted_by"],
        lease_expires_at=m["lease_expires_at"],
        completed_at=m["completed_at"],
        cancelled_at=m["cancelled_at"],
        discarded_at=m["discarded_at"],
        inserted_at=m["inserted_at"],
        conflict=conflict,
    )


def _owned(job: JobRecord) -> sa.ColumnElement[bool]:
    """The job is still executing the attempt `job` describes, for the worker that claimed it."""
    return sa.and_(
        jobs.c.id == job.id,
        jobs.c.state == JobState.EXECUTING.value,
        jobs.c.attempt == job.attempt,
        jobs.c.attempted_by == job.attempted_by,
    )


async def _run_discard_hook(connection: AsyncConnection, hook: DiscardHook, job: JobRecord) -> None:
    # A savepoint, so that a failing hook undoes only its own writes: the queue never stops discarding
    # (and the lifeline never stops rescuing) because of one kind's hook.
    try:
        async with connection.begin_nested():
            await hook(connection, job)
    except Exception:
        logger.exception(
            "job %d (%s): its discard hook failed; the job is discarded anyway", job.id, job.kind
        )


class SQLQueueEngine(ABC):
    """Everything the stores share. A subclass supplies the locking update, the wake-ups and the SQL for
    the store's clock and for appending to the errors array."""

    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        self.database = database
        self._insert_all_queries: dict[str, tuple[DirectQuery, RowParameters]] = {}
        self.clock = clock
        """None: the database's clock (production); a function: the time tests set."""

    # -- what differs per store ---------------------------------------------------------------------

    @abstractmethod
    def _update_locked(self, selected: sa.Select[Any], values: dict[str, Any]) -> sa.Update:
        """An UPDATE setting `values` on the rows whose ids `selected` picks (in its order, up to its
        limit), skipping rows that a concurrent claim or rescue holds, returning every column."""

    @abstractmethod
    def _database_now(self, seconds: float) -> sa.ColumnElement[datetime]:
        """The database's current time plus `seconds`, in the layout `UTCDateTime` stores."""

    @abstractmethod
    def _database_now_text(self) -> sa.ColumnElement[str]:
        """The database's current time as ISO 8601 text, for error entries."""

    @abstractmethod
    def _append_error(self, at: sa.ColumnElement[str], error: sa.ColumnElement[str]) -> sa.ColumnElement[Any]:
        """`jobs.errors` with one more entry, `{"attempt": jobs.attempt, "at": at, "error": error}`."""

    @abstractmethod
    async def _notify(self, connection: AsyncConnection, queues: Iterable[str]) -> None:
        """Wake the workers of `queues` once `connection`'s transaction commits."""

    @abstractmethod
    async def listen(self, wake_up: WakeUp) -> Listener:
        """Call `wake_up(queue)` whenever jobs are inserted or made available in a queue."""

    # -- time ---------------------------------------------------------------------------------------

    def _now(self, seconds: float = 0.0) -> sa.ColumnElement[datetime]:
        """Now plus `seconds`, as SQL: the database's clock, or the test's."""
        if self.clock is None:
            return self._database_now(seconds)
        return sa.literal(self.clock() + timedelta(seconds=seconds), UTCDateTime)

    def _with_error(self, error: sa.ColumnElement[str] | str) -> sa.ColumnElement[Any]:
        """`jobs.errors` with an entry for the current attempt, stamped now."""
        at = self._database_now_text() if self.clock is None else sa.literal(self.clock().isoformat())
        text = error if isinstance(error, sa.ColumnElement) else sa.literal(error, sa.String)
        return self._append_error(at, text)

    # -- inserting ----------------------------------------------------------------------------------

    def _row(self, job: Job) -> dict[str, Any]:
        now = self._now()
        if job.scheduled_at is None:
            scheduled_at: sa.ColumnElement[datetime] = now
            state: Any = JobState.AVAILABLE.value
        else:
            scheduled_at = sa.literal(job.scheduled_at, UTCDateTime)
            state = sa.case((scheduled_at > now, JobState.SCHEDULED.value), else_=JobState.AVAILABLE.value)
        return {
            "queue": job.queue,
            "kind": job.kind,
            "args": job.args,
            "state": state,
            "priority": job.priority,
            "attempt": 0,
            "max_attempts": job.max_attempts,
            "unique_key": job.unique_key,
            "errors": [],
            "scheduled_at": scheduled_at,
            "inserted_at": now,
        }

    def _insert_statement(self, connection: AsyncConnection, rows: list[dict[str, Any]]) -> Any:
        # The conflict target names the partial index's predicate as literal SQL: PostgreSQL infers the
        # index from it, and a predicate with bound parameters would not match.
        return (
            dialect.insert(jobs, connection.dialect.name)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[jobs.c.unique_key], index_where=JOBS_UNIQUE_KEY_HELD)
        )

    async def insert(self, connection: AsyncConnection, job: Job) -> JobRecord:
        """Insert `job` in the caller's transaction. With a unique key already held, nothing is inserted
        and the holding job is returned with `conflict=True`. Raises `UniqueKeyContendedError` in the
        unlikely case that the key's holders keep releasing it between the insert and the lookup."""
        row = self._row(job)
        for _ in range(UNIQUE_INSERT_TRIES):
            inserted = (
                await connection.execute(self._insert_statement(connection, [row]).returning(*jobs.c))
            ).first()
            if inserted is not None:
                if inserted.state == JobState.AVAILABLE.value:
                    await self._notify(connection, [job.queue])
                return job_record(inserted)
            holder = await self._unique_key_holder(connection, job.unique_key)
            if holder is not None:
                return holder
            # The holder was cancelled, discarded or pruned between the two statements: the key is free.
        raise UniqueKeyContendedError(
            f"The job with unique key {job.unique_key!r} could not be inserted: its key kept changing "
            "hands. Try again."
        )

    async def _unique_key_holder(
        self, connection: AsyncConnection, unique_key: str | None
    ) -> JobRecord | None:
        holder = (
            await connection.execute(
                sa.select(jobs).where(jobs.c.unique_key == unique_key, JOBS_UNIQUE_KEY_HELD)
            )
        ).first()
        return None if holder is None else job_record(holder, conflict=True)

    def _insert_all_query(self, dialect_name: str) -> tuple[DirectQuery, RowParameters]:
        """`_insert_all_statement`, compiled once."""
        cached = self._insert_all_queries.get(dialect_name)
        if cached is None:
            statement, row_parameters = self._insert_all_statement(dialect_name)
            cached = self._insert_all_queries[dialect_name] = (DirectQuery(statement), row_parameters)
        return cached

    def _insert_all_statement(self, dialect_name: str) -> tuple[sa.Insert, RowParameters]:
        """INSERT … SELECT from the jobs bound as a fixed set of parameters (`dialect.bound_rows`) … ON
        CONFLICT DO NOTHING RETURNING queue, state: one statement whatever the number of jobs. Compiling a
        multi-row VALUES insert per batch cost more than writing the batch."""
        names = ["queue", "kind", "args", "priority", "max_attempts", "unique_key", "scheduled_at"]
        rows, row_parameters = dialect.bound_rows(names, dialect_name, json_names={"args"})
        now = self._now() if self.clock is None else sa.bindparam("now", type_=UTCDateTime)
        scheduled_at = sa.func.coalesce(sa.cast(rows.c.scheduled_at, UTCDateTime), now)
        state = sa.case((scheduled_at > now, JobState.SCHEDULED.value), else_=JobState.AVAILABLE.value)
        source = (
            sa.select(
                rows.c.queue,
                rows.c.kind,
                rows.c.args,
                state,
                sa.cast(rows.c.priority, sa.SmallInteger),
                sa.literal_column("0"),
                sa.cast(rows.c.max_attempts, sa.Integer),
                rows.c.unique_key,
                # Literal SQL: a bound "[]" would be encoded once more as JSON on its way in.
                dialect.json_from_text(sa.literal_column("'[]'"), dialect_name),
                scheduled_at,
                now,
            )
            .where(sa.true())  # SQLite reads "FROM … ON CONFLICT" as a join without it
            .order_by(rows.c.bound_row)
        )
        columns = ["queue", "kind", "args", "state", "priority", "attempt", "max_attempts", "unique_key"]
        statement = (
            dialect.insert(jobs, dialect_name)
            .from_select([*columns, "errors", "scheduled_at", "inserted_at"], source)
            .on_conflict_do_nothing(index_elements=[jobs.c.unique_key], index_where=JOBS_UNIQUE_KEY_HELD)
            .returning(jobs.c.queue, jobs.c.state)
        )
        return statement, row_parameters

    def _insert_all_batches(
        self, new_jobs: Sequence[Job], row_parameters: RowParameters, sa_dialect: sa.Dialect
    ) -> Iterator[dict[str, Any]]:
        """The parameters of `_insert_all_query` for each chunk of `new_jobs`."""
        stamp = UTCDateTime().process_bind_param
        for start in range(0, len(new_jobs), INSERT_CHUNK):
            rows = [
                (
                    job.queue,
                    job.kind,
                    job.args,
                    str(job.priority),
                    str(job.max_attempts),
                    job.unique_key,
                    None if job.scheduled_at is None else str(stamp(job.scheduled_at, sa_dialect)),
                )
                for job in new_jobs[start : start + INSERT_CHUNK]
            ]
            parameters = row_parameters(rows)
            if self.clock is not None:
                parameters["now"] = self.clock()
            yield parameters

    async def insert_all(self, connection: AsyncConnection, new_jobs: Sequence[Job]) -> int:
        """Insert many jobs in the caller's transaction (a trigger's fan-out, a group commit of triggers);
        jobs whose unique key is held are skipped. Returns how many were inserted."""
        if not new_jobs:
            return 0
        query, row_parameters = self._insert_all_query(connection.dialect.name)
        inserted = 0
        due: set[str] = set()
        for parameters in self._insert_all_batches(new_jobs, row_parameters, connection.dialect):
            for row in await fetch_in(connection, query, parameters):
                inserted += 1
                if row["state"] == JobState.AVAILABLE.value:
                    due.add(row["queue"])
        if due:
            await self._notify(connection, sorted(due))
        return inserted

    async def enqueue_all(self, new_jobs: Sequence[Job]) -> None:
        """`insert_all` in a transaction of its own (a group commit of triggers)."""
        async with self.database.writer.begin() as connection:
            await self.insert_all(connection, new_jobs)

    async def enqueue(self, job: Job) -> JobRecord:
        """Insert `job` in a transaction of its own."""
        async with self.database.writer.begin() as connection:
            return await self.insert(connection, job)

    async def get(self, job_id: int) -> JobRecord | None:
        async with self.database.reader.connect() as connection:
            row = (await connection.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
        return None if row is None else job_record(row)

    # -- claiming -----------------------------------------------------------------------------------

    def _due(self, queue: str, until: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
        return sa.and_(JOBS_WAITING, jobs.c.queue == queue, jobs.c.scheduled_at <= until)

    def _stage_statement(self, queue: str, until: sa.ColumnElement[datetime]) -> sa.Update:
        due = (
            sa.select(jobs.c.id)
            .where(self._due(queue, until))
            .limit(STAGE_LIMIT)
            .with_for_update(skip_locked=True)
        )
        return jobs.update().where(jobs.c.id.in_(due)).values(state=JobState.AVAILABLE.value)

    async def stage(self, queue: str, *, until: datetime | None = None) -> int:
        """Make the scheduled and retryable jobs of `queue` due by `until` (default: now) available."""
        moment = self._now() if until is None else sa.literal(until, UTCDateTime)
        async with self.database.writer.begin() as connection:
            result = await connection.execute(self._stage_statement(queue, moment))
        return int(result.rowcount)

    async def _probe(self, queue: str) -> tuple[bool, bool]:
        """Whether `queue` has available jobs, and jobs due for staging: a read, so that an idle poll
        opens no write transaction. A job inserted after the read wakes the producer (`_notify` fires
        on commit), whose next claim sees it."""
        available = sa.exists().where(jobs.c.state == JobState.AVAILABLE.value, jobs.c.queue == queue)
        due = sa.exists().where(self._due(queue, self._now()))
        async with self.database.reader.connect() as connection:
            row = (await connection.execute(sa.select(available, due))).one()
        return bool(row[0]), bool(row[1])

    async def claim(self, queue: str, demand: int, worker_id: str, lease_seconds: float) -> list[JobRecord]:
        """Take up to `demand` due jobs of `queue` for `worker_id`, in (priority, scheduled_at, id) order,
        each leased for `lease_seconds`."""
        if demand <= 0:
            return []
        available, due = await self._probe(queue)
        if not (available or due):
            return []
        selected = (
            sa.select(jobs.c.id)
            .where(jobs.c.state == JobState.AVAILABLE.value, jobs.c.queue == queue)
            .order_by(jobs.c.priority, jobs.c.scheduled_at, jobs.c.id)
            .limit(demand)
        )
        values = {
            "state": JobState.EXECUTING.value,
            "attempt": jobs.c.attempt + 1,
            "attempted_at": self._now(),
            "attempted_by": worker_id,
            "lease_expires_at": self._now(lease_seconds),
        }
        async with self.database.writer.begin() as connection:
            if due:
                await connection.execute(self._stage_statement(queue, self._now()))
            rows = (await connection.execute(self._update_locked(selected, values))).all()
        claimed = [job_record(row) for row in rows]
        return sorted(claimed, key=lambda job: (job.priority, job.scheduled_at, job.id))

    async def extend_leases(self, worker_id: str, claimed: Sequence[JobRecord], lease_seconds: float) -> int:
        """Push the leases of `worker_id`'s executing attempts `claimed` `lease_seconds` past now (the
        heartbeat). An attempt that was rescued meanwhile is left alone, even when this worker has claimed
        the job again: that newer attempt has a lease of its own."""
        if not claimed:
            return 0
        attempts = sa.tuple_(jobs.c.id, jobs.c.attempt).in_([(job.id, job.attempt) for job in claimed])
        async with self.database.writer.begin() as connection:
            result = await connection.execute(
                jobs.update()
                .where(attempts, jobs.c.state == JobState.EXECUTING.value, jobs.c.attempted_by == worker_id)
                .values(lease_expires_at=self._now(lease_seconds))
            )
        return int(result.rowcount)

    # -- acknowledging ------------------------------------------------------------------------------

    async def _acknowledge(
        self,
        job: JobRecord,
        values: dict[str, Any],
        *,
        wake: bool = False,
        on_discarded: DiscardHook | None = None,
    ) -> bool:
        statement = jobs.update().where(_owned(job)).values(lease_expires_at=None, **values)
        async with self.database.writer.begin() as connection:
            if on_discarded is None:
                changed = bool((await connection.execute(statement)).rowcount)
            else:
                row = (await connection.execute(statement.returning(*jobs.c))).first()
                changed = row is not None
                if row is not None:
                    await _run_discard_hook(connection, on_discarded, job_record(row))
            if wake and changed:
                await self._notify(connection, [job.queue])
        return changed

    def _completed(self) -> dict[str, Any]:
        return {"state": JobState.COMPLETED.value, "completed_at": self._now()}

    async def complete(self, job: JobRecord) -> bool:
        return await self._acknowledge(job, self._completed())

    async def complete_in(self, connection: AsyncConnection, job: JobRecord) -> bool:
        """Complete `job` in the caller's transaction, so that it completes only if the work recorded in
        that transaction commits. False when the job is no longer this attempt's: the caller must then
        roll its transaction back (raise `Superseded`), or the work would be recorded twice."""
        statement = jobs.update().where(_owned(job)).values(lease_expires_at=None, **self._completed())
        return bool((await connection.execute(statement)).rowcount)

    async def hold_in(self, connection: AsyncConnection, job: JobRecord) -> bool:
        """Hold `job` for the caller's transaction without completing it: a job that commits its work in
        several transactions (a large fan-out) checks in each that its attempt is still the executing one,
        and keeps a rescue from taking the job until that transaction ends (rescues skip locked jobs).
        False when the job is no longer this attempt's: the caller must then roll back (`Superseded`)."""
        statement = jobs.update().where(_owned(job)).values(attempted_by=jobs.c.attempted_by)
        return bool((await connection.execute(statement)).rowcount)

    async def retry(
        self, job: JobRecord, error: str, on_discarded: DiscardHook | None = None
    ) -> JobState | None:
        """Record a failed attempt: retryable after a backoff while attempts remain, discarded after the
        last, with `on_discarded` run in the same transaction. Returns the new state, or None when the job
        was no longer this attempt's to change."""
        if job.attempt >= job.max_attempts:
            discarded = {
                "state": JobState.DISCARDED.value,
                "discarded_at": self._now(),
                "errors": self._with_error(error),
            }
            changed = await self._acknowledge(job, discarded, on_discarded=on_discarded)
            return JobState.DISCARDED if changed else None
        retryable = {
            "state": JobState.RETRYABLE.value,
            "scheduled_at": self._now(backoff_seconds(job.attempt)),
            "errors": self._with_error(error),
        }
        return JobState.RETRYABLE if await self._acknowledge(job, retryable) else None

    async def snooze(self, job: JobRecord, seconds: float) -> bool:
        """Put the job back for `seconds`; the attempt is given back by raising `max_attempts`."""
        state = JobState.SCHEDULED if seconds > 0 else JobState.AVAILABLE
        values = {
            "state": state.value,
            "scheduled_at": self._now(seconds),
            "max_attempts": jobs.c.max_attempts + 1,
        }
        return await self._acknowledge(job, values, wake=state is JobState.AVAILABLE)

    async def cancel(self, job: JobRecord, reason: str) -> bool:
        values = {
            "state": JobState.CANCELLED.value,
            "cancelled_at": self._now(),
            "errors": self._with_error(f"cancelled: {reason}"),
        }
        return await self._acknowledge(job, values)

    # -- housekeeping -------------------------------------------------------------------------------

    async def beat(self, worker_id: str, queues: Sequence[str]) -> None:
        """Record that `worker_id`, running `queues`, is alive now; its first beat registers it. A worker
        taken for dead while it was only silent registers again with its next beat."""
        now = self._now()
        async with self.database.writer.begin() as connection:
            await connection.execute(
                dialect.insert(workers, connection.dialect.name)
                .values(id=worker_id, queues=list(queues), started_at=now, beat_at=now)
                .on_conflict_do_update(index_elements=[workers.c.id], set_={"beat_at": now})
            )

    async def retire(self, worker_id: str) -> None:
        """Forget `worker_id`, which has stopped cleanly and handed its jobs back."""
        async with self.database.writer.begin() as connection:
            await connection.execute(workers.delete().where(workers.c.id == worker_id))

    def _dead(
        self, dead_after: float | None, dead_workers: Collection[str], rescuer: str | None
    ) -> sa.ColumnElement[bool] | None:
        """Which `workers` rows are dead: those named in `dead_workers`, and those whose last beat is
        more than `dead_after` seconds old; never the `rescuer`'s own. None when no rule applies."""
        conditions: list[sa.ColumnElement[bool]] = []
        if dead_workers:
            conditions.append(workers.c.id.in_(sorted(dead_workers)))
        if dead_after is not None:
            conditions.append(workers.c.beat_at < self._now(-dead_after))
        if not conditions:
            return None
        dead = sa.or_(*conditions)
        return dead if rescuer is None else sa.and_(dead, workers.c.id != rescuer)

    async def rescue(
        self,
        limit: int = 1_000,
        on_discarded: Mapping[str, DiscardHook] | None = None,
        *,
        dead_after: float | None = None,
        dead_workers: Collection[str] = (),
        rescuer: str | None = None,
    ) -> tuple[int, int]:
        """Return up to `limit` executing jobs whose lease has expired, or whose worker is dead, to
        `available`, or discard those that have used all their attempts, in one statement; each discarded
        job's kind's hook in `on_discarded` runs in the same transaction. A worker is dead when it is named
        in `dead_workers` or, with `dead_after`, when its last heartbeat is more than `dead_after` seconds
        old; the `rescuer` is alive, whatever its heartbeat says. The rows of dead workers none of whose
        jobs still execute are deleted in the same transaction. An idle rescue only reads. Returns
        (rescued, discarded)."""
        now = self._now()
        lease_expired = jobs.c.lease_expires_at < now
        dead = self._dead(dead_after, dead_workers, rescuer)
        stalled_condition: sa.ColumnElement[bool] = lease_expired
        if dead is not None:
            orphaned: sa.ColumnElement[bool] = jobs.c.attempted_by.in_(sa.select(workers.c.id).where(dead))
            if dead_workers:
                # Also when the dead worker has no row: it died before its first heartbeat was written.
                orphaned = sa.or_(orphaned, jobs.c.attempted_by.in_(sorted(dead_workers)))
            stalled_condition = sa.or_(lease_expired, orphaned)
        stalled_condition = sa.and_(jobs.c.state == JobState.EXECUTING.value, stalled_condition)
        probe = sa.select(
            sa.exists().where(stalled_condition),
            sa.false() if dead is None else sa.exists().where(dead),
        )
        async with self.database.reader.connect() as connection:
            any_stalled, any_dead = (await connection.execute(probe)).one()
        if not (any_stalled or any_dead):
            return 0, 0
        stalled = sa.select(jobs.c.id).where(stalled_condition).order_by(jobs.c.id).limit(limit)
        exhausted = jobs.c.attempt >= jobs.c.max_attempts
        worker = sa.func.coalesce(jobs.c.attempted_by, sa.literal("?", sa.String))
        error = sa.case(
            (
                lease_expired,
                sa.literal("rescued: the lease of worker ", sa.String)
                + worker
                + sa.literal(" expired", sa.String),
            ),
            else_=sa.literal("rescued: worker ", sa.String) + worker + sa.literal(" died", sa.String),
        )
        values = {
            "state": sa.case((exhausted, JobState.DISCARDED.value), else_=JobState.AVAILABLE.value),
            "scheduled_at": sa.case((exhausted, jobs.c.scheduled_at), else_=now),
            "discarded_at": sa.case((exhausted, now), else_=sa.null()),
            "lease_expires_at": None,
            "errors": self._with_error(error),
        }
        hooks = on_discarded or {}
        changed: list[JobRecord] = []
        async with self.database.writer.begin() as connection:
            if any_stalled:
                rows = (await connection.execute(self._update_locked(stalled, values))).all()
                changed = sorted((job_record(row) for row in rows), key=lambda job: job.id)
            discarded = [job for job in changed if job.state is JobState.DISCARDED]
            for job in discarded:
                hook = hooks.get(job.kind)
                if hook is not None:
                    await _run_discard_hook(connection, hook, job)
            queues = {job.queue for job in changed if job.state is JobState.AVAILABLE}
            if queues:
                await self._notify(connection, sorted(queues))
            if dead is not None and any_dead:
                # A dead worker's job that a concurrent rescue holds still executes here: the worker's
                # row stays until a later pass finds none.
                executing = sa.exists().where(
                    jobs.c.state == JobState.EXECUTING.value, jobs.c.attempted_by == workers.c.id
                )
                await connection.execute(workers.delete().where(dead, ~executing))
        return len(changed) - len(discarded), len(discarded)

    async def prune(self, older_than: timedelta, limit: int = 10_000) -> int:
        """Delete up to `limit` completed, cancelled and discarded jobs that finished before
        `older_than` ago. Returns how many were deleted."""
        cutoff = self._now(-older_than.total_seconds())
        finished = sa.or_(
            sa.and_(jobs.c.state == JobState.COMPLETED.value, jobs.c.completed_at < cutoff),
            sa.and_(jobs.c.state == JobState.CANCELLED.value, jobs.c.cancelled_at < cutoff),
            sa.and_(jobs.c.state == JobState.DISCARDED.value, jobs.c.discarded_at < cutoff),
        )
        old = sa.select(jobs.c.id).where(finished).limit(limit).with_for_update(skip_locked=True)
        async with self.database.writer.begin() as connection:
            result = await connection.execute(jobs.delete().where(jobs.c.id.in_(old)))
        return int(result.rowcount)

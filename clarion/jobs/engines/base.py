"""The queue engine: the `QueueEngine` protocol every store implements, and `SQLQueueEngine`, the SQLAlchemy
Core implementation both engines share.

Guarantees: a job is claimed by one worker at a time (`claim` hands each available job to exactly one
caller); a claim carries a lease (`lease_expires_at`) that the worker extends while the job runs, and a job
whose lease expires is rescued by `rescue` (at-least-once: a worker that stalls past its lease may see its
job run twice). Acknowledgements (`complete`, `retry`, `snooze`, `cancel`) change a job only while it is
still executing the attempt the caller claimed, so a late acknowledgement of a rescued job changes nothing.
`insert` runs in the caller's transaction: the job exists, and wakes a worker, only if that transaction
commits.

Time comes from the engine's clock (the app's clock, not the database's), so all workers should keep their
clocks in sync. What differs per store (the claim statement, wake-ups) lives in `engines/postgres.py` and
`engines/sqlite.py`; the loops that call the engine live in `clarion.jobs.producer`, `lifeline` and `pruner`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.jobs.backoff import backoff_seconds
from clarion.jobs.job import (
    UNIQUE_RELEASING_STATES,
    Job,
    JobRecord,
    JobState,
)
from clarion.store import dialect
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.tables import JOBS_UNIQUE_KEY_HELD, jobs

Clock = Callable[[], datetime]

WakeUp = Callable[[str], None]
"""Called with a queue's name when jobs may have become available in it."""

INSERT_CHUNK = 500
"""Rows per INSERT statement, well under SQLite's limit of bound parameters per statement."""

STAGE_LIMIT = 1_000
"""Due jobs made available per claim; the rest follow on the next claims."""

_HOLDS_UNIQUE_KEY = jobs.c.state.not_in([state.value for state in UNIQUE_RELEASING_STATES])


class Listener(Protocol):
    async def close(self) -> None: ...


class QueueEngine(Protocol):
    """The durable job queue. Every method but `insert`/`insert_all`/`cancel_jobs` runs its own
    transaction."""

    database: Database
    clock: Clock

    async def insert(self, connection: AsyncConnection, job: Job) -> JobRecord: ...
    async def insert_all(self, connection: AsyncConnection, new_jobs: Sequence[Job]) -> int: ...
    async def enqueue(self, job: Job) -> JobRecord: ...
    async def get(self, job_id: int) -> JobRecord | None: ...
    async def stage(self, queue: str, *, until: datetime | None = None) -> int: ...
    async def claim(
        self, queue: str, demand: int, worker_id: str, lease_seconds: float
    ) -> list[JobRecord]: ...
    async def extend_leases(self, worker_id: str, job_ids: Sequence[int], lease_seconds: float) -> int: ...
    async def complete(self, job: JobRecord) -> bool: ...
    async def retry(self, job: JobRecord, error: str) -> JobState | None: ...
    async def snooze(self, job: JobRecord, seconds: float) -> bool: ...
    async def cancel(self, job: JobRecord, reason: str) -> bool: ...
    async def cancel_jobs(self, connection: AsyncConnection, job_ids: Sequence[int]) -> int: ...
    async def rescue(self, limit: int = ...) -> tuple[int, int]: ...
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


def _error_entry(attempt: int, at: datetime, error: str) -> dict[str, Any]:
    return {"attempt": attempt, "at": at.isoformat(), "error": error}


def _owned(job: JobRecord) -> sa.ColumnElement[bool]:
    """The job is still executing the attempt `job` describes, for the worker that claimed it."""
    return sa.and_(
        jobs.c.id == job.id,
        jobs.c.state == JobState.EXECUTING.value,
        jobs.c.attempt == job.attempt,
        jobs.c.attempted_by == job.attempted_by,
    )


class SQLQueueEngine(ABC):
    """Everything the stores share. A subclass supplies the claim statement and the wake-ups."""

    def __init__(self, database: Database, *, clock: Clock = utcnow) -> None:
        self.database = database
        self.clock = clock

    # -- what differs per store ---------------------------------------------------------------------

    @abstractmethod
    def _claim_statement(self, due: sa.Select[Any], values: dict[str, Any]) -> sa.Update:
        """An UPDATE setting `values` on the rows `due` selects (ids, in claim order, limited to the
        demand) that no other claimer can take at the same time, returning every column."""

    @abstractmethod
    async def _notify(self, connection: AsyncConnection, queues: Iterable[str]) -> None:
        """Wake the workers of `queues` once `connection`'s transaction commits."""

    @abstractmethod
    async def listen(self, wake_up: WakeUp) -> Listener:
        """Call `wake_up(queue)` whenever jobs are inserted or made available in a queue."""

    # -- inserting ----------------------------------------------------------------------------------

    def _row(self, job: Job, now: datetime) -> dict[str, Any]:
        scheduled_at = job.scheduled_at or now
        return {
            "queue": job.queue,
            "kind": job.kind,
            "args": job.args,
            "state": (JobState.SCHEDULED if scheduled_at > now else JobState.AVAILABLE).value,
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
        and the holding job is returned with `conflict=True`."""
        now = self.clock()
        row = self._row(job, now)
        for _ in range(3):
            inserted = (
                await connection.execute(self._insert_statement(connection, [row]).returning(*jobs.c))
            ).first()
            if inserted is not None:
                if inserted.state == JobState.AVAILABLE.value:
                    await self._notify(connection, [job.queue])
                return job_record(inserted)
            existing = (
                await connection.execute(
                    sa.select(jobs).where(jobs.c.unique_key == job.unique_key, _HOLDS_UNIQUE_KEY)
                )
            ).first()
            if existing is not None:
                return job_record(existing, conflict=True)
            # The holder was cancelled or discarded between the two statements: the key is free again.
        raise RuntimeError(f"could not insert the job with unique key {job.unique_key!r}")

    async def insert_all(self, connection: AsyncConnection, new_jobs: Sequence[Job]) -> int:
        """Insert many jobs in the caller's transaction, in batched statements; jobs whose unique key is
        held are skipped. Returns how many were inserted."""
        now = self.clock()
        rows = [self._row(job, now) for job in new_jobs]
        inserted = 0
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            result = await connection.execute(self._insert_statement(connection, chunk).returning(jobs.c.id))
            inserted += len(result.all())
        due = {row["queue"] for row in rows if row["state"] == JobState.AVAILABLE.value}
        if due:
            await self._notify(connection, sorted(due))
        return inserted

    async def enqueue(self, job: Job) -> JobRecord:
        """Insert `job` in a transaction of its own."""
        async with self.database.writer.begin() as connection:
            return await self.insert(connection, job)

    async def get(self, job_id: int) -> JobRecord | None:
        async with self.database.reader.connect() as connection:
            row = (await connection.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
        return None if row is None else job_record(row)

    # -- claiming -----------------------------------------------------------------------------------

    def _stage_statement(self, queue: str, until: datetime) -> sa.Update:
        due = (
            sa.select(jobs.c.id)
            .where(
                jobs.c.state.in_([JobState.SCHEDULED.value, JobState.RETRYABLE.value]),
                jobs.c.queue == queue,
                jobs.c.scheduled_at <= until,
            )
            .limit(STAGE_LIMIT)
            .with_for_update(skip_locked=True)
        )
        return jobs.update().where(jobs.c.id.in_(due)).values(state=JobState.AVAILABLE.value)

    async def stage(self, queue: str, *, until: datetime | None = None) -> int:
        """Make the scheduled and retryable jobs of `queue` due by `until` (default: now) available."""
        async with self.database.writer.begin() as connection:
            result = await connection.execute(self._stage_statement(queue, until or self.clock()))
        return int(result.rowcount)

    async def claim(self, queue: str, demand: int, worker_id: str, lease_seconds: float) -> list[JobRecord]:
        """Take up to `demand` due jobs of `queue` for `worker_id`, in (priority, scheduled_at, id) order,
        each leased for `lease_seconds`."""
        if demand <= 0:
            return []
        now = self.clock()
        due = (
            sa.select(jobs.c.id)
            .where(jobs.c.state == JobState.AVAILABLE.value, jobs.c.queue == queue)
            .order_by(jobs.c.priority, jobs.c.scheduled_at, jobs.c.id)
            .limit(demand)
        )
        values = {
            "state": JobState.EXECUTING.value,
            "attempt": jobs.c.attempt + 1,
            "attempted_at": now,
            "attempted_by": worker_id,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
        }
        async with self.database.writer.begin() as connection:
            await connection.execute(self._stage_statement(queue, now))
            rows = (await connection.execute(self._claim_statement(due, values))).all()
        claimed = [job_record(row) for row in rows]
        return sorted(claimed, key=lambda job: (job.priority, job.scheduled_at, job.id))

    async def extend_leases(self, worker_id: str, job_ids: Sequence[int], lease_seconds: float) -> int:
        """Push the leases of `worker_id`'s executing jobs `lease_seconds` past now (the heartbeat)."""
        if not job_ids:
            return 0
        async with self.database.writer.begin() as connection:
            result = await connection.execute(
                jobs.update()
                .where(
                    jobs.c.id.in_(list(job_ids)),
                    jobs.c.state == JobState.EXECUTING.value,
                    jobs.c.attempted_by == worker_id,
                )
                .values(lease_expires_at=self.clock() + timedelta(seconds=lease_seconds))
            )
        return int(result.rowcount)

    # -- acknowledging ------------------------------------------------------------------------------

    async def _acknowledge(self, job: JobRecord, values: dict[str, Any], wake: bool = False) -> bool:
        async with self.database.writer.begin() as connection:
            result = await connection.execute(
                jobs.update().where(_owned(job)).values(lease_expires_at=None, **values)
            )
            if wake and result.rowcount:
                await self._notify(connection, [job.queue])
        return bool(result.rowcount)

    async def complete(self, job: JobRecord) -> bool:
        return await self._acknowledge(job, {"state": JobState.COMPLETED.value, "completed_at": self.clock()})

    async def retry(self, job: JobRecord, error: str) -> JobState | None:
        """Record a failed attempt: retryable after a backoff while attempts remain, discarded after the
        last. Returns the new state, or None when the job was no longer this attempt's to change."""
        now = self.clock()
        errors = [*job.errors, _error_entry(job.attempt, now, error)]
        if job.attempt >= job.max_attempts:
            state = JobState.DISCARDED
            values: dict[str, Any] = {"state": state.value, "discarded_at": now, "errors": errors}
        else:
            state = JobState.RETRYABLE
            delay = timedelta(seconds=backoff_seconds(job.attempt))
            values = {"state": state.value, "scheduled_at": now + delay, "errors": errors}
        return state if await self._acknowledge(job, values) else None

    async def snooze(self, job: JobRecord, seconds: float) -> bool:
        """Put the job back for `seconds`; the attempt is given back by raising `max_attempts`."""
        now = self.clock()
        state = JobState.SCHEDULED if seconds > 0 else JobState.AVAILABLE
        values = {
            "state": state.value,
            "scheduled_at": now + timedelta(seconds=seconds),
            "max_attempts": jobs.c.max_attempts + 1,
        }
        return await self._acknowledge(job, values, wake=state is JobState.AVAILABLE)

    async def cancel(self, job: JobRecord, reason: str) -> bool:
        now = self.clock()
        errors = [*job.errors, _error_entry(job.attempt, now, f"cancelled: {reason}")]
        return await self._acknowledge(
            job, {"state": JobState.CANCELLED.value, "cancelled_at": now, "errors": errors}
        )

    async def cancel_jobs(self, connection: AsyncConnection, job_ids: Sequence[int]) -> int:
        """Cancel unfinished jobs in the caller's transaction. An executing job keeps running, but its
        outcome is then ignored."""
        if not job_ids:
            return 0
        result = await connection.execute(
            jobs.update()
            .where(
                jobs.c.id.in_(list(job_ids)),
                jobs.c.state.in_(
                    [
                        JobState.AVAILABLE.value,
                        JobState.SCHEDULED.value,
                        JobState.RETRYABLE.value,
                        JobState.EXECUTING.value,
                    ]
                ),
            )
            .values(state=JobState.CANCELLED.value, cancelled_at=self.clock(), lease_expires_at=None)
        )
        return int(result.rowcount)

    # -- housekeeping -------------------------------------------------------------------------------

    async def rescue(self, limit: int = 1_000) -> tuple[int, int]:
        """Return executing jobs whose lease has expired to `available`, or discard them when they have
        used all their attempts. Returns (rescued, discarded)."""
        now = self.clock()
        rescued = discarded = 0
        async with self.database.writer.begin() as connection:
            stalled = (
                await connection.execute(
                    sa.select(jobs)
                    .where(jobs.c.state == JobState.EXECUTING.value, jobs.c.lease_expires_at < now)
                    .order_by(jobs.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            queues: set[str] = set()
            for job in map(job_record, stalled):
                error = f"rescued: the lease of worker {job.attempted_by} expired"
                errors = [*job.errors, _error_entry(job.attempt, now, error)]
                values: dict[str, Any] = {"errors": errors, "lease_expires_at": None}
                if job.attempt >= job.max_attempts:
                    values |= {"state": JobState.DISCARDED.value, "discarded_at": now}
                    discarded += 1
                else:
                    values |= {"state": JobState.AVAILABLE.value, "scheduled_at": now}
                    rescued += 1
                    queues.add(job.queue)
                await connection.execute(jobs.update().where(_owned(job)).values(**values))
            if queues:
                await self._notify(connection, sorted(queues))
        return rescued, discarded

    async def prune(self, older_than: timedelta, limit: int = 10_000) -> int:
        """Delete up to `limit` completed, cancelled and discarded jobs that finished before
        `older_than` ago. Returns how many were deleted."""
        cutoff = self.clock() - older_than
        finished = sa.or_(
            sa.and_(jobs.c.state == JobState.COMPLETED.value, jobs.c.completed_at < cutoff),
            sa.and_(jobs.c.state == JobState.CANCELLED.value, jobs.c.cancelled_at < cutoff),
            sa.and_(jobs.c.state == JobState.DISCARDED.value, jobs.c.discarded_at < cutoff),
        )
        old = sa.select(jobs.c.id).where(finished).limit(limit).with_for_update(skip_locked=True)
        async with self.database.writer.begin() as connection:
            result = await connection.execute(jobs.delete().where(jobs.c.id.in_(old)))
        return int(result.rowcount)

"""Data retention: messages (with their events and activities, which live on their rows), finished workflow
runs (with theirs), finished bulk operations and finished batches (with their activities) are deleted
once older than the retention, as Knock deletes its message logs and workflow run logs (90 days on its
Enterprise plans); throttle windows are deleted as soon as they are over, the retention aside. Finished
jobs are the queue's own business: its pruner deletes them an hour after they finish (`clarion.jobs.pruner`).

What stays whatever its age:
- a run that has not finished (waiting at a delay, say), and every message of such a run, which its
  later steps' `refs.*` conditions may read; the messages go once the run has finished;
- a finished run until its last change (`updated_at`, when it finished) is older than the retention too,
  so a run that waited long is kept for the whole retention after it ends;
- a batch until it was flushed (or last joined) and its window closed before the cutoff, and whatever its
  age while the run that carries it has not finished; its activities go with it (first, since they name
  it). A message made from a batch may outlive it by the time between the flush and the message (a delay
  after the batch step), and then lists no activities for that long.

Messages, runs, batches and their activities are walked in `pk` order, which is insertion order, a small
batch at a time: each batch reads the next `pk`s with their `inserted_at` and deletes the old ones that may
go, in a transaction of its own. The walk ends at the first row inserted after the cutoff: no index on
`inserted_at` is needed, and none is written on every insert of a fan-out. A row that was stamped a little
before another but took its `pk` after it (another process's clock, a long fan-out transaction) waits for
the next pass. Each pass starts from the lowest `pk`, so a kept row is looked at again every pass and goes
once it may. Rows locked by another transaction are skipped, not waited on (PostgreSQL), so two workers
pruning at once neither wait on nor deadlock with each other; SQLite has a single writer anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from clarion.store.bulk_operations import BulkOperationStatus
from clarion.store.db import Database
from clarion.store.tables import batch_activities, batches, bulk_operations, messages, workflow_runs
from clarion.store.throttles import prune_expired_throttles
from clarion.store.workflow_runs import FINISHED

PASS_SECONDS = 600.0
"""How often a worker runs a pass. The retention counts in days, and each pass reads again the old rows it
must keep (those of runs still waiting), so more often buys nothing."""

BATCH = 50
"""Rows per delete. On SQLite every statement runs on the event loop: a batch of 50 messages held it 8 ms at
most on a busy 2-core machine, most of it the batch's fixed cost (`bench/disk.py` prints it)."""


@dataclass(frozen=True)
class Pruned:
    messages: int = 0
    runs: int = 0
    bulk_operations: int = 0
    batches: int = 0
    batch_activities: int = 0
    throttles: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())


Deletable = Callable[[datetime], sa.ColumnElement[bool]]
"""What else an old row must satisfy to go, given the cutoff."""


def _message_deletable(_cutoff: datetime) -> sa.ColumnElement[bool]:
    run_is_open = sa.exists().where(
        workflow_runs.c.id == messages.c.run_id, workflow_runs.c.status.not_in(FINISHED)
    )
    return ~run_is_open


def _run_deletable(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(workflow_runs.c.status.in_(FINISHED), workflow_runs.c.updated_at < cutoff)


def _batch_expired(cutoff: datetime) -> sa.ColumnElement[bool]:
    """The batch was last changed (flushed, or joined) and its window closed before the cutoff, and no
    unfinished run carries it."""
    carrier_is_open = sa.exists().where(
        workflow_runs.c.id == batches.c.run_id, workflow_runs.c.status.not_in(FINISHED)
    )
    return sa.and_(batches.c.updated_at < cutoff, batches.c.closes_at < cutoff, ~carrier_is_open)


def _activity_deletable(cutoff: datetime) -> sa.ColumnElement[bool]:
    batch_kept = sa.exists().where(batches.c.id == batch_activities.c.batch_id, ~_batch_expired(cutoff))
    return ~batch_kept


def _batch_deletable(cutoff: datetime) -> sa.ColumnElement[bool]:
    has_activities = sa.exists().where(batch_activities.c.batch_id == batches.c.id)
    return sa.and_(_batch_expired(cutoff), ~has_activities)


async def _prune_in_pk_order(
    database: Database, table: sa.Table, deletable: Deletable, cutoff: datetime, batch: int
) -> int:
    pk, inserted_at = table.c.pk, table.c.inserted_at
    deleted = 0
    after = 0
    while True:
        async with database.reader.connect() as connection:
            window = (
                await connection.execute(
                    sa.select(pk, inserted_at).where(pk > after).order_by(pk).limit(batch)
                )
            ).all()
        old = [row.pk for row in window if row.inserted_at < cutoff]
        if old:
            may_go = sa.select(pk).where(pk.in_(old), deletable(cutoff)).with_for_update(skip_locked=True)
            async with database.writer.begin() as connection:
                result = await connection.execute(table.delete().where(pk.in_(may_go)))
            deleted += int(result.rowcount)
        if len(window) < batch or len(old) < len(window):
            return deleted
        after = window[-1].pk


async def _prune_bulk_operations(database: Database, cutoff: datetime, batch: int) -> int:
    """Finished bulk operations last changed before the cutoff. They are few (one per bulk request), so
    finding them reads the table rather than an index every insert would pay for."""
    c = bulk_operations.c
    finished = (BulkOperationStatus.COMPLETED.value, BulkOperationStatus.FAILED.value)
    deleted = 0
    while True:
        old = (
            sa.select(c.id)
            .where(c.status.in_(finished), c.updated_at < cutoff)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        async with database.writer.begin() as connection:
            result = await connection.execute(bulk_operations.delete().where(c.id.in_(old)))
        deleted += int(result.rowcount)
        if result.rowcount < batch:
            return deleted


async def prune_older_than(
    database: Database, retention: timedelta, *, now: datetime, batch: int = BATCH
) -> Pruned:
    """One pass: delete what the retention lets go as of `now`, `batch` rows per transaction."""
    cutoff = now - retention
    return Pruned(
        messages=await _prune_in_pk_order(database, messages, _message_deletable, cutoff, batch),
        runs=await _prune_in_pk_order(database, workflow_runs, _run_deletable, cutoff, batch),
        bulk_operations=await _prune_bulk_operations(database, cutoff, batch),
        # Activities first: they name their batch.
        batch_activities=await _prune_in_pk_order(
            database, batch_activities, _activity_deletable, cutoff, batch
        ),
        batches=await _prune_in_pk_order(database, batches, _batch_deletable, cutoff, batch),
        throttles=await prune_expired_throttles(database, now, batch),
    )

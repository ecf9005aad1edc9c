"""Workflow recipient runs and their events.

A run is one workflow version executing for one recipient; every recipient of a trigger gets its own run,
all sharing the trigger's `workflow_run_id`, at most one per (trigger, recipient). A run records where it
is (`position`, the index of its current step), the `data` its steps see, what each step produced
(`step_results`) and what happened, oldest first (`events`, on the run's row: a checkpoint rewrites one
row, whatever its steps recorded). `advance` moves a run on only from the position the caller read it
at, inside the caller's transaction, so a step that two workers execute (a rescued job) is checkpointed
once: the second worker's transaction finds the run moved on and rolls back. Statuses are Knock's:
`queued` (created, no step run yet), `processing`, `paused` (waiting on a delay), `completed`,
`cancelled`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store.batches import remove_activities
from clarion.store.batching import chunks
from clarion.store.bulk_insert import BulkInsert
from clarion.store.clock import utc_text, utcnow
from clarion.store.db import Database
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import workflow_runs


class RunStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


FINISHED = (RunStatus.COMPLETED.value, RunStatus.CANCELLED.value)
FIRST_POSITION = "0"


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class RunRecord:
    id: str
    environment_id: str
    workflow_run_id: str
    workflow_key: str
    version_id: str
    recipient: RecipientKey
    actor: RecipientKey | None
    tenant: str | None
    cancellation_key: str | None
    data: dict[str, Any]
    """The trigger's data as the run's steps have changed it (`update_data`): frozen and shared with other
    runs, so a step sets a new document here rather than change this one (`RunProgress.record`)."""
    settings: dict[str, Any]
    trigger_source: str
    status: RunStatus
    position: str | None
    """The index of the step the run is at, as text; None once finished."""
    step_results: dict[str, Any]
    events: tuple[RunEventRecord, ...]
    error_count: int
    inserted_at: datetime
    updated_at: datetime

    def moved(
        self,
        *,
        position: str | None,
        status: RunStatus,
        step_results: dict[str, Any],
        events: tuple[RunEventRecord, ...],
        error_count: int,
        updated_at: datetime,
    ) -> RunRecord:
        """The run where it stands now, with what it has recorded. Built field by field: once per run of a
        fan-out, `dataclasses.replace` costs several times as much (docs/decisions.md)."""
        return RunRecord(
            id=self.id,
            environment_id=self.environment_id,
            workflow_run_id=self.workflow_run_id,
            workflow_key=self.workflow_key,
            version_id=self.version_id,
            recipient=self.recipient,
            actor=self.actor,
            tenant=self.tenant,
            cancellation_key=self.cancellation_key,
            data=self.data,
            settings=self.settings,
            trigger_source=self.trigger_source,
            status=status,
            position=position,
            step_results=step_results,
            events=events,
            error_count=error_count,
            inserted_at=self.inserted_at,
            updated_at=updated_at,
        )


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class RunEvent:
    event: str
    status: str = "ok"
    step_ref: str | None = None
    step_type: str | None = None
    attempt: int = 1
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class RunEventRecord:
    """An event as a run stores it. Its id is derived from the run and its place there when read, unless
    it kept the one it had before events moved onto runs (`id`)."""

    event: RunEvent
    inserted_at: datetime
    id: str | None = None

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> RunEventRecord:
        event = RunEvent(
            stored["event"],
            stored.get("status", "ok"),
            stored.get("step_ref"),
            stored.get("step_type"),
            stored.get("attempt", 1),
            stored.get("data") or {},
        )
        return cls(event, datetime.fromisoformat(stored["inserted_at"]), stored.get("id"))

    def stored(self) -> dict[str, Any]:
        """The event as the run's row keeps it: fields at their defaults are left out, which halves a
        fan-out's events (`run_started` and `run_completed` are all defaults)."""
        event = self.event
        entry: dict[str, Any] = {
            "event": event.event,
            "inserted_at": utc_text(self.inserted_at),
        }
        if event.status != "ok":
            entry["status"] = event.status
        if event.step_ref is not None:
            entry["step_ref"] = event.step_ref
        if event.step_type is not None:
            entry["step_type"] = event.step_type
        if event.attempt != 1:
            entry["attempt"] = event.attempt
        if event.data:
            entry["data"] = event.data
        if self.id is not None:
            entry["id"] = self.id
        return entry


def run_record(row: sa.Row[Any]) -> RunRecord:
    m = row._mapping
    actor = None if m["actor_id"] is None else RecipientKey(m["actor_collection"], m["actor_id"])
    return RunRecord(
        id=m["id"],
        environment_id=m["environment_id"],
        workflow_run_id=m["workflow_run_id"],
        workflow_key=m["workflow_key"],
        version_id=m["version_id"],
        recipient=RecipientKey(m["recipient_collection"], m["recipient_id"]),
        actor=actor,
        tenant=m["tenant"],
        cancellation_key=m["cancellation_key"],
        data=m["data"],
        settings=m["settings"],
        trigger_source=m["trigger_source"],
        status=RunStatus(m["status"]),
        position=m["position"],
        step_results=m["step_results"],
        events=tuple(map(RunEventRecord.from_stored, m["events"])),
        error_count=m["error_count"],
        inserted_at=m["inserted_at"],
        updated_at=m["updated_at"],
    )


_RUN_INSERT = BulkInsert(
    workflow_runs,
    # What a trigger gives all its runs.
    shared=[
        "environment_id",
        "workflow_run_id",
        "workflow_key",
        "version_id",
        "actor_collection",
        "actor_id",
        "tenant",
        "cancellation_key",
        "trigger_source",
    ],
    skip_conflicts_on=["environment_id", "workflow_run_id", "recipient_collection", "recipient_id"],
    returning="id",
)


async def insert_runs(
    connection: AsyncConnection, environment_id: str, runs: Sequence[RunRecord]
) -> list[str]:
    """Insert runs of one trigger, as they stand, in the caller's transaction, skipping recipients that
    already have a run of it (a trigger job resumed after a crash). Returns the ids of the runs inserted."""
    if not runs:
        return []
    trigger = runs[0]
    if any(run.workflow_run_id != trigger.workflow_run_id for run in runs):
        raise ValueError("runs of one trigger are inserted together")
    rows = [
        {
            "id": run.id,
            "recipient_collection": run.recipient.collection,
            "recipient_id": run.recipient.id,
            "data": run.data,
            "settings": run.settings,
            "status": run.status.value,
            "position": run.position,
            "step_results": run.step_results,
            "events": [event.stored() for event in run.events],
            "error_count": run.error_count,
            "inserted_at": run.inserted_at,
            "updated_at": run.updated_at,
        }
        for run in runs
    ]
    inserted = await _RUN_INSERT.insert(
        connection,
        rows,
        environment_id=environment_id,
        workflow_run_id=trigger.workflow_run_id,
        workflow_key=trigger.workflow_key,
        version_id=trigger.version_id,
        actor_collection=None if trigger.actor is None else trigger.actor.collection,
        actor_id=None if trigger.actor is None else trigger.actor.id,
        tenant=trigger.tenant,
        cancellation_key=trigger.cancellation_key,
        trigger_source=trigger.trigger_source,
    )
    return [str(run_id) for run_id in inserted]


async def advance(
    connection: AsyncConnection, run: RunRecord, moved: RunRecord, *, write_data: bool = False
) -> bool:
    """Move `run` from the position it was read at to where `moved` stands, in the caller's transaction;
    `write_data` stores `moved.data` too (a step changed it), which is otherwise left unwritten. False,
    changing nothing, when the run has moved on or finished meanwhile."""
    values: dict[str, Any] = {
        "position": moved.position,
        "status": moved.status.value,
        "step_results": moved.step_results,
        "events": [event.stored() for event in moved.events],
        "error_count": moved.error_count,
        "updated_at": moved.updated_at,
    }
    if write_data:
        values["data"] = moved.data
    result = await connection.execute(
        workflow_runs.update()
        .where(
            workflow_runs.c.environment_id == run.environment_id,
            workflow_runs.c.id == run.id,
            workflow_runs.c.status.not_in(FINISHED),
            workflow_runs.c.position == run.position,
        )
        .values(values)
    )
    return bool(result.rowcount)


async def read_runs(
    connection: AsyncConnection, environment_id: str, run_ids: Sequence[str], *, for_update: bool = False
) -> list[RunRecord]:
    """The runs of `run_ids` that exist in the environment; `for_update` locks them for the caller's
    transaction (on PostgreSQL; SQLite's writer holds the whole file), in id order, the order every
    transaction that changes many runs takes them in, so that two never deadlock."""
    found: list[RunRecord] = []
    for chunk in chunks(sorted(run_ids) if for_update else list(run_ids)):
        query = sa.select(workflow_runs).where(
            workflow_runs.c.environment_id == environment_id, workflow_runs.c.id.in_(list(chunk))
        )
        if for_update:
            query = query.order_by(workflow_runs.c.id).with_for_update()
        found.extend(map(run_record, await connection.execute(query)))
    return found


async def started_recipients(
    connection: AsyncConnection, environment_id: str, workflow_run_id: str
) -> list[RecipientKey]:
    """The recipients the trigger `workflow_run_id` has runs for (its unique index answers)."""
    c = workflow_runs.c
    rows = await connection.execute(
        sa.select(c.recipient_collection, c.recipient_id).where(
            c.environment_id == environment_id, c.workflow_run_id == workflow_run_id
        )
    )
    return [RecipientKey(row.recipient_collection, row.recipient_id) for row in rows]


async def read_version(
    connection: AsyncConnection, environment_id: str, run_ids: Sequence[str]
) -> tuple[str, str] | None:
    """(workflow key, version id) of one of the runs of `run_ids` (runs of one trigger share them), or None
    when none exists."""
    row = (
        await connection.execute(
            sa.select(workflow_runs.c.workflow_key, workflow_runs.c.version_id)
            .where(workflow_runs.c.environment_id == environment_id, workflow_runs.c.id.in_(list(run_ids)))
            .limit(1)
        )
    ).first()
    return None if row is None else (row.workflow_key, row.version_id)


@dataclass(frozen=True)
class RunFilter:
    workflow_key: str | None = None
    recipient: RecipientKey | None = None
    tenant: str | None = None
    statuses: tuple[str, ...] = ()
    has_errors: bool | None = None
    starting_at: datetime | None = None
    ending_at: datetime | None = None


class WorkflowRunStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, environment_id: str, run_id: str) -> RunRecord | None:
        found = await self.get_many(environment_id, [run_id])
        return found[0] if found else None

    async def get_many(self, environment_id: str, run_ids: Sequence[str]) -> list[RunRecord]:
        async with self.database.reader.connect() as connection:
            return await read_runs(connection, environment_id, run_ids)

    async def version_of(self, environment_id: str, run_ids: Sequence[str]) -> tuple[str, str] | None:
        async with self.database.reader.connect() as connection:
            return await read_version(connection, environment_id, run_ids)

    async def page(
        self, environment_id: str, filters: RunFilter, page: PageRequest
    ) -> tuple[list[RunRecord], Page]:
        query = sa.select(workflow_runs).where(workflow_runs.c.environment_id == environment_id)
        if filters.workflow_key is not None:
            query = query.where(workflow_runs.c.workflow_key == filters.workflow_key)
        if filters.recipient is not None:
            query = query.where(
                workflow_runs.c.recipient_collection == filters.recipient.collection,
                workflow_runs.c.recipient_id == filters.recipient.id,
            )
        if filters.tenant is not None:
            query = query.where(workflow_runs.c.tenant == filters.tenant)
        if filters.statuses:
            query = query.where(workflow_runs.c.status.in_(filters.statuses))
        if filters.has_errors is not None:
            errors = workflow_runs.c.error_count
            query = query.where(errors > 0 if filters.has_errors else errors == 0)
        if filters.starting_at is not None:
            query = query.where(workflow_runs.c.inserted_at >= filters.starting_at)
        if filters.ending_at is not None:
            query = query.where(workflow_runs.c.inserted_at <= filters.ending_at)
        async with self.database.reader.connect() as connection:
            result = await fetch_page(connection, query, workflow_runs.c.pk, page, newest_first=True)
        return [run_record(row) for row in result.rows], result

    async def cancel(
        self,
        environment_id: str,
        workflow_key: str,
        cancellation_key: str,
        recipients: Sequence[RecipientKey] | None = None,
    ) -> int:
        """Cancel the unfinished runs of (workflow, cancellation key), or only those of `recipients`.
        Returns how many were cancelled; their pending step jobs find them cancelled and stop. Their
        activities leave the batches still open (`clarion.store.batches.remove_activities`)."""
        cancelling = [
            workflow_runs.c.environment_id == environment_id,
            workflow_runs.c.workflow_key == workflow_key,
            workflow_runs.c.cancellation_key == cancellation_key,
        ]
        if recipients is not None:
            if not recipients:
                return 0
            cancelling.append(
                sa.tuple_(workflow_runs.c.recipient_collection, workflow_runs.c.recipient_id).in_(
                    [tuple(key) for key in recipients]
                )
            )
        condition = sa.and_(*cancelling, workflow_runs.c.status.not_in(FINISHED))
        async with self.database.writer.begin() as connection:
            # Locked in id order first, the order a step job moves its runs on in, so that the two never
            # deadlock on PostgreSQL (SQLite's single writer takes no row locks).
            locked = (
                sa.select(workflow_runs.c.id).where(condition).order_by(workflow_runs.c.id).with_for_update()
            )
            ids = list((await connection.execute(locked)).scalars())
            # Runs that ended in an open batch leave it; a run carrying a batch gives up its own activity but
            # goes on carrying the others' (Knock's rule), and is cancelled once the batch has closed.
            batched = sa.select(workflow_runs.c.id).where(
                *cancelling, workflow_runs.c.status == RunStatus.COMPLETED.value
            )
            joined = list((await connection.execute(batched)).scalars())
            removed = await remove_activities(connection, environment_id, [*ids, *joined], utcnow())
            carrying = {activity.run_id for activity in removed if activity.carrier}
            ids = [run_id for run_id in ids if run_id not in carrying]
            cancelled = 0
            for chunk in chunks(ids):
                result = await connection.execute(
                    workflow_runs.update()
                    .where(workflow_runs.c.id.in_(list(chunk)), workflow_runs.c.status.not_in(FINISHED))
                    .values(status=RunStatus.CANCELLED.value, position=None, updated_at=utcnow())
                )
                cancelled += int(result.rowcount)
        return cancelled

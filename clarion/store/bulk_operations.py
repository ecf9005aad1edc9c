"""Bulk operations: the record of one asynchronous bulk request, its rows and its progress counters.

A bulk operation is created `queued` with every row of the request in `payload`, in the transaction that
enqueues its job (`clarion.engine.bulk`). The job moves it to `processing`, then adds each processed chunk's
counts with `record_progress`, a compare-and-set on `processed_rows`: a chunk is counted once even when two
runs of the job race after a rescue, and a run resumed after a crash continues after the last counted chunk.
The job ends it `completed` (or `failed`, for a kind nobody handles); when the job queue discards the job,
`fail_bulk_operation` ends it `failed` in the discarding transaction. JSON text goes through
`clarion.store.json_codec`, so integers of any size round-trip exactly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import NotFoundError
from clarion.store import json_codec
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.tables import UTCDateTime, bulk_operations


class BulkOperationStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class BulkErrorItem:
    """A row that failed: the entity's id, and its collection where the entity is an object."""

    id: str
    collection: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "collection": self.collection}


@dataclass(frozen=True)
class BulkOperationRecord:
    id: str
    environment_id: str
    name: str
    status: BulkOperationStatus
    payload: dict[str, Any]
    estimated_total_rows: int
    processed_rows: int
    success_count: int
    error_count: int
    error_items: list[BulkErrorItem]
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    inserted_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in (BulkOperationStatus.COMPLETED, BulkOperationStatus.FAILED)


_UNFINISHED = [BulkOperationStatus.QUEUED.value, BulkOperationStatus.PROCESSING.value]


def bulk_operation_record(row: sa.Row[Any]) -> BulkOperationRecord:
    m = row._mapping
    return BulkOperationRecord(
        id=m["id"],
        environment_id=m["environment_id"],
        name=m["name"],
        status=BulkOperationStatus(m["status"]),
        payload=json_codec.loads(m["payload"]),
        estimated_total_rows=m["estimated_total_rows"],
        processed_rows=m["processed_rows"],
        success_count=m["success_count"],
        error_count=m["error_count"],
        error_items=[
            BulkErrorItem(item["id"], item.get("collection")) for item in json_codec.loads(m["error_items"])
        ],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        failed_at=m["failed_at"],
        inserted_at=m["inserted_at"],
        updated_at=m["updated_at"],
    )


async def insert_bulk_operation(
    connection: AsyncConnection, environment_id: str, name: str, payload: dict[str, Any], total_rows: int
) -> BulkOperationRecord:
    """Create a queued bulk operation in the caller's transaction."""
    now = utcnow()
    row = (
        await connection.execute(
            bulk_operations.insert()
            .values(
                id=str(uuid.uuid4()),
                environment_id=environment_id,
                name=name,
                status=BulkOperationStatus.QUEUED.value,
                payload=json_codec.dumps(payload),
                estimated_total_rows=total_rows,
                processed_rows=0,
                success_count=0,
                error_count=0,
                error_items=json_codec.dumps([]),
                inserted_at=now,
                updated_at=now,
            )
            .returning(*bulk_operations.c)
        )
    ).one()
    return bulk_operation_record(row)


def _this(environment_id: str, operation_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(bulk_operations.c.environment_id == environment_id, bulk_operations.c.id == operation_id)


def _finish(environment_id: str, operation_id: str, status: BulkOperationStatus) -> sa.Update:
    """End an unfinished operation with `status`, stamping `completed_at` or `failed_at`."""
    now = utcnow()
    moment = "completed_at" if status is BulkOperationStatus.COMPLETED else "failed_at"
    return (
        bulk_operations.update()
        .where(_this(environment_id, operation_id), bulk_operations.c.status.in_(_UNFINISHED))
        .values(status=status.value, updated_at=now, **{moment: now})
    )


async def fail_bulk_operation(connection: AsyncConnection, environment_id: str, operation_id: str) -> bool:
    """End an unfinished operation `failed` in the caller's transaction. Returns whether it was
    unfinished."""
    result = await connection.execute(_finish(environment_id, operation_id, BulkOperationStatus.FAILED))
    return bool(result.rowcount)


class BulkOperationStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, environment_id: str, operation_id: str) -> BulkOperationRecord:
        async with self.database.reader.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(bulk_operations).where(_this(environment_id, operation_id))
                )
            ).first()
        if row is None:
            raise NotFoundError(f"The bulk operation {operation_id!r} was not found")
        return bulk_operation_record(row)

    async def _update(
        self, environment_id: str, operation_id: str, *where: sa.ColumnElement[bool], **values: Any
    ) -> BulkOperationRecord | None:
        async with self.database.writer.begin() as connection:
            row = (
                await connection.execute(
                    bulk_operations.update()
                    .where(_this(environment_id, operation_id), *where)
                    .values(updated_at=utcnow(), **values)
                    .returning(*bulk_operations.c)
                )
            ).first()
        return None if row is None else bulk_operation_record(row)

    async def start(self, environment_id: str, operation_id: str) -> BulkOperationRecord:
        """Mark a queued operation `processing` (a resumed one keeps its first `started_at`)."""
        now = utcnow()
        started = await self._update(
            environment_id,
            operation_id,
            bulk_operations.c.status.in_(_UNFINISHED),
            status=BulkOperationStatus.PROCESSING.value,
            started_at=sa.func.coalesce(
                bulk_operations.c.started_at, sa.bindparam(None, now, type_=UTCDateTime)
            ),
        )
        return started or await self.get(environment_id, operation_id)

    async def record_progress(
        self,
        operation: BulkOperationRecord,
        rows: int,
        success_count: int,
        error_items: list[BulkErrorItem],
    ) -> BulkOperationRecord | None:
        """Count one processed chunk of `rows` rows on top of `operation`, if nobody counted past it
        meanwhile. Returns the updated operation, or None when `operation` was stale."""
        return await self._update(
            operation.environment_id,
            operation.id,
            bulk_operations.c.processed_rows == operation.processed_rows,
            processed_rows=operation.processed_rows + rows,
            success_count=operation.success_count + success_count,
            error_count=operation.error_count + len(error_items),
            error_items=json_codec.dumps([item.to_json() for item in [*operation.error_items, *error_items]]),
        )

    async def finish(
        self, operation: BulkOperationRecord, status: BulkOperationStatus
    ) -> BulkOperationRecord:
        """End an operation `completed` or `failed`; an operation already ended stays as it was."""
        async with self.database.writer.begin() as connection:
            finished = (
                await connection.execute(
                    _finish(operation.environment_id, operation.id, status).returning(*bulk_operations.c)
                )
            ).first()
        if finished is not None:
            return bulk_operation_record(finished)
        return await self.get(operation.environment_id, operation.id)

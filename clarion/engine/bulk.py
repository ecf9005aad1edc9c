"""Bulk operations: Knock's asynchronous bulk endpoints, run as one job per operation on the `bulk` queue.

`start_bulk_operation` writes the queued operation, with the request's rows, and its job in ONE
transaction. The job (`BulkOperationJob`) processes the rows in chunks of `CHUNK_ROWS`, each chunk one batched
write through the resource's store, and counts each chunk once (`clarion.store.bulk_operations`). A chunk
that a crash interrupts before it is counted is written again when the job resumes, so every handler must be
idempotent (upserts, deletes and replaces are). A chunk refused for its data (a `ClarionError`, such as the
store's `DataRefusedError`) is retried row by row, and the rows that still fail become `error_items`; any
other error fails the attempt. When the queue discards the job (its last attempt failed, or its worker
vanished during it), `bulk_operation_discarded` marks the operation `failed` in the discarding transaction,
so no operation stays `processing` for good.

An operation over what a filter selects rather than over rows the request lists (a channel's messages,
`start_message_update`) also has a row source in `BULK_SOURCES`, which yields the next chunk of rows still to
process. A source never selects a row the operation has already processed (it selects what is yet to
change), so a job resumed after a crash picks up the rest; a chunk written but not yet counted when the job
stopped is done but never counted. `estimated_total_rows` is what the source selected when the operation
was queued and `processed_rows` what it selected as the job ran: they differ by whatever changed between.

Adding a kind of bulk operation takes one `BulkKind` member (its Knock name), one handler and one entry in
`BULK_HANDLERS` (and `BULK_SOURCES`, for a filtered kind). The worker gets this module's job handler from
`bulk_job_handlers` and its discard hook from `BULK_DISCARD_HOOKS`. The routes that validate requests and
start operations live with their resource (`clarion.api.routes.users`, `objects`, `tenants`, `messages`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import ClarionError, NotFoundError
from clarion.jobs.job import Cancel, DiscardHook, Job, JobHandler, JobRecord, Outcome
from clarion.schemas.bulk_operations import (
    BulkDeleteSubscription,
    BulkSetObjectRequest,
    BulkUpsertSubscription,
    InlineTenantRequest,
)
from clarion.schemas.channel_data import validate_inline_channel_data
from clarion.schemas.messages import BulkMessageAction, BulkUpdateMessagesForChannelRequest
from clarion.schemas.recipient_references import recipient_inputs, recipient_key
from clarion.schemas.recipients import RecipientUpsertRequest
from clarion.schemas.users import InlineIdentifyUserRequest
from clarion.store import json_codec
from clarion.store.bulk_operations import (
    BulkErrorItem,
    BulkOperationRecord,
    BulkOperationStatus,
    fail_bulk_operation,
    insert_bulk_operation,
)
from clarion.store.clock import utcnow
from clarion.store.errors import refused_data
from clarion.store.messages import MessageFilter
from clarion.store.recipients import InlineRecipientData
from clarion.store.subscriptions import SubscriptionEntry, SubscriptionRemoval
from clarion.store.tables import USERS_COLLECTION
from clarion.store.tenants import TenantEntry

if TYPE_CHECKING:
    from clarion.runtime import Runtime

logger = logging.getLogger(__name__)

BULK_QUEUE = "bulk"
BULK_OPERATION_JOB = "bulk_operation"
CHUNK_ROWS = 100


class BulkKind(StrEnum):
    """Each bulk operation, by the name a `BulkOperation` carries: the resource and the SDKs' method."""

    USERS_IDENTIFY = "users.identify"
    USERS_DELETE = "users.delete"
    USERS_SET_PREFERENCES = "users.set_preferences"
    OBJECTS_SET = "objects.set"
    OBJECTS_DELETE = "objects.delete"
    OBJECTS_ADD_SUBSCRIPTIONS = "objects.add_subscriptions"
    OBJECTS_DELETE_SUBSCRIPTIONS = "objects.delete_subscriptions"
    TENANTS_SET = "tenants.set"
    TENANTS_DELETE = "tenants.delete"
    CHANNELS_UPDATE_MESSAGE_STATUS = "channels.update_message_status"


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk did: how many writes succeeded, and the entities it could not process."""

    success_count: int
    error_items: list[BulkErrorItem] = field(default_factory=list)

    def __add__(self, other: ChunkResult) -> ChunkResult:
        return ChunkResult(self.success_count + other.success_count, self.error_items + other.error_items)


BulkHandler = Callable[["Runtime", str, dict[str, Any], list[Any]], Awaitable[ChunkResult]]
"""Processes one chunk: (runtime, environment_id, the operation's params, the chunk's rows as stored)."""

RowSource = Callable[["Runtime", str, dict[str, Any], Any, int], Awaitable[tuple[list[Any], Any]]]
"""The next rows of a filtered operation: (runtime, environment_id, params, cursor, limit) → (at most `limit`
rows, the cursor to pass next); no rows when none are left. The cursor starts at None and only spares
rescanning what the job has passed: a resumed job starts over at None, so a source must never return a
row already processed."""


async def start_bulk_operation(
    runtime: Runtime,
    environment_id: str,
    kind: str,
    rows: list[Any],
    params: dict[str, Any] | None = None,
) -> BulkOperationRecord:
    """Queue a bulk operation over `rows` (JSON values, validated by the caller) and its job, in one
    transaction."""
    return await _queue(runtime, environment_id, kind, {"params": params or {}, "rows": rows}, len(rows))


async def start_message_update(
    runtime: Runtime,
    environment_id: str,
    channel_id: str,
    action: BulkMessageAction,
    request: BulkUpdateMessagesForChannelRequest,
) -> BulkOperationRecord:
    """Queue `action` over the messages of `channel_id` that `request` selects. Messages made after this
    call are left alone; `estimated_total_rows` is the number of messages the action changes, counted now."""
    params = {
        "channel_id": channel_id,
        "action": action.value,
        "until": utcnow().isoformat(),
        "filters": request.model_dump(mode="json", exclude_none=True),
    }
    selected = await runtime.messages.counts(environment_id, _message_selection(params))
    return await _queue(
        runtime, environment_id, BulkKind.CHANNELS_UPDATE_MESSAGE_STATUS, {"params": params}, selected.total
    )


async def _queue(
    runtime: Runtime, environment_id: str, kind: str, payload: dict[str, Any], total_rows: int
) -> BulkOperationRecord:
    async with runtime.database.writer.begin() as connection:
        operation = await insert_bulk_operation(connection, environment_id, kind, payload, total_rows)
        await runtime.queue.insert(
            connection,
            Job(
                kind=BULK_OPERATION_JOB,
                queue=BULK_QUEUE,
                args={"environment_id": environment_id, "bulk_operation_id": operation.id},
                unique_key=f"{BULK_OPERATION_JOB}:{operation.id}",
            ),
        )
    return operation


# -- the handlers -------------------------------------------------------------------------------------


@functools.cache
def _rows_adapter(model: Any) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])


def _parse(model: Any, rows: list[Any]) -> list[Any]:
    """Rows as their request models again, parsed exactly as the request was (JSON mode, strict)."""
    return _rows_adapter(model).validate_json(json_codec.dumps(rows))


def _inline(runtime: Runtime, entry: RecipientUpsertRequest) -> InlineRecipientData:
    channel_data = validate_inline_channel_data(runtime.channels, entry.channel_data)
    return InlineRecipientData(channel_data=channel_data, preferences=entry.preferences)


async def identify_users(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    users: list[InlineIdentifyUserRequest] = _parse(InlineIdentifyUserRequest, rows)
    await runtime.users.identify_many(
        environment_id, [(user.id, user.properties(), _inline(runtime, user)) for user in users]
    )
    return ChunkResult(len(rows))


async def delete_users(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    await runtime.users.delete_many(environment_id, rows)
    return ChunkResult(len(rows))


async def set_user_preferences(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    await runtime.preferences.replace_many(
        environment_id, USERS_COLLECTION, rows, params["set_id"], params["preferences"]
    )
    return ChunkResult(len(rows))


async def set_objects(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    entries: list[BulkSetObjectRequest] = _parse(BulkSetObjectRequest, rows)
    await runtime.objects.set_many(
        environment_id,
        params["collection"],
        [(entry.id, entry.properties(), _inline(runtime, entry)) for entry in entries],
    )
    return ChunkResult(len(rows))


async def delete_objects(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    await runtime.objects.delete_many(environment_id, params["collection"], rows)
    return ChunkResult(len(rows))


async def add_subscriptions(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    """Counts the subscriptions written; objects and recipients that do not exist are the error items."""
    entries: list[BulkUpsertSubscription] = _parse(BulkUpsertSubscription, rows)
    result = await runtime.subscriptions.add_many(
        environment_id,
        params["collection"],
        [
            SubscriptionEntry(
                entry.id, recipient_inputs(entry.recipients, runtime.channels), entry.properties
            )
            for entry in entries
        ],
    )
    failed = [BulkErrorItem(key.id, None if key.is_user else key.collection) for key in result.failed]
    return ChunkResult(result.success_count, failed)


async def delete_subscriptions(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    """Counts the subscriptions removed; those that did not exist are skipped, as Knock does."""
    entries: list[BulkDeleteSubscription] = _parse(BulkDeleteSubscription, rows)
    removed = await runtime.subscriptions.delete_many(
        environment_id,
        params["collection"],
        [SubscriptionRemoval(entry.id, [recipient_key(r) for r in entry.recipients]) for entry in entries],
    )
    return ChunkResult(removed)


def _tenant_entry(runtime: Runtime, tenant: str | Any) -> TenantEntry:
    if isinstance(tenant, str):
        return TenantEntry(id=tenant, properties={})
    entry: TenantEntry = tenant.entry(tenant.id)
    return dataclasses.replace(entry, inline=_inline(runtime, tenant))


async def set_tenants(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    tenants = _parse(InlineTenantRequest, rows)
    await runtime.tenants.set_many(environment_id, [_tenant_entry(runtime, tenant) for tenant in tenants])
    return ChunkResult(len(rows))


async def delete_tenants(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    await runtime.tenants.delete_many(environment_id, rows)
    return ChunkResult(len(rows))


def _message_selection(params: dict[str, Any]) -> MessageFilter:
    request = BulkUpdateMessagesForChannelRequest.model_validate_json(json_codec.dumps(params["filters"]))
    return request.message_filter(
        params["channel_id"],
        BulkMessageAction(params["action"]),
        until=datetime.fromisoformat(params["until"]),
    )


async def pending_channel_messages(
    runtime: Runtime, environment_id: str, params: dict[str, Any], cursor: Any, limit: int
) -> tuple[list[Any], Any]:
    """The ids of the next messages the action is still to change, oldest first; the cursor is a `pk`."""
    page = await runtime.messages.select_ids(
        environment_id, _message_selection(params), after=cursor or 0, limit=limit
    )
    return [message_id for _, message_id in page], page[-1][0] if page else cursor


async def update_channel_messages(
    runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
) -> ChunkResult:
    """Applies the action to messages by id. A message that already stands as asked records no event, and
    one deleted meanwhile is skipped: either way it ends as the action asks, and counts as a success."""
    change = BulkMessageAction(params["action"]).change
    if change is None:
        await runtime.messages.delete_many(environment_id, rows)
    else:
        status, on = change
        await runtime.messages.change_engagement(environment_id, rows, status, on=on)
    return ChunkResult(len(rows))


BULK_HANDLERS: dict[str, BulkHandler] = {
    BulkKind.USERS_IDENTIFY: identify_users,
    BulkKind.USERS_DELETE: delete_users,
    BulkKind.USERS_SET_PREFERENCES: set_user_preferences,
    BulkKind.OBJECTS_SET: set_objects,
    BulkKind.OBJECTS_DELETE: delete_objects,
    BulkKind.OBJECTS_ADD_SUBSCRIPTIONS: add_subscriptions,
    BulkKind.OBJECTS_DELETE_SUBSCRIPTIONS: delete_subscriptions,
    BulkKind.TENANTS_SET: set_tenants,
    BulkKind.TENANTS_DELETE: delete_tenants,
    BulkKind.CHANNELS_UPDATE_MESSAGE_STATUS: update_channel_messages,
}

BULK_SOURCES: dict[str, RowSource] = {
    BulkKind.CHANNELS_UPDATE_MESSAGE_STATUS: pending_channel_messages,
}
"""The row source of each filtered kind; every other kind processes the rows its request listed."""


# -- the job ------------------------------------------------------------------------------------------


def error_item(row: Any, params: dict[str, Any]) -> BulkErrorItem:
    """The entity a row names: a bare id, or an entry with an `id`; objects carry their collection."""
    entity_id = row if isinstance(row, str) else str(row.get("id"))
    return BulkErrorItem(entity_id, params.get("collection"))


class BulkOperationJob:
    """The job handler of `BULK_OPERATION_JOB`: runs one bulk operation to its end."""

    def __init__(
        self,
        runtime: Runtime,
        handlers: Mapping[str, BulkHandler],
        chunk_rows: int = CHUNK_ROWS,
        sources: Mapping[str, RowSource] = BULK_SOURCES,
    ) -> None:
        self.runtime = runtime
        self.handlers = handlers
        self.chunk_rows = chunk_rows
        self.sources = sources

    async def __call__(self, job: JobRecord) -> Outcome:
        store = self.runtime.bulk_operations
        environment_id: str = job.args["environment_id"]
        try:
            operation = await store.get(environment_id, job.args["bulk_operation_id"])
        except NotFoundError:
            return Cancel("the bulk operation no longer exists")
        if operation.finished:
            return None
        handler = self.handlers.get(operation.name)
        if handler is None:
            await store.finish(operation, BulkOperationStatus.FAILED)
            return Cancel(f"no handler for the bulk operation {operation.name!r}")
        await self._run(operation, handler)
        return None

    async def _run(self, operation: BulkOperationRecord, handler: BulkHandler) -> None:
        store = self.runtime.bulk_operations
        operation = await store.start(operation.environment_id, operation.id)
        params: dict[str, Any] = operation.payload["params"]
        source = self.sources.get(operation.name)
        if source is None:
            rows: list[Any] = operation.payload["rows"]
            while operation.processed_rows < len(rows) and not operation.finished:
                chunk = rows[operation.processed_rows : operation.processed_rows + self.chunk_rows]
                operation = await self._run_chunk(operation, chunk, handler, params)
        else:
            cursor = None
            while not operation.finished:
                chunk, cursor = await source(
                    self.runtime, operation.environment_id, params, cursor, self.chunk_rows
                )
                if not chunk:
                    break
                operation = await self._run_chunk(operation, chunk, handler, params)
        await store.finish(operation, BulkOperationStatus.COMPLETED)

    async def _run_chunk(
        self, operation: BulkOperationRecord, chunk: list[Any], handler: BulkHandler, params: dict[str, Any]
    ) -> BulkOperationRecord:
        """Process one chunk and count it on top of `operation`."""
        store = self.runtime.bulk_operations
        result = await self._process(handler, operation.environment_id, params, chunk)
        counted = await store.record_progress(operation, len(chunk), result.success_count, result.error_items)
        # None: another run of this job counted the chunk first; carry on from where it got to.
        return counted or await store.get(operation.environment_id, operation.id)

    async def _process(
        self, handler: BulkHandler, environment_id: str, params: dict[str, Any], rows: list[Any]
    ) -> ChunkResult:
        try:
            with refused_data():
                return await handler(self.runtime, environment_id, params, rows)
        except ClarionError as exc:
            # The rows' data is refused, and would be on every retry: find the rows at fault.
            if len(rows) == 1:
                logger.info("bulk operation row %r failed: %s", error_item(rows[0], params), exc)
                return ChunkResult(0, [error_item(rows[0], params)])
        result = ChunkResult(0)
        for row in rows:
            result += await self._process(handler, environment_id, params, [row])
        return result


def bulk_job_handlers(runtime: Runtime) -> dict[str, JobHandler]:
    """The job handlers this module contributes to the worker (`clarion.runtime.build_worker`)."""
    return {BULK_OPERATION_JOB: BulkOperationJob(runtime, BULK_HANDLERS)}


async def bulk_operation_discarded(connection: AsyncConnection, job: JobRecord) -> None:
    """The bulk job was discarded: its operation ends `failed`, unless it had ended already."""
    await fail_bulk_operation(connection, job.args["environment_id"], job.args["bulk_operation_id"])


BULK_DISCARD_HOOKS: dict[str, DiscardHook] = {BULK_OPERATION_JOB: bulk_operation_discarded}
"""The discard hooks this module contributes to the worker (`clarion.runtime.build_worker`)."""

"""Messages: list and get (`/v1/messages…`), their events, activities and content, the per-recipient lists
(`/v1/users/{user_id}/messages`, `/v1/objects/{collection}/{id}/messages`), and engagement: one message
(`PUT|DELETE /v1/messages/{id}/{status}`), many by id (`POST /v1/messages/batch/{status}`), or every message
of a channel that filters select (`POST /v1/channels/{channel_id}/messages/bulk/{action}`, a bulk operation
run on the job queue by `clarion.engine.bulk`)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import parse_json, read_body, read_json
from clarion.api.contract import MESSAGE_FILTERS, PAGINATION, QueryParameter
from clarion.api.endpoint import Handler, RequestContext, path_param, route
from clarion.api.message_query import message_list_filter
from clarion.api.pagination import page_info, page_request
from clarion.api.query import query_list
from clarion.api.responses import JSONResponse
from clarion.api.routes.bulk_operations import bulk_operation_response
from clarion.engine.bulk import start_message_update
from clarion.engine.run_scope import serialise_recipient
from clarion.errors import InvalidInputError, NotFoundError
from clarion.schemas.base import empty_page_info
from clarion.schemas.bulk_operations import BulkOperation
from clarion.schemas.feeds import activities, batch_activity, referenced_keys
from clarion.schemas.messages import (
    MAX_BATCH_MESSAGES,
    BatchMessagesInteractedRequest,
    BatchMessagesRequest,
    BulkMessageAction,
    BulkUpdateMessagesForChannelRequest,
    ListMessageEventsResponse,
    ListMessagesResponse,
    Message,
    MessageContents,
    MessageEvent,
    MessageInteractedRequest,
)
from clarion.schemas.objects import validate_collection
from clarion.schemas.plain_responses import MessageActivities, MessageDeliveryLogs
from clarion.store.batch_activities import activities_page
from clarion.store.messages import Engagement, MessageRecord
from clarion.store.pagination import PageRequest
from clarion.store.recipient_resolution import RecipientKey, read_recipients


def _message(context: RequestContext, record: MessageRecord) -> Message:
    return Message.from_record(record, context.runtime.channels.get(record.channel_id))


def _token_user(context: RequestContext) -> RecipientKey | None:
    """The user whose messages a publishable-key request with a signed user token may act on."""
    return None if context.token_user is None else RecipientKey.user(context.token_user)


async def _record(request: Request, context: RequestContext) -> MessageRecord:
    message_id = path_param(request, "message_id")
    record = await context.runtime.messages.get(context.environment_id, message_id)
    owner = _token_user(context)
    # Another user's message is as absent to a signed user as an unknown one.
    if record is None or (owner is not None and record.recipient != owner):
        raise NotFoundError(f"No message with id {message_id!r}")
    return record


async def _list(request: Request, context: RequestContext, recipient: RecipientKey | None) -> Response:
    page = page_request(request)
    filters = message_list_filter(request, recipient=recipient)
    records, result = await context.runtime.messages.page(context.environment_id, filters, page)
    return JSONResponse(
        ListMessagesResponse(items=[_message(context, r) for r in records], page_info=page_info(result, page))
    )


async def list_messages(request: Request, context: RequestContext) -> Response:
    return await _list(request, context, None)


async def list_user_messages(request: Request, context: RequestContext) -> Response:
    return await _list(request, context, RecipientKey.user(path_param(request, "user_id")))


async def list_object_messages(request: Request, context: RequestContext) -> Response:
    collection = validate_collection(path_param(request, "collection"))
    return await _list(request, context, RecipientKey(collection, path_param(request, "id")))


async def get_message(request: Request, context: RequestContext) -> Response:
    return JSONResponse(_message(context, await _record(request, context)))


async def list_message_events(request: Request, context: RequestContext) -> Response:
    record = await _record(request, context)
    page = page_request(request)
    events, result = await context.runtime.messages.events(context.environment_id, record.id, page)
    return JSONResponse(
        ListMessageEventsResponse(
            items=[MessageEvent.from_record(event, record.recipient) for event in events],
            page_info=page_info(result, page),
        )
    )


async def list_message_activities(request: Request, context: RequestContext) -> Response:
    record = await _record(request, context)
    page = page_request(request)
    if record.batch_id is not None:
        return await _batch_activities(context, record, record.batch_id, page)
    entities = await read_recipients(
        context.runtime.database, context.environment_id, referenced_keys([record])
    )
    serialised = {key: serialise_recipient(entity) for key, entity in entities.items()}
    items = activities(record, serialised.get(record.recipient), serialised.get)
    # A message made by one trigger has one activity; the list is one page.
    return JSONResponse({"items": items[: page.page_size], "page_info": empty_page_info(page.page_size)})


async def _batch_activities(
    context: RequestContext, record: MessageRecord, batch_id: str, page: PageRequest
) -> Response:
    """A page of the activities of the batch a message was made after, oldest first."""
    database = context.runtime.database
    found, result = await activities_page(database, context.environment_id, batch_id, page)
    keys = {record.recipient, *(activity.actor for activity in found if activity.actor is not None)}
    entities = await read_recipients(database, context.environment_id, keys)
    serialised = {key: serialise_recipient(entity) for key, entity in entities.items()}
    recipient = serialised.get(record.recipient)
    items = [batch_activity(activity, recipient, serialised.get) for activity in found]
    return JSONResponse({"items": items, "page_info": page_info(result, page)})


async def get_message_content(request: Request, context: RequestContext) -> Response:
    return JSONResponse(MessageContents.from_record(await _record(request, context)))


async def batch_get_message_contents(request: Request, context: RequestContext) -> Response:
    ids = query_list(request, "message_ids")
    if not ids:
        raise InvalidInputError.field("message_ids", "is required")
    if len(ids) > MAX_BATCH_MESSAGES:
        raise InvalidInputError.field("message_ids", f"may name at most {MAX_BATCH_MESSAGES} messages")
    records = await context.runtime.messages.get_many(context.environment_id, ids)
    return JSONResponse([MessageContents.from_record(record) for record in records])


async def list_message_delivery_logs(request: Request, context: RequestContext) -> Response:
    await _record(request, context)
    page = page_request(request)
    # A delivery log records a provider call; Clarion makes none yet (docs/compatibility.md).
    return JSONResponse({"items": [], "page_info": empty_page_info(page.page_size)})


async def _set(
    context: RequestContext,
    ids: Sequence[str],
    status: Engagement,
    *,
    on: bool,
    metadata: dict[str, object] | None = None,
) -> list[Message]:
    records = await context.runtime.messages.set_engagement(
        context.environment_id, ids, status, on=on, metadata=metadata, recipient=_token_user(context)
    )
    return [_message(context, record) for record in records]


def _status_endpoint(engagement: Engagement, *, on: bool) -> Handler:
    """The handler of `PUT|DELETE /v1/messages/{message_id}/<status>` for one status."""

    async def set_status(request: Request, context: RequestContext) -> Response:
        record = await _record(request, context)
        metadata = None
        if engagement is Engagement.INTERACTED:
            raw = await read_body(request)
            metadata = parse_json(raw, MessageInteractedRequest).metadata if raw.strip() else None
        return JSONResponse((await _set(context, [record.id], engagement, on=on, metadata=metadata))[0])

    set_status.__name__ = f"{'mark' if on else 'unmark'}_message_{engagement.value}"
    return set_status


def _batch_endpoint(engagement: Engagement, *, on: bool) -> Handler:
    """The handler of `POST /v1/messages/batch/<status>` for one status."""

    async def set_statuses(request: Request, context: RequestContext) -> Response:
        if engagement is Engagement.INTERACTED:
            interacted = await read_json(request, BatchMessagesInteractedRequest)
            ids, metadata = interacted.message_ids, interacted.metadata
        else:
            ids, metadata = (await read_json(request, BatchMessagesRequest)).message_ids, None
        return JSONResponse(await _set(context, ids, engagement, on=on, metadata=metadata))

    set_statuses.__name__ = f"batch_{'mark' if on else 'unmark'}_messages_{engagement.value}"
    return set_statuses


async def bulk_update_channel_messages(request: Request, context: RequestContext) -> Response:
    name = path_param(request, "action")
    try:
        action = BulkMessageAction(name)
    except ValueError:
        choices = ", ".join(action.value for action in BulkMessageAction)
        raise InvalidInputError.field("action", f"must be one of: {choices}") from None
    channel_id = path_param(request, "channel_id")
    channel = context.runtime.channels.get(channel_id)
    if channel is None:
        raise NotFoundError(f"No channel with id {channel_id!r} is configured", code="channel_invalid")
    raw = await read_body(request)
    # Knock's Node SDK posts no body at all: that is no filter.
    body = (
        parse_json(raw, BulkUpdateMessagesForChannelRequest)
        if raw.strip()
        else BulkUpdateMessagesForChannelRequest()
    )
    if context.token_user is not None:
        # A signed user changes its own messages only, whoever the filters name.
        body = body.model_copy(update={"user_ids": [context.token_user], "recipient_ids": None})
    operation = await start_message_update(context.runtime, context.environment_id, channel.id, action, body)
    return bulk_operation_response(request, operation)


STATUS_PATHS: list[tuple[str, str, Engagement, bool]] = [
    ("PUT", "seen", Engagement.SEEN, True),
    ("PUT", "read", Engagement.READ, True),
    ("PUT", "archived", Engagement.ARCHIVED, True),
    ("PUT", "interacted", Engagement.INTERACTED, True),
    ("DELETE", "seen", Engagement.SEEN, False),
    ("DELETE", "read", Engagement.READ, False),
    ("DELETE", "archived", Engagement.ARCHIVED, False),
    ("DELETE", "unseen", Engagement.SEEN, False),
    ("DELETE", "unread", Engagement.READ, False),
    ("DELETE", "unarchived", Engagement.ARCHIVED, False),
]
"""(method, path status, engagement, set or unset): Knock's single-message status endpoints."""

BATCH_PATHS: list[tuple[str, Engagement, bool]] = [
    ("seen", Engagement.SEEN, True),
    ("unseen", Engagement.SEEN, False),
    ("read", Engagement.READ, True),
    ("unread", Engagement.READ, False),
    ("archived", Engagement.ARCHIVED, True),
    ("unarchived", Engagement.ARCHIVED, False),
    ("interacted", Engagement.INTERACTED, True),
]


routes = [
    route(
        "/v1/messages",
        "GET",
        list_messages,
        tier=4,
        query=[*PAGINATION, *MESSAGE_FILTERS],
        response=ListMessagesResponse,
    ),
    route(
        "/v1/messages/batch/content",
        "GET",
        batch_get_message_contents,
        tier=4,
        query=[QueryParameter("message_ids[]", list[str], f"The messages, 1 to {MAX_BATCH_MESSAGES}.")],
        response=list[MessageContents],
    ),
    *(
        route(
            f"/v1/messages/batch/{name}",
            "POST",
            _batch_endpoint(engagement, on=on),
            tier=3,
            client=True,
            body=BatchMessagesInteractedRequest
            if engagement is Engagement.INTERACTED
            else BatchMessagesRequest,
            response=list[Message],
        )
        for name, engagement, on in BATCH_PATHS
    ),
    route("/v1/messages/{message_id}", "GET", get_message, tier=4, response=Message),
    route(
        "/v1/messages/{message_id}/events",
        "GET",
        list_message_events,
        tier=3,
        query=PAGINATION,
        response=ListMessageEventsResponse,
    ),
    route(
        "/v1/messages/{message_id}/activities",
        "GET",
        list_message_activities,
        tier=4,
        query=PAGINATION,
        response=MessageActivities,
        note="A message made after a batch step pages through the batch's activities; any other has the one"
        " trigger that made it.",
    ),
    route("/v1/messages/{message_id}/content", "GET", get_message_content, tier=4, response=MessageContents),
    route(
        "/v1/messages/{message_id}/delivery_logs",
        "GET",
        list_message_delivery_logs,
        tier=3,
        query=PAGINATION,
        response=MessageDeliveryLogs,
        note="Always empty: Clarion does not deliver through providers yet.",
    ),
    *(
        route(
            f"/v1/messages/{{message_id}}/{name}",
            method,
            _status_endpoint(engagement, on=on),
            tier=2,
            client=True,
            body=MessageInteractedRequest | None if engagement is Engagement.INTERACTED and on else None,
            response=Message,
        )
        for method, name, engagement, on in STATUS_PATHS
    ),
    route(
        "/v1/channels/{channel_id}/messages/bulk/{action}",
        "POST",
        bulk_update_channel_messages,
        tier=2,
        client=True,
        body=BulkUpdateMessagesForChannelRequest | None,
        response=BulkOperation,
        note="`action` is one of seen, unseen, read, unread, archived, unarchived, interacted, archive,"
        " unarchive, delete. `user_ids` and `recipient_ids` both name users; no body selects every message.",
    ),
    route(
        "/v1/users/{user_id}/messages",
        "GET",
        list_user_messages,
        tier=4,
        query=[*PAGINATION, *MESSAGE_FILTERS],
        response=ListMessagesResponse,
    ),
    route(
        "/v1/objects/{collection}/{id}/messages",
        "GET",
        list_object_messages,
        tier=4,
        query=[*PAGINATION, *MESSAGE_FILTERS],
        response=ListMessagesResponse,
    ),
]

"""Subscriptions: add, delete and list an object's subscriptions, and list a user's
(`/v1/objects/{collection}/{object_id}/subscriptions`, `/v1/users/{user_id}/subscriptions`).

Bulk add and delete (`/v1/objects/{collection}/bulk/subscriptions/…`) answer with a queued bulk operation run
on the job queue (`clarion.engine.bulk`, through `SubscriptionStore.add_many/delete_many`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import field_errors, read_json
from clarion.api.contract import PAGINATION, QueryParameter
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.pagination import page_info, page_request
from clarion.api.query import query_references
from clarion.api.responses import JSONResponse
from clarion.api.routes.bulk_operations import bulk_operation_response
from clarion.engine.bulk import BulkKind, start_bulk_operation
from clarion.errors import FieldError, InvalidInputError
from clarion.schemas.bulk_operations import (
    BulkDeleteSubscriptionsRequest,
    BulkOperation,
    BulkUpsertSubscriptionsRequest,
    check_subscription_recipients,
)
from clarion.schemas.objects import validate_collection
from clarion.schemas.recipient_references import (
    ObjectReference,
    RecipientReference,
    recipient_inputs,
    recipient_key,
)
from clarion.schemas.subscriptions import (
    DeleteSubscriptionsRequest,
    ListSubscriptionsResponse,
    Subscription,
    UpsertSubscriptionsRequest,
)
from clarion.store.pagination import Page, PageRequest
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.subscriptions import SubscriptionRecord

_RECIPIENT_REFERENCES = TypeAdapter(list[RecipientReference])
_OBJECT_REFERENCES = TypeAdapter(list[ObjectReference])
_MODES = ("object", "recipient")


def object_key(request: Request) -> RecipientKey:
    collection = validate_collection(request.path_params["collection"])
    return RecipientKey(collection, path_param(request, "object_id"))


def reference_filter(
    request: Request,
    name: str,
    adapter: TypeAdapter[list[str | ObjectReference]] | TypeAdapter[list[ObjectReference]],
) -> list[RecipientKey] | None:
    """The `name[]` filter as recipient keys, or None when the query does not filter on it."""
    raw = query_references(request, name)
    if not raw:
        return None
    try:
        references = adapter.validate_python(raw, strict=True)
    except ValidationError as exc:
        errors = [
            FieldError(f"{name}.{error.field}", error.message, error.type) for error in field_errors(exc)
        ]
        raise InvalidInputError(errors=errors) from exc
    return [recipient_key(reference) for reference in references]


def list_response(records: list[SubscriptionRecord], result: Page, page: PageRequest) -> Response:
    return JSONResponse(
        ListSubscriptionsResponse(
            entries=[Subscription.from_record(record) for record in records],
            page_info=page_info(result, page),
        )
    )


async def list_subscriptions(request: Request, context: RequestContext) -> Response:
    subscribed_to = object_key(request)
    mode = request.query_params.get("mode", "object")
    if mode not in _MODES:
        raise InvalidInputError.field("mode", "must be one of: object, recipient")
    page = page_request(request)
    store = context.runtime.subscriptions
    if mode == "recipient":
        objects = reference_filter(request, "objects", _OBJECT_REFERENCES)
        records, result = await store.page_subscriptions(context.environment_id, subscribed_to, page, objects)
    else:
        recipients = reference_filter(request, "recipients", _RECIPIENT_REFERENCES)
        records, result = await store.page_subscribers(
            context.environment_id, subscribed_to, page, recipients
        )
    return list_response(records, result, page)


async def list_user_subscriptions(request: Request, context: RequestContext) -> Response:
    user = RecipientKey.user(path_param(request, "user_id"))
    page = page_request(request)
    objects = reference_filter(request, "objects", _RECIPIENT_REFERENCES)
    records, result = await context.runtime.subscriptions.page_subscriptions(
        context.environment_id, user, page, objects
    )
    return list_response(records, result, page)


async def add_subscriptions(request: Request, context: RequestContext) -> Response:
    subscribed_to = object_key(request)
    body = await read_json(request, UpsertSubscriptionsRequest)
    records = await context.runtime.subscriptions.add(
        context.environment_id,
        subscribed_to.collection,
        subscribed_to.id,
        recipient_inputs(body.recipients, context.runtime.channels),
        body.properties,
    )
    return JSONResponse([Subscription.from_record(record).to_wire() for record in records])


async def delete_subscriptions(request: Request, context: RequestContext) -> Response:
    subscribed_to = object_key(request)
    body = await read_json(request, DeleteSubscriptionsRequest)
    records = await context.runtime.subscriptions.delete(
        context.environment_id,
        subscribed_to.collection,
        subscribed_to.id,
        [recipient_key(reference) for reference in body.recipients],
    )
    return JSONResponse([Subscription.from_record(record).to_wire() for record in records])


async def bulk_add_subscriptions(request: Request, context: RequestContext) -> Response:
    collection = validate_collection(request.path_params["collection"])
    body = await read_json(request, BulkUpsertSubscriptionsRequest)
    check_subscription_recipients(context.runtime.channels, body.subscriptions)
    rows = [entry.model_dump(mode="json", by_alias=True, exclude_unset=True) for entry in body.subscriptions]
    operation = await start_bulk_operation(
        context.runtime,
        context.environment_id,
        BulkKind.OBJECTS_ADD_SUBSCRIPTIONS,
        rows,
        {"collection": collection},
    )
    return bulk_operation_response(request, operation)


async def bulk_delete_subscriptions(request: Request, context: RequestContext) -> Response:
    collection = validate_collection(request.path_params["collection"])
    body = await read_json(request, BulkDeleteSubscriptionsRequest)
    rows = [entry.model_dump(mode="json", by_alias=True, exclude_unset=True) for entry in body.subscriptions]
    operation = await start_bulk_operation(
        context.runtime,
        context.environment_id,
        BulkKind.OBJECTS_DELETE_SUBSCRIPTIONS,
        rows,
        {"collection": collection},
    )
    return bulk_operation_response(request, operation)


routes = [
    route(
        "/v1/objects/{collection}/bulk/subscriptions/add",
        "POST",
        bulk_add_subscriptions,
        tier=1,
        body=BulkUpsertSubscriptionsRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/objects/{collection}/bulk/subscriptions/delete",
        "POST",
        bulk_delete_subscriptions,
        tier=1,
        body=BulkDeleteSubscriptionsRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/objects/{collection}/{object_id}/subscriptions",
        "GET",
        list_subscriptions,
        tier=4,
        query=[
            *PAGINATION,
            QueryParameter(
                "mode", Literal["object", "recipient"], "The object's subscribers, or its subscriptions."
            ),
            QueryParameter(
                "recipients[]", list[str], "Only these subscribers (users by id), in `object` mode."
            ),
            QueryParameter("objects[]", list[str], "Only these objects, in `recipient` mode."),
            QueryParameter("include[]", list[str], "Accepted and ignored."),
        ],
        response=ListSubscriptionsResponse,
    ),
    route(
        "/v1/objects/{collection}/{object_id}/subscriptions",
        "POST",
        add_subscriptions,
        tier=3,
        body=UpsertSubscriptionsRequest,
        response=list[Subscription],
    ),
    route(
        "/v1/objects/{collection}/{object_id}/subscriptions",
        "DELETE",
        delete_subscriptions,
        tier=3,
        body=DeleteSubscriptionsRequest,
        response=list[Subscription],
    ),
    route(
        "/v1/users/{user_id}/subscriptions",
        "GET",
        list_user_subscriptions,
        tier=4,
        query=[*PAGINATION, QueryParameter("objects[]", list[str], "Only subscriptions to these objects.")],
        response=ListSubscriptionsResponse,
    ),
]

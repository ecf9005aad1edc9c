"""Preference sets of users and objects: list, get, replace or merge, update one section or one key, delete
(`/v1/users/{user_id}/preferences…` and `/v1/objects/{collection}/{object_id}/preferences…`).

One handler serves both kinds of recipient; the path says which. Reading a set that was never written gives
an empty set with its id, and `?tenant=` lays that tenant's default set under it. Writing creates a missing
user or object, as Knock does. Bulk set of user preferences lives in the bulk operations module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import read_json
from clarion.api.contract import QueryParameter
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.query import query_choices
from clarion.api.responses import JSONResponse, no_content
from clarion.errors import InvalidInputError
from clarion.schemas.objects import validate_collection
from clarion.schemas.preferences import (
    CHANNEL_TYPES,
    ChannelTypeSettingRequest,
    PreferenceSet,
    PreferenceSetChannelTypes,
    PreferenceSetRequest,
    PreferenceSetWorkflows,
    WorkflowCategorySettingRequest,
)
from clarion.store.preferences import DEFAULT_SET_ID, PersistenceStrategy
from clarion.store.tables import USERS_COLLECTION


def _recipient(request: Request) -> tuple[str, str]:
    if "user_id" in request.path_params:
        return USERS_COLLECTION, path_param(request, "user_id")
    return validate_collection(request.path_params["collection"]), path_param(request, "object_id")


async def included_preferences(
    request: Request, context: RequestContext, collection: str, recipient_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """For `include[]=preferences` on the user and object lists: the extra `preferences` entry (the default
    set) of each listed recipient, read in one batch; nothing when the list did not ask for it."""
    if "preferences" not in query_choices(request, "include", frozenset({"preferences"})):
        return {}
    records = await context.runtime.preferences.get_many(
        context.environment_id, collection, recipient_ids, DEFAULT_SET_ID
    )
    return {
        recipient_id: {"preferences": PreferenceSet.from_record(record).to_wire()}
        for recipient_id, record in records.items()
    }


async def list_preference_sets(request: Request, context: RequestContext) -> Response:
    collection, recipient_id = _recipient(request)
    records = await context.runtime.preferences.list_sets(context.environment_id, collection, recipient_id)
    return JSONResponse([PreferenceSet.from_record(record).to_wire() for record in records])


async def get_preference_set(request: Request, context: RequestContext) -> Response:
    collection, recipient_id = _recipient(request)
    tenant = request.query_params.get("tenant") or None
    if tenant is not None and len(tenant) > 255:
        raise InvalidInputError.field("tenant", "must be at most 255 characters")
    record = await context.runtime.preferences.get(
        context.environment_id, collection, recipient_id, path_param(request, "id"), tenant=tenant
    )
    return JSONResponse(PreferenceSet.from_record(record))


async def update_preference_set(request: Request, context: RequestContext) -> Response:
    collection, recipient_id = _recipient(request)
    set_id = path_param(request, "id")
    body = await read_json(request, PreferenceSetRequest)
    record = await context.runtime.preferences.write(
        context.environment_id,
        collection,
        recipient_id,
        set_id,
        body.body(),
        body.persistence_strategy or PersistenceStrategy.REPLACE,
    )
    return JSONResponse(PreferenceSet.from_record(record))


async def delete_preference_set(request: Request, context: RequestContext) -> Response:
    collection, recipient_id = _recipient(request)
    await context.runtime.preferences.delete(
        context.environment_id, collection, recipient_id, path_param(request, "id")
    )
    return no_content()


async def _write_at(request: Request, context: RequestContext, path: Sequence[str], value: Any) -> Response:
    collection, recipient_id = _recipient(request)
    record = await context.runtime.preferences.write_at(
        context.environment_id, collection, recipient_id, path_param(request, "id"), path, value
    )
    return JSONResponse(PreferenceSet.from_record(record))


async def update_workflows(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, PreferenceSetWorkflows)
    return await _write_at(request, context, ["workflows"], body.body())


async def update_workflow(request: Request, context: RequestContext) -> Response:
    key = path_param(request, "key")
    body = await read_json(request, WorkflowCategorySettingRequest)
    return await _write_at(request, context, ["workflows", key], body.setting())


async def update_categories(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, PreferenceSetWorkflows)
    return await _write_at(request, context, ["categories"], body.body())


async def update_category(request: Request, context: RequestContext) -> Response:
    key = path_param(request, "key")
    body = await read_json(request, WorkflowCategorySettingRequest)
    return await _write_at(request, context, ["categories", key], body.setting())


async def update_channel_types(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, PreferenceSetChannelTypes)
    value = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return await _write_at(request, context, ["channel_types"], value)


async def update_channel_type(request: Request, context: RequestContext) -> Response:
    channel_type = path_param(request, "type")
    if channel_type not in CHANNEL_TYPES:
        raise InvalidInputError.field("type", f"must be one of: {', '.join(sorted(CHANNEL_TYPES))}")
    body = await read_json(request, ChannelTypeSettingRequest)
    return await _write_at(request, context, ["channel_types", channel_type], body.setting())


USER_SETS = "/v1/users/{user_id}/preferences"
OBJECT_SETS = "/v1/objects/{collection}/{object_id}/preferences"
TENANT = (QueryParameter("tenant", str, "A tenant whose default preference set lies under the recipient's."),)
SECTION_NOTE = (
    "Deprecated in Knock, whose document leaves the body out; Clarion reads the body the SDKs send."
)

routes = [
    route(USER_SETS, "GET", list_preference_sets, tier=4, client=True, response=list[PreferenceSet]),
    route(
        USER_SETS + "/{id}",
        "GET",
        get_preference_set,
        tier=4,
        client=True,
        query=TENANT,
        response=PreferenceSet,
    ),
    route(
        USER_SETS + "/{id}",
        "PUT",
        update_preference_set,
        tier=3,
        client=True,
        body=PreferenceSetRequest,
        response=PreferenceSet,
    ),
    route(USER_SETS + "/{id}", "DELETE", delete_preference_set, tier=3),
    route(OBJECT_SETS, "GET", list_preference_sets, tier=4, response=list[PreferenceSet]),
    route(OBJECT_SETS + "/{id}", "GET", get_preference_set, tier=4, query=TENANT, response=PreferenceSet),
    route(
        OBJECT_SETS + "/{id}",
        "PUT",
        update_preference_set,
        tier=3,
        body=PreferenceSetRequest,
        response=PreferenceSet,
    ),
    route(OBJECT_SETS + "/{id}", "DELETE", delete_preference_set, tier=3),
]
# Knock's browser SDK updates a user's set section by section with the publishable key, so the user
# routes are client-side; the object ones are not.
for prefix, client in ((USER_SETS, True), (OBJECT_SETS, False)):
    routes += [
        route(
            prefix + "/{id}/workflows",
            "PUT",
            update_workflows,
            tier=3,
            client=client,
            body=PreferenceSetWorkflows,
            response=PreferenceSet,
            note=SECTION_NOTE,
        ),
        route(
            prefix + "/{id}/workflows/{key}",
            "PUT",
            update_workflow,
            tier=3,
            client=client,
            body=WorkflowCategorySettingRequest,
            response=PreferenceSet,
            note=SECTION_NOTE,
        ),
        route(
            prefix + "/{id}/categories",
            "PUT",
            update_categories,
            tier=3,
            client=client,
            body=PreferenceSetWorkflows,
            response=PreferenceSet,
            note=SECTION_NOTE,
        ),
        route(
            prefix + "/{id}/categories/{key}",
            "PUT",
            update_category,
            tier=3,
            client=client,
            body=WorkflowCategorySettingRequest,
            response=PreferenceSet,
            note=SECTION_NOTE,
        ),
        route(
            prefix + "/{id}/channel_types",
            "PUT",
            update_channel_types,
            tier=3,
            client=client,
            body=PreferenceSetChannelTypes,
            response=PreferenceSet,
            note=SECTION_NOTE,
        ),
        route(
            prefix + "/{id}/channel_types/{type}",
            "PUT",
            update_channel_type,
            tier=3,
            client=client,
            body=ChannelTypeSettingRequest,
            response=PreferenceSet,
            note=SECTION_NOTE,
        ),
    ]

"""Users: identify, get, list, delete and merge (`/v1/users…`), and the bulk identify, delete and set
preferences operations (`/v1/users/bulk/…`, run on the job queue by `clarion.engine.bulk`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import read_json
from clarion.api.contract import INCLUDE_PREFERENCES, PAGINATION
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.pagination import page_info, page_request
from clarion.api.responses import JSONResponse, no_content
from clarion.api.routes.bulk_operations import bulk_operation_response
from clarion.api.routes.preferences import included_preferences
from clarion.engine.bulk import BulkKind, start_bulk_operation
from clarion.schemas.bulk_operations import (
    BulkOperation,
    BulkSetUserPreferencesRequest,
    check_inline_channel_data,
)
from clarion.schemas.channel_data import validate_inline_channel_data
from clarion.schemas.users import (
    BulkDeleteUsersRequest,
    BulkIdentifyUsersRequest,
    IdentifyUserRequest,
    ListUsersResponse,
    MergeUserRequest,
    User,
)
from clarion.store.preferences import DEFAULT_SET_ID
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import USERS_COLLECTION


async def list_users(request: Request, context: RequestContext) -> Response:
    page = page_request(request)
    records, result = await context.runtime.users.page(context.environment_id, page)
    included = await included_preferences(request, context, USERS_COLLECTION, [r.id for r in records])
    return JSONResponse(
        ListUsersResponse(
            entries=[User.from_record(r, **included.get(r.id, {})) for r in records],
            page_info=page_info(result, page),
        )
    )


async def get_user(request: Request, context: RequestContext) -> Response:
    record = await context.runtime.users.get(context.environment_id, path_param(request, "user_id"))
    return JSONResponse(User.from_record(record))


async def identify_user(request: Request, context: RequestContext) -> Response:
    user_id = path_param(request, "user_id")
    body = await read_json(request, IdentifyUserRequest)
    channel_data = validate_inline_channel_data(context.runtime.channels, body.channel_data)
    record = await context.runtime.users.identify(
        context.environment_id,
        user_id,
        body.properties(),
        InlineRecipientData(channel_data=channel_data, preferences=body.preferences),
    )
    return JSONResponse(User.from_record(record))


async def delete_user(request: Request, context: RequestContext) -> Response:
    await context.runtime.users.delete(context.environment_id, path_param(request, "user_id"))
    return no_content()


async def merge_user(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, MergeUserRequest)
    record = await context.runtime.users.merge(
        context.environment_id, path_param(request, "user_id"), body.from_user_id
    )
    return JSONResponse(User.from_record(record))


async def bulk_identify_users(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, BulkIdentifyUsersRequest)
    check_inline_channel_data(context.runtime.channels, body.users, field="users")
    rows = [user.model_dump(mode="json", by_alias=True, exclude_unset=True) for user in body.users]
    operation = await start_bulk_operation(
        context.runtime, context.environment_id, BulkKind.USERS_IDENTIFY, rows
    )
    return bulk_operation_response(request, operation)


async def bulk_delete_users(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, BulkDeleteUsersRequest)
    operation = await start_bulk_operation(
        context.runtime, context.environment_id, BulkKind.USERS_DELETE, list(body.user_ids)
    )
    return bulk_operation_response(request, operation)


async def bulk_set_user_preferences(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, BulkSetUserPreferencesRequest)
    params = {"set_id": body.preferences.id or DEFAULT_SET_ID, "preferences": body.preferences.body()}
    operation = await start_bulk_operation(
        context.runtime, context.environment_id, BulkKind.USERS_SET_PREFERENCES, list(body.user_ids), params
    )
    return bulk_operation_response(request, operation)


routes = [
    route(
        "/v1/users/bulk/identify",
        "POST",
        bulk_identify_users,
        tier=1,
        body=BulkIdentifyUsersRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/users/bulk/delete",
        "POST",
        bulk_delete_users,
        tier=1,
        body=BulkDeleteUsersRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/users/bulk/preferences",
        "POST",
        bulk_set_user_preferences,
        tier=1,
        body=BulkSetUserPreferencesRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/users",
        "GET",
        list_users,
        tier=4,
        query=(*PAGINATION, INCLUDE_PREFERENCES),
        response=ListUsersResponse,
    ),
    route("/v1/users/{user_id}", "GET", get_user, tier=4, client=True, response=User),
    route(
        "/v1/users/{user_id}",
        "PUT",
        identify_user,
        tier=3,
        client=True,
        body=IdentifyUserRequest,
        response=User,
    ),
    route("/v1/users/{user_id}", "DELETE", delete_user, tier=2),
    route("/v1/users/{user_id}/merge", "POST", merge_user, tier=2, body=MergeUserRequest, response=User),
]

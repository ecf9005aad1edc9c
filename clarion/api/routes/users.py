"""Users: identify, get, list, delete and merge (`/v1/users…`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import read_json
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.pagination import page_info, page_request
from clarion.api.responses import JSONResponse, no_content
from clarion.schemas.users import IdentifyUserRequest, ListUsersResponse, MergeUserRequest, User
from clarion.store.recipients import InlineRecipientData


async def list_users(request: Request, context: RequestContext) -> Response:
    page = page_request(request)
    records, result = await context.runtime.users.page(context.environment_id, page)
    return JSONResponse(
        ListUsersResponse(entries=[User.from_record(r) for r in records], page_info=page_info(result, page))
    )


async def get_user(request: Request, context: RequestContext) -> Response:
    record = await context.runtime.users.get(context.environment_id, path_param(request, "user_id"))
    return JSONResponse(User.from_record(record))


async def identify_user(request: Request, context: RequestContext) -> Response:
    user_id = path_param(request, "user_id")
    body = await read_json(request, IdentifyUserRequest)
    record = await context.runtime.users.identify(
        context.environment_id,
        user_id,
        body.properties(),
        InlineRecipientData(channel_data=body.channel_data, preferences=body.preferences),
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


routes = [
    route("/v1/users", "GET", list_users, tier=4),
    route("/v1/users/{user_id}", "GET", get_user, tier=4, client=True),
    route("/v1/users/{user_id}", "PUT", identify_user, tier=3, client=True),
    route("/v1/users/{user_id}", "DELETE", delete_user, tier=2),
    route("/v1/users/{user_id}/merge", "POST", merge_user, tier=2),
]

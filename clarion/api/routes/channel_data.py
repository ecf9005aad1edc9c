"""Channel data of users and objects: get, set and unset (`/v1/users/{user_id}/channel_data/{channel_id}`,
`/v1/objects/{collection}/{object_id}/channel_data/{channel_id}`).

The channel must be configured (`clarion.channels`): an unknown id is a 404 `channel_invalid`, a malformed one
a 422. Setting creates the user or object when it does not exist, as Knock does; getting data that is not set
is a 404; unsetting is idempotent. Publishable keys may use the user routes only.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import read_json
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.responses import JSONResponse, no_content
from clarion.api.routes.objects import collection_param
from clarion.channels import Channel, canonical_uuid
from clarion.errors import InvalidInputError, NotFoundError
from clarion.schemas.channel_data import ChannelData, ChannelDataRequest, validate_channel_data
from clarion.store.tables import USERS_COLLECTION


def _channel(request: Request, context: RequestContext) -> Channel:
    raw: str = request.path_params["channel_id"]
    if canonical_uuid(raw) is None:
        raise InvalidInputError.field("channel_id", "must be a UUID")
    channel = context.runtime.channels.get(raw)
    if channel is None:
        raise NotFoundError(
            f"The channel {raw!r} is not configured in this installation", code="channel_invalid"
        )
    return channel


async def _get(request: Request, context: RequestContext, collection: str, recipient_id: str) -> Response:
    channel = _channel(request, context)
    record = await context.runtime.channel_data.find(
        context.environment_id, collection, recipient_id, channel.id
    )
    if record is None:
        raise NotFoundError(f"No channel data is set for the channel {channel.id!r} on {recipient_id!r}")
    return JSONResponse(ChannelData.of(channel, record.data))


async def _set(request: Request, context: RequestContext, collection: str, recipient_id: str) -> Response:
    channel = _channel(request, context)
    body = await read_json(request, ChannelDataRequest)
    data = validate_channel_data(channel, body.data)
    record = await context.runtime.channel_data.set(
        context.environment_id, collection, recipient_id, channel.id, data
    )
    return JSONResponse(ChannelData.of(channel, record.data))


async def _unset(request: Request, context: RequestContext, collection: str, recipient_id: str) -> Response:
    channel = _channel(request, context)
    await context.runtime.channel_data.unset(context.environment_id, collection, recipient_id, channel.id)
    return no_content()


async def get_user_channel_data(request: Request, context: RequestContext) -> Response:
    return await _get(request, context, USERS_COLLECTION, path_param(request, "user_id"))


async def set_user_channel_data(request: Request, context: RequestContext) -> Response:
    return await _set(request, context, USERS_COLLECTION, path_param(request, "user_id"))


async def unset_user_channel_data(request: Request, context: RequestContext) -> Response:
    return await _unset(request, context, USERS_COLLECTION, path_param(request, "user_id"))


async def get_object_channel_data(request: Request, context: RequestContext) -> Response:
    return await _get(request, context, collection_param(request), path_param(request, "object_id"))


async def set_object_channel_data(request: Request, context: RequestContext) -> Response:
    return await _set(request, context, collection_param(request), path_param(request, "object_id"))


async def unset_object_channel_data(request: Request, context: RequestContext) -> Response:
    return await _unset(request, context, collection_param(request), path_param(request, "object_id"))


USER_PATH = "/v1/users/{user_id}/channel_data/{channel_id}"
OBJECT_PATH = "/v1/objects/{collection}/{object_id}/channel_data/{channel_id}"

routes = [
    route(USER_PATH, "GET", get_user_channel_data, tier=4, client=True, response=ChannelData),
    route(
        USER_PATH,
        "PUT",
        set_user_channel_data,
        tier=3,
        client=True,
        body=ChannelDataRequest,
        response=ChannelData,
    ),
    route(USER_PATH, "DELETE", unset_user_channel_data, tier=3, client=True),
    route(OBJECT_PATH, "GET", get_object_channel_data, tier=4, response=ChannelData),
    route(OBJECT_PATH, "PUT", set_object_channel_data, tier=3, body=ChannelDataRequest, response=ChannelData),
    route(OBJECT_PATH, "DELETE", unset_object_channel_data, tier=3),
]

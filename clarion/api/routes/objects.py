"""Objects: set, get, list and delete (`/v1/objects/{collection}…`).

Every route checks the collection name first (`clarion.schemas.objects.validate_collection`). Bulk set and
delete answer with a queued bulk operation run on the job queue (`clarion.engine.bulk`); channel data on
objects is in `clarion.api.routes.channel_data`.
"""

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
    BulkDeleteObjectsRequest,
    BulkOperation,
    BulkSetObjectsRequest,
    check_inline_channel_data,
)
from clarion.schemas.channel_data import validate_inline_channel_data
from clarion.schemas.objects import ListObjectsResponse, Object, SetObjectRequest, validate_collection
from clarion.store.recipients import InlineRecipientData


def collection_param(request: Request) -> str:
    return validate_collection(request.path_params["collection"])


async def list_objects(request: Request, context: RequestContext) -> Response:
    collection = collection_param(request)
    page = page_request(request)
    records, result = await context.runtime.objects.page(context.environment_id, collection, page)
    included = await included_preferences(request, context, collection, [r.id for r in records])
    return JSONResponse(
        ListObjectsResponse(
            entries=[Object.from_record(r, **included.get(r.id, {})) for r in records],
            page_info=page_info(result, page),
        )
    )


async def get_object(request: Request, context: RequestContext) -> Response:
    collection = collection_param(request)
    record = await context.runtime.objects.get(context.environment_id, collection, path_param(request, "id"))
    return JSONResponse(Object.from_record(record))


async def set_object(request: Request, context: RequestContext) -> Response:
    collection = collection_param(request)
    object_id = path_param(request, "id")
    body = await read_json(request, SetObjectRequest)
    channel_data = validate_inline_channel_data(context.runtime.channels, body.channel_data)
    record = await context.runtime.objects.set(
        context.environment_id,
        collection,
        object_id,
        body.properties(),
        InlineRecipientData(channel_data=channel_data, preferences=body.preferences),
    )
    return JSONResponse(Object.from_record(record))


async def delete_object(request: Request, context: RequestContext) -> Response:
    collection = collection_param(request)
    await context.runtime.objects.delete(context.environment_id, collection, path_param(request, "id"))
    return no_content()


async def bulk_set_objects(request: Request, context: RequestContext) -> Response:
    collection = collection_param(request)
    body = await read_json(request, BulkSetObjectsRequest)
    check_inline_channel_data(context.runtime.channels, body.objects, field="objects")
    rows = [entry.model_dump(mode="json", by_alias=True, exclude_unset=True) for entry in body.objects]
    operation = await start_bulk_operation(
        context.runtime, context.environment_id, BulkKind.OBJECTS_SET, rows, {"collection": collection}
    )
    return bulk_operation_response(request, operation)


async def bulk_delete_objects(request: Request, context: RequestContext) -> Response:
    collection = collection_param(request)
    body = await read_json(request, BulkDeleteObjectsRequest)
    operation = await start_bulk_operation(
        context.runtime,
        context.environment_id,
        BulkKind.OBJECTS_DELETE,
        list(body.object_ids),
        {"collection": collection},
    )
    return bulk_operation_response(request, operation)


routes = [
    route(
        "/v1/objects/{collection}/bulk/set",
        "POST",
        bulk_set_objects,
        tier=1,
        body=BulkSetObjectsRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/objects/{collection}/bulk/delete",
        "POST",
        bulk_delete_objects,
        tier=1,
        body=BulkDeleteObjectsRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/objects/{collection}",
        "GET",
        list_objects,
        tier=4,
        query=(*PAGINATION, INCLUDE_PREFERENCES),
        response=ListObjectsResponse,
    ),
    route("/v1/objects/{collection}/{id}", "GET", get_object, tier=4, response=Object),
    route("/v1/objects/{collection}/{id}", "PUT", set_object, tier=3, body=SetObjectRequest, response=Object),
    route("/v1/objects/{collection}/{id}", "DELETE", delete_object, tier=3),
]

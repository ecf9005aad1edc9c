"""Audience members: add, list and remove (`/v1/audiences/{key}/members`); the members of a dynamic
audience are listed but not added or removed (`clarion.store.audiences`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import read_json
from clarion.api.contract import PAGINATION, flag
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.pagination import page_info, page_request
from clarion.api.query import query_bool
from clarion.api.responses import JSONResponse, no_content
from clarion.schemas.audiences import (
    AddAudienceMembersRequest,
    AudienceMember,
    ListAudienceMembersResponse,
    RemoveAudienceMembersRequest,
    member_inputs,
)

DYNAMIC_NOTE = (
    "A dynamic audience's members follow their users' properties: adding or removing them is a 422."
)


async def list_members(request: Request, context: RequestContext) -> Response:
    page = page_request(request)
    records, result = await context.runtime.audiences.page_members(
        context.environment_id, path_param(request, "key"), page
    )
    return JSONResponse(
        ListAudienceMembersResponse(
            entries=[AudienceMember.from_record(record) for record in records],
            page_info=page_info(result, page),
        )
    )


async def add_members(request: Request, context: RequestContext) -> Response:
    key = path_param(request, "key")
    create_audience = query_bool(request, "create_audience")
    body = await read_json(request, AddAudienceMembersRequest)
    await context.runtime.audiences.add_members(
        context.environment_id,
        key,
        member_inputs(body.members, context.runtime.channels),
        create_audience=create_audience,
    )
    return no_content()


async def remove_members(request: Request, context: RequestContext) -> Response:
    key = path_param(request, "key")
    body = await read_json(request, RemoveAudienceMembersRequest)
    await context.runtime.audiences.remove_members(
        context.environment_id, key, [member.key() for member in body.members]
    )
    return no_content()


routes = [
    route(
        "/v1/audiences/{key}/members",
        "GET",
        list_members,
        tier=4,
        query=PAGINATION,
        response=ListAudienceMembersResponse,
    ),
    route(
        "/v1/audiences/{key}/members",
        "POST",
        add_members,
        tier=3,
        query=[flag("create_audience", "Create the audience when it does not exist (a static audience).")],
        body=AddAudienceMembersRequest,
        note=DYNAMIC_NOTE,
    ),
    route(
        "/v1/audiences/{key}/members",
        "DELETE",
        remove_members,
        tier=3,
        body=RemoveAudienceMembersRequest,
        note=DYNAMIC_NOTE,
    ),
]

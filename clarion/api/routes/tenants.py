"""Tenants: list, get, set and delete (`/v1/tenants…`), and bulk set and delete, which answer with a queued
bulk operation run on the job queue (`clarion.engine.bulk`). A tenant's default preference set is written
here through `settings.preference_set`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import read_json
from clarion.api.contract import PAGINATION, QueryParameter, flag
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.pagination import page_info, page_request
from clarion.api.query import query_bool, query_list
from clarion.api.responses import JSONResponse, no_content
from clarion.api.routes.bulk_operations import bulk_operation_response
from clarion.engine.bulk import BulkKind, start_bulk_operation
from clarion.errors import InvalidInputError
from clarion.schemas.bulk_operations import (
    MAX_BULK_ENTRIES,
    BulkOperation,
    BulkSetTenantsRequest,
    check_inline_channel_data,
)
from clarion.schemas.channel_data import validate_inline_channel_data
from clarion.schemas.tenants import ListTenantsResponse, SetTenantRequest, Tenant


def _filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and len(value) > 255:
        raise InvalidInputError.field(name, "must be at most 255 characters")
    return value or None


def _check_resolve_flag(request: Request) -> None:
    # `resolve_full_preference_settings` lays the environment default set under the tenant's. Clarion has
    # no environment default set, so the resolved set is the tenant's own; the flag is only validated.
    query_bool(request, "resolve_full_preference_settings")


async def list_tenants(request: Request, context: RequestContext) -> Response:
    page = page_request(request)
    records, result = await context.runtime.tenants.page(
        context.environment_id, page, name=_filter(request, "name"), tenant_id=_filter(request, "tenant_id")
    )
    return JSONResponse(
        ListTenantsResponse(
            entries=[Tenant.from_record(r) for r in records], page_info=page_info(result, page)
        )
    )


async def get_tenant(request: Request, context: RequestContext) -> Response:
    _check_resolve_flag(request)
    record = await context.runtime.tenants.get(context.environment_id, path_param(request, "id"))
    return JSONResponse(Tenant.from_record(record))


async def set_tenant(request: Request, context: RequestContext) -> Response:
    _check_resolve_flag(request)
    tenant_id = path_param(request, "id")
    body = await read_json(request, SetTenantRequest)
    body.channel_data = validate_inline_channel_data(context.runtime.channels, body.channel_data)
    record = await context.runtime.tenants.set(context.environment_id, body.entry(tenant_id))
    return JSONResponse(Tenant.from_record(record))


async def delete_tenant(request: Request, context: RequestContext) -> Response:
    await context.runtime.tenants.delete(context.environment_id, path_param(request, "id"))
    return no_content()


async def bulk_set_tenants(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, BulkSetTenantsRequest)
    check_inline_channel_data(context.runtime.channels, body.tenants, field="tenants")
    rows = [
        tenant
        if isinstance(tenant, str)
        else tenant.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for tenant in body.tenants
    ]
    operation = await start_bulk_operation(
        context.runtime, context.environment_id, BulkKind.TENANTS_SET, rows
    )
    return bulk_operation_response(request, operation)


async def bulk_delete_tenants(request: Request, context: RequestContext) -> Response:
    tenant_ids = query_list(request, "tenant_ids")
    if not 1 <= len(tenant_ids) <= MAX_BULK_ENTRIES:
        raise InvalidInputError.field("tenant_ids", f"must list between 1 and {MAX_BULK_ENTRIES} tenant ids")
    for index, tenant_id in enumerate(tenant_ids):
        if not 1 <= len(tenant_id) <= 255:
            raise InvalidInputError.field(f"tenant_ids.{index}", "must be between 1 and 255 characters")
    operation = await start_bulk_operation(
        context.runtime, context.environment_id, BulkKind.TENANTS_DELETE, tenant_ids
    )
    return bulk_operation_response(request, operation)


routes = [
    route(
        "/v1/tenants/bulk/set",
        "POST",
        bulk_set_tenants,
        tier=1,
        body=BulkSetTenantsRequest,
        response=BulkOperation,
    ),
    route(
        "/v1/tenants/bulk/delete",
        "POST",
        bulk_delete_tenants,
        tier=1,
        query=[QueryParameter("tenant_ids[]", list[str], "The tenants to delete, 1 to 1,000.")],
        response=BulkOperation,
    ),
    route(
        "/v1/tenants",
        "GET",
        list_tenants,
        tier=4,
        query=[
            *PAGINATION,
            QueryParameter("name", str, "Only tenants of this name."),
            QueryParameter("tenant_id", str, "Only the tenant of this id."),
        ],
        response=ListTenantsResponse,
    ),
    route(
        "/v1/tenants/{id}",
        "GET",
        get_tenant,
        tier=4,
        query=[flag("resolve_full_preference_settings", "Accepted; Clarion has no environment default set.")],
        response=Tenant,
    ),
    route(
        "/v1/tenants/{id}",
        "PUT",
        set_tenant,
        tier=3,
        query=[flag("resolve_full_preference_settings", "Accepted; Clarion has no environment default set.")],
        body=SetTenantRequest,
        response=Tenant,
    ),
    route("/v1/tenants/{id}", "DELETE", delete_tenant, tier=2),
]

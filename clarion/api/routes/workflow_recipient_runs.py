"""Workflow recipient runs: the list (`/v1/workflow_recipient_runs`, newest first, with Knock's filters)
and one run with its events (`/v1/workflow_recipient_runs/{id}`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.pagination import page_info, page_request
from clarion.api.query import query_bool, query_choices, query_references, query_timestamp
from clarion.api.responses import JSONResponse
from clarion.errors import InvalidInputError, NotFoundError
from clarion.schemas.objects import validate_collection
from clarion.schemas.workflow_runs import (
    ListWorkflowRecipientRunsResponse,
    WorkflowRecipientRun,
    WorkflowRecipientRunDetail,
)
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.workflow_runs import RunFilter, RunStatus


def _recipient(request: Request) -> RecipientKey | None:
    """`recipient=<user id>`, or an object as `recipient[id]=…&recipient[collection]=…` (how the SDKs
    encode a RecipientReference), or in the list forms `query_references` reads."""
    params = request.query_params
    if "recipient[id]" in params or "recipient[collection]" in params:
        object_id, collection = params.get("recipient[id]"), params.get("recipient[collection]")
        if not object_id or not collection:
            raise InvalidInputError.field(
                "recipient", "an object needs both recipient[id] and recipient[collection]"
            )
        return RecipientKey(validate_collection(collection), object_id)
    references = query_references(request, "recipient")
    if not references:
        return None
    if len(references) > 1:
        raise InvalidInputError.field("recipient", "must name one recipient")
    reference = references[0]
    if isinstance(reference, str):
        return RecipientKey.user(reference)
    if set(reference) != {"id", "collection"}:
        raise InvalidInputError.field("recipient", "must be a user id or an object's id and collection")
    return RecipientKey(validate_collection(reference["collection"]), reference["id"])


async def list_runs(request: Request, context: RequestContext) -> Response:
    page = page_request(request)
    query = request.query_params
    filters = RunFilter(
        workflow_key=query.get("workflow") or None,
        recipient=_recipient(request),
        tenant=query.get("tenant") or None,
        statuses=tuple(sorted(query_choices(request, "status", frozenset(s.value for s in RunStatus)))),
        has_errors=query_bool(request, "has_errors") if "has_errors" in query else None,
        starting_at=query_timestamp(request, "starting_at"),
        ending_at=query_timestamp(request, "ending_at"),
    )
    records, result = await context.runtime.workflow_runs.page(context.environment_id, filters, page)
    return JSONResponse(
        ListWorkflowRecipientRunsResponse(
            items=[WorkflowRecipientRun.from_record(r) for r in records], page_info=page_info(result, page)
        )
    )


async def get_run(request: Request, context: RequestContext) -> Response:
    run_id = path_param(request, "id")
    record = await context.runtime.workflow_runs.get(context.environment_id, run_id)
    if record is None:
        raise NotFoundError(f"No workflow recipient run with id {run_id!r}")
    return JSONResponse(WorkflowRecipientRunDetail.with_events(record))


routes = [
    route("/v1/workflow_recipient_runs", "GET", list_runs, tier=2),
    route("/v1/workflow_recipient_runs/{id}", "GET", get_run, tier=2),
]

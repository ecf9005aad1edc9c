"""Workflows: trigger and cancel (`/v1/workflows/{key}/trigger|cancel`), and their legacy forms
(`/v1/notify`, `/v1/notify/cancel`). The work happens in `clarion.engine.trigger`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.body import parse_json, read_body, read_json
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.headers import request_header
from clarion.api.responses import JSONResponse, encode_json, no_content
from clarion.engine.trigger import accept_trigger
from clarion.errors import InvalidInputError
from clarion.schemas.recipient_references import recipient_key
from clarion.schemas.workflows import (
    CancelWorkflowRequest,
    LegacyCancelRequest,
    NotifyRequest,
    TriggerWorkflowRequest,
)

IDEMPOTENCY_HEADER = b"idempotency-key"
MAX_IDEMPOTENCY_KEY = 255


def _idempotency_key(request: Request) -> str | None:
    key = request_header(request.scope, IDEMPOTENCY_HEADER)
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInputError.field("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return key


async def trigger_workflow(request: Request, context: RequestContext) -> Response:
    key = path_param(request, "key")
    body_json = await read_body(request)
    body = parse_json(body_json, TriggerWorkflowRequest)
    accepted = await accept_trigger(
        context.runtime,
        context.environment_id,
        key,
        body,
        body_json,
        idempotency_key=_idempotency_key(request),
    )
    headers = {"idempotent-replayed": "true"} if accepted.replayed else None
    # A dict rather than a response model, which costs more to build and encode (docs/decisions.md).
    return JSONResponse({"workflow_run_id": accepted.workflow_run_id}, headers=headers)


async def notify(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, NotifyRequest)
    # The legacy body's references are a trigger's recipients as they stand (an `{id, collection}` object
    # is a reference there too), so the request is re-read as a trigger of the workflow `name`.
    fields = body.model_dump(mode="json", include={"recipients", "actor", "data", "cancellation_key"})
    trigger_json = encode_json(fields)
    trigger = parse_json(trigger_json, TriggerWorkflowRequest)
    accepted = await accept_trigger(context.runtime, context.environment_id, body.name, trigger, trigger_json)
    return JSONResponse({"result_id": accepted.workflow_run_id})


async def _cancel(context: RequestContext, key: str, body: CancelWorkflowRequest) -> Response:
    recipients = None if body.recipients is None else [recipient_key(r) for r in body.recipients]
    await context.runtime.workflow_runs.cancel(context.environment_id, key, body.cancellation_key, recipients)
    return no_content()


async def cancel_workflow(request: Request, context: RequestContext) -> Response:
    return await _cancel(context, path_param(request, "key"), await read_json(request, CancelWorkflowRequest))


async def cancel_notify(request: Request, context: RequestContext) -> Response:
    body = await read_json(request, LegacyCancelRequest)
    return await _cancel(context, body.name, body)


routes = [
    route("/v1/workflows/{key}/trigger", "POST", trigger_workflow, tier=5),
    route("/v1/workflows/{key}/cancel", "POST", cancel_workflow, tier=5),
    route("/v1/notify", "POST", notify, tier=3),
    route("/v1/notify/cancel", "POST", cancel_notify, tier=3),
]

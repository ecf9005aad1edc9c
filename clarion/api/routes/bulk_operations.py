"""Bulk operations: read one (`GET /v1/bulk_operations/{id}`), and the one way every bulk endpoint answers.

The bulk endpoints themselves live with their resource (`users.py`, `objects.py`, `tenants.py`); each
validates the whole request, queues the operation through `clarion.engine.bulk` and answers with
`bulk_operation_response` at once, while the operation is still `queued`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.responses import JSONResponse
from clarion.schemas.bulk_operations import BulkOperation
from clarion.store.bulk_operations import BulkOperationRecord


def bulk_operation_response(request: Request, record: BulkOperationRecord) -> Response:
    progress_path = str(request.url_for("get_bulk_operation", id=record.id))
    return JSONResponse(BulkOperation.from_record(record, progress_path=progress_path))


async def get_bulk_operation(request: Request, context: RequestContext) -> Response:
    record = await context.runtime.bulk_operations.get(context.environment_id, path_param(request, "id"))
    return bulk_operation_response(request, record)


routes = [
    route("/v1/bulk_operations/{id}", "GET", get_bulk_operation, tier=4, response=BulkOperation),
]

"""The one table from exceptions to HTTP responses, all in Knock's error body:
`{"code", "message", "status", "type", "errors": [{"field", "message", "type"}]}`.

A failure of the database to answer (unreachable, frozen, locked past the bound) is answered 503, as the
store's availability tracker decides (`clarion.store.availability`). Anything else not listed is a bug: it
is logged with its traceback and answered as a 500 in the same shape. API endpoints answer their errors
themselves (`clarion.api.endpoint`), inside the CORS middleware, so browsers can read even a 500; the
handlers here answer what is raised outside an endpoint.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from clarion.api.responses import JSONResponse
from clarion.errors import (
    ClarionError,
    FieldError,
    InvalidInputError,
    RateLimitedError,
    ServiceUnavailableError,
)

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("invalid_request", "invalid_request_error"),
    404: ("resource_missing", "invalid_request_error"),
    405: ("method_not_allowed", "invalid_request_error"),
    413: ("request_too_large", "invalid_request_error"),
}


def error_body(
    status: int, code: str, message: str, type_: str, errors: list[FieldError] | None = None
) -> dict[str, object]:
    return {
        "code": code,
        "message": message,
        "status": status,
        "type": type_,
        "errors": [{"field": e.field, "message": e.message, "type": e.type} for e in errors or []],
    }


def clarion_error_response(exc: ClarionError) -> Response:
    errors = exc.errors if isinstance(exc, InvalidInputError) else None
    response = JSONResponse(
        error_body(exc.status, exc.code, exc.message, exc.type, errors), status_code=exc.status
    )
    if isinstance(exc, RateLimitedError | ServiceUnavailableError):
        response.headers["retry-after"] = str(exc.retry_after)
    return response


async def handle_clarion_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClarionError)
    return clarion_error_response(exc)


async def handle_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, type_ = _HTTP_CODES.get(exc.status_code, ("invalid_request", "invalid_request_error"))
    message = "The requested resource was not found" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(error_body(exc.status_code, code, message, type_), status_code=exc.status_code)


def unexpected_error_response(request: Request, exc: Exception) -> Response:
    """The answer to an exception that is not Clarion's own: 503 when the database did not answer, else a
    500 for the bug it is."""
    unavailable = request.app.state.runtime.database.availability.unavailable(exc)
    if unavailable is not None:
        return clarion_error_response(unavailable)
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body(500, "internal_error", "An unexpected error occurred", "api_error"), status_code=500
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_error_response(request, exc)


EXCEPTION_HANDLERS = {
    ClarionError: handle_clarion_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}

"""The endpoints for whoever runs Clarion rather than for Knock's clients, outside `/v1`:

- `GET /healthz`: the process is up and serving (200, no database involved), for liveness probes.
- `GET /readyz`: the database answers within `READY_CHECK_SECONDS` and its schema is at this release's
  newest migration: 200, else 503 with the check that failed, for load balancers and readiness probes.
- `GET /metrics`: Prometheus's text format (`clarion.observability.metrics`), served only when
  `CLARION_METRICS` is `open` or a bearer token; a wrong or missing token is a 401 in Knock's error body.

Probes and scrapers carry no API key, so none of these asks for one.
"""

from __future__ import annotations

import asyncio
import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clarion.api.errors import clarion_error_response
from clarion.api.headers import request_header
from clarion.api.responses import JSONResponse
from clarion.config import METRICS_OFF, METRICS_OPEN, Settings
from clarion.errors import AuthError
from clarion.store.migrate import schema_is_current

READY_CHECK_SECONDS = 2.0


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _not_ready(failed: str, message: str, checks: dict[str, str]) -> Response:
    return JSONResponse(
        {"status": "unavailable", "failed_check": failed, "message": message, "checks": checks},
        status_code=503,
    )


async def readyz(request: Request) -> Response:
    database = request.app.state.runtime.database
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            current = await schema_is_current(database)
    except Exception as exc:  # whatever keeps the database from answering, Clarion cannot serve
        return _not_ready(
            "database",
            f"the database did not answer within {READY_CHECK_SECONDS:g} s ({type(exc).__name__})",
            {"database": "failed", "migrations": "not checked"},
        )
    if not current:
        return _not_ready(
            "migrations",
            "the database's schema is not at this release's newest migration (run `clarion migrate`)",
            {"database": "ok", "migrations": "failed"},
        )
    return JSONResponse({"status": "ok", "checks": {"database": "ok", "migrations": "ok"}})


async def metrics(request: Request) -> Response:
    runtime = request.app.state.runtime
    access: str = runtime.settings.metrics
    if access != METRICS_OPEN:
        given = request_header(request.scope, b"authorization") or ""
        if not hmac.compare_digest(given.encode(), f"Bearer {access}".encode()):
            response = clarion_error_response(
                AuthError("The metrics need 'Authorization: Bearer <token>' with CLARION_METRICS's token")
            )
            response.headers["www-authenticate"] = "Bearer"
            return response
    return Response(await runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def operation_routes(settings: Settings) -> list[Route]:
    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
    if settings.metrics != METRICS_OFF:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    return routes

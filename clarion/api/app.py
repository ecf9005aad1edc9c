"""create_app(runtime): the Starlette application serving Knock's v1 API.

Routes come from one module per Knock resource under `clarion.api.routes`, found by their path's shape
(`clarion.api.routing`), known ones dispatched straight to their endpoint; errors are answered by the
single table in `clarion.api.errors`. Given a job worker (`clarion serve`), the app runs it for its lifetime:
started before the first request, stopped gracefully at shutdown. Browsers may call the API from the
origins `Settings.cors_origins` allows (all by default, as Knock's browser SDK calls it with a publishable
key from any site). Outermost, around Starlette's own error handling, the request observer gives every
response its `x-request-id` and counts it (`clarion.observability.request_observer`); beside Knock's
routes are the operator's (`clarion.api.operations`: health, readiness, metrics).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp

from clarion.api.cors import BrowserCORSMiddleware
from clarion.api.errors import EXCEPTION_HANDLERS
from clarion.api.operations import operation_routes
from clarion.api.routes import ROUTE_MODULES
from clarion.api.routing import KnownRouteDispatch, RouteIndex
from clarion.jobs.worker import Worker
from clarion.observability.request_latencies import RequestLatencies
from clarion.observability.request_observer import RequestObserver
from clarion.runtime import Runtime


def all_routes() -> list[Route]:
    return [route for module in ROUTE_MODULES for route in module.routes]


class ObservedStarlette(Starlette):
    """Starlette with the request observer around its whole stack: its user middleware sits inside
    its error middleware, whose 500s the observer must see too."""

    def __init__(self, *, latencies: RequestLatencies, **options: Any) -> None:
        super().__init__(**options)
        self.latencies = latencies

    def build_middleware_stack(self) -> ASGIApp:
        return RequestObserver(super().build_middleware_stack(), self.latencies)


def create_app(runtime: Runtime, *, worker: Worker | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if worker is None:
            yield
            return
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()

    cors = Middleware(BrowserCORSMiddleware, allow_origins=list(runtime.settings.cors_origins))
    index = RouteIndex([*all_routes(), *operation_routes(runtime.settings)])
    app = ObservedStarlette(
        latencies=runtime.metrics.requests,
        routes=[index],
        middleware=[cors, Middleware(KnownRouteDispatch, index=index)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app

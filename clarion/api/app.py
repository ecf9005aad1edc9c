"""create_app(runtime): the Starlette application serving Knock's v1 API.

Routes come from one module per Knock resource under `clarion.api.routes`, found by their path's shape
(`clarion.api.routing`), known ones dispatched straight to their endpoint; errors are answered by the
single table in `clarion.api.errors`. Given a job worker (`clarion serve`), the app runs it for its lifetime:
started before the first request, stopped gracefully at shutdown. Browsers may call the API from the
origins `Settings.cors_origins` allows (all by default, as Knock's browser SDK calls it with a publishable
key from any site).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from clarion.api.cors import BrowserCORSMiddleware
from clarion.api.errors import EXCEPTION_HANDLERS
from clarion.api.openapi import openapi_route
from clarion.api.routes import ROUTE_MODULES
from clarion.api.routing import KnownRouteDispatch, RouteIndex
from clarion.jobs.worker import Worker
from clarion.runtime import Runtime


def all_routes() -> list[Route]:
    return [route for module in ROUTE_MODULES for route in module.routes]


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
    routes = all_routes()
    index = RouteIndex([*routes, openapi_route(routes)])
    app = Starlette(
        routes=[index],
        middleware=[cors, Middleware(KnownRouteDispatch, index=index)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app

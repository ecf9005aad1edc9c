"""Finding a request's route without trying every route in turn.

Starlette's router tries its routes one by one, each a regular expression; with a hundred Knock
operations that costs more than the rest of a point read. `RouteIndex` is one Starlette route holding all
the others, keyed by the path's shape (the resource segment after `/v1` and the number of segments) and
method. None of Clarion's routes has a parameter spanning several segments, so a route can only match
paths of its own shape, and only a route of the request's method can match it fully; trying just those
routes, in their declared order, picks the same route as trying them all: the first full match, else the
first partial one (a known path with another method, answered with 405).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import ASGIApp, Receive, Scope, Send

ShapeKey = tuple[str, int]


def _shape(path: str) -> ShapeKey:
    """(resource, segment count) of a path: `/v1/users/{user_id}` and `/v1/users/ada` are ("users", 3)."""
    segments = path.split("/")
    return (segments[2] if len(segments) > 2 else "", len(segments))


def _scope_shape(scope: Scope) -> ShapeKey:
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return _shape(path)


class RouteIndex(BaseRoute):
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._by_shape: dict[ShapeKey, list[Route]] = {}
        self._by_method: dict[tuple[ShapeKey, str], list[Route]] = {}
        for route in self.routes:
            if ":" in route.path:
                raise ValueError(
                    f"{route.path}: a path convertor could span segments, which the index forbids"
                )
            shape = _shape(route.path)
            self._by_shape.setdefault(shape, []).append(route)
            for method in route.methods or ():
                self._by_method.setdefault((shape, method), []).append(route)

    def full_match(self, scope: Scope) -> tuple[Route, Scope] | None:
        """The route whose path and method the request has, and its child scope; None if there is none."""
        for route in self._by_method.get((_scope_shape(scope), scope["method"]), ()):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, child_scope
        return None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        full = self.full_match(scope)
        if full is not None:
            route, child_scope = full
            return Match.FULL, {**child_scope, "route": route}
        # No route of the request's method has its path; one of another method may (405).
        for route in self._by_shape.get(_scope_shape(scope), ()):
            match, child_scope = route.matches(scope)
            if match is Match.PARTIAL:
                return match, {**child_scope, "route": route}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The router stored the matched route over this index in `scope["route"]` (see `matches`).
        await scope["route"].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)


class KnownRouteDispatch:
    """ASGI middleware just above Starlette's exception middleware and router: a request whose path and
    method match a route of `index` goes straight to that route's endpoint. Endpoints answer Clarion's
    errors themselves (`clarion.api.endpoint`) and raise no HTTP exceptions, so the two layers skipped had
    nothing to do for them but cost a point read's worth of time. Anything else (an unknown path or
    method, the lifespan) goes on down the stack, where the index answers it as before."""

    def __init__(self, app: ASGIApp, index: RouteIndex) -> None:
        self.app = app
        self.index = index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            full = self.index.full_match(scope)
            if full is not None:
                route, child_scope = full
                scope.update(child_scope)
                scope["route"] = route
                await route.app(scope, receive, send)
                return
        await self.app(scope, receive, send)

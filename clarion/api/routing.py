"""Finding a request's route without trying every route in turn.

Starlette's router tries its routes one by one, each a regular expression; with a hundred Knock
operations that costs more than the rest of a point read. `RouteIndex` is one Starlette route holding all
the others, keyed by the path's shape (the resource segment after `/v1` and the number of segments) and
method. None of Clarion's routes has a parameter spanning several segments, so a route can only match
paths of its own shape, and only a route of the request's method can match it fully; trying just those
routes, in their declared order, picks the same route as trying them all: the first full match, else the
first partial one (a known path with another method, answered with 405). A full match is found by
comparing the path's segments with the route's, which gives what Starlette's regular expression would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import ASGIApp, Receive, Scope, Send

ShapeKey = tuple[str, int]

Pattern = tuple[tuple[str | None, str], ...]
"""A route path segment by segment: (the fixed text, "") or (None, the parameter's name)."""

_PARAMETER = re.compile(r"\{(\w+)\}")


def _shape(segments: Sequence[str]) -> ShapeKey:
    """(resource, segment count) of a path split at "/": `/v1/users/{user_id}` and `/v1/users/ada` are
    ("users", 4)."""
    return (segments[2] if len(segments) > 2 else "", len(segments))


def _pattern(path: str) -> Pattern:
    pattern: list[tuple[str | None, str]] = []
    for segment in path.split("/"):
        parameter = _PARAMETER.fullmatch(segment)
        if parameter is None and "{" in segment:
            raise ValueError(
                f"{path}: each parameter must be a whole segment without a convertor"
                " (a path convertor could span segments, which the index forbids)"
            )
        pattern.append((None, parameter.group(1)) if parameter else (segment, ""))
    return tuple(pattern)


def _request_segments(scope: Scope) -> list[str]:
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return path.split("/")


def _path_params(pattern: Pattern, segments: Sequence[str]) -> dict[str, str] | None:
    """The parameters of a request's path (split at "/", of the pattern's length) if it has the pattern:
    its fixed segments, and a non-empty segment for each parameter, as Starlette's default convertor."""
    params: dict[str, str] = {}
    for segment, (fixed, name) in zip(segments, pattern, strict=True):
        if fixed is None:
            if not segment:
                return None
            params[name] = segment
        elif segment != fixed:
            return None
    return params


class RouteIndex(BaseRoute):
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._by_shape: dict[ShapeKey, list[Route]] = {}
        self._by_method: dict[tuple[ShapeKey, str], list[tuple[Route, Pattern]]] = {}
        for route in self.routes:
            pattern = _pattern(route.path)
            shape = _shape([fixed or "" for fixed, _ in pattern])
            self._by_shape.setdefault(shape, []).append(route)
            for method in route.methods or ():
                self._by_method.setdefault((shape, method), []).append((route, pattern))

    def full_match(self, scope: Scope) -> tuple[Route, Scope] | None:
        """The route whose path and method the request has, and its child scope (what Starlette's
        `Route.matches` gives, found by comparing segments instead of running the route's regular
        expression); None if there is none."""
        segments = _request_segments(scope)
        for route, pattern in self._by_method.get((_shape(segments), scope["method"]), ()):
            params = _path_params(pattern, segments)
            if params is not None:
                path_params = {**scope.get("path_params", {}), **params}
                return route, {"endpoint": route.endpoint, "path_params": path_params}
        return None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        full = self.full_match(scope)
        if full is not None:
            route, child_scope = full
            return Match.FULL, {**child_scope, "route": route}
        # No route of the request's method has its path; one of another method may (405).
        for route in self._by_shape.get(_shape(_request_segments(scope)), ()):
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

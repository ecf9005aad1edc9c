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
from starlette.types import Receive, Scope, Send

ShapeKey = tuple[str, int]


def _shape(path: str) -> ShapeKey:
    """(resource, segment count) of a path: `/v1/users/{user_id}` and `/v1/users/ada` are ("users", 3)."""
    segments = path.split("/")
    return (segments[2] if len(segments) > 2 else "", len(segments))


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

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        shape = _shape(path)
        for route in self._by_method.get((shape, scope["method"]), ()):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, "route": route}
        # No route of the request's method has its path; one of another method may (405).
        for route in self._by_shape.get(shape, ()):
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

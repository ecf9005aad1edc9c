"""The route index picks, for every request, the route Starlette's own router would pick by trying every
route in order: the same handler, the same path parameters, the same 404 and 405. Known routes are
dispatched straight to that route's endpoint; every other request goes on to the router."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Match, Route, Router
from starlette.types import Message, Receive, Scope, Send

from clarion.api.app import all_routes
from clarion.api.routing import KnownRouteDispatch, RouteIndex

METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"]


def _example_paths() -> list[str]:
    """Every route's path with its parameters filled in, plus near misses around them."""
    paths: list[str] = []
    for route in all_routes():
        filled = re.sub(r"\{[^}]+\}", "x1", route.path)
        paths += [filled, filled + "/", filled + "/extra", filled.rsplit("/", 1)[0]]
        paths += [re.sub(r"\{[^}]+\}", value, route.path) for value in ("", "a b.ü@+", "%2F")]
    paths += ["/", "/v1", "/v1/", "/v1/unknown", "/v2/users/x1", "/v1/users/bulk", "/v1/users/bulk/identify"]
    return sorted(set(paths))


def _linear_choice(routes: list[Route], scope: dict[str, Any]) -> tuple[Match, Route | None, dict[str, Any]]:
    partial: tuple[Match, Route | None, dict[str, Any]] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return match, route, child.get("path_params", {})
        if match is Match.PARTIAL and partial is None:
            partial = (match, route, child.get("path_params", {}))
    return partial or (Match.NONE, None, {})


@pytest.mark.parametrize("method", METHODS)
def test_the_index_matches_like_trying_every_route_in_order(method: str) -> None:
    routes = all_routes()
    index = RouteIndex(routes)
    for path in _example_paths():
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        match, child = index.matches(scope)
        expected = _linear_choice(routes, scope)
        assert (match, child.get("route"), child.get("path_params", {})) == expected, (method, path)


def test_the_index_refuses_routes_whose_parameters_could_span_segments() -> None:
    async def endpoint(_scope: Any, _receive: Any, _send: Any) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="path convertor"):
        RouteIndex([Route("/v1/files/{name:path}", endpoint)])


def test_url_paths_are_found_through_the_index() -> None:
    router = Router(routes=[RouteIndex(all_routes())])
    assert router.url_path_for("get_bulk_operation", id="abc") == "/v1/bulk_operations/abc"


@pytest.mark.parametrize("method", METHODS)
async def test_known_routes_go_straight_to_the_endpoint_the_router_would_reach(method: str) -> None:
    reached: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, scope: Scope, _receive: Receive, _send: Send) -> None:
            reached.append((self.name, scope.get("path_params", {})))

    async def receive() -> Message:
        raise AssertionError("not read")

    async def send(_message: Message) -> None:
        raise AssertionError("not sent")

    # Copies of the routes whose endpoints record that they were reached, under the route's path.
    routes = [Route(route.path, Recorder(route.path), methods=route.methods) for route in all_routes()]
    dispatch = KnownRouteDispatch(Recorder("router"), RouteIndex(routes))
    for path in _example_paths():
        scope: Scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        reached.clear()
        await dispatch(scope, receive, send)
        match, route, path_params = _linear_choice(routes, {**scope})
        if match is Match.FULL:
            assert route is not None
            assert reached == [(route.path, path_params)], (method, path)
            assert scope["route"] is route
        else:
            assert reached == [("router", {})], (method, path)

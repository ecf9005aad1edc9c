"""Browsers may call the API: preflights are answered and responses carry the CORS headers."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clarion.api.app import create_app
from clarion.api.cors import BrowserCORSMiddleware
from clarion.api.errors import EXCEPTION_HANDLERS
from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error


async def test_a_browser_preflight_and_call_with_a_publishable_key(env: EnvFixture) -> None:
    origin = {"Origin": "https://app.example.com"}
    preflight = await env.client.options(
        "/v1/users/u1",
        headers={
            **origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type, x-knock-user-token",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert "x-knock-user-token" in preflight.headers["access-control-allow-headers"]
    response = await env.put("/v1/users/u1", json={"name": "A"}, kind=KeyKind.PUBLISHABLE, headers=origin)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"


async def test_origins_can_be_restricted(env: EnvFixture) -> None:
    settings = dataclasses.replace(env.runtime.settings, cors_origins=("https://app.example.com",))
    app = create_app(dataclasses.replace(env.runtime, settings=settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://clarion.test"
    ) as client:
        allowed = await client.get(
            "/v1/users/u1", headers={**env.headers(), "Origin": "https://app.example.com"}
        )
        other = await client.get("/v1/users/u1", headers={**env.headers(), "Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_calls_without_an_origin_carry_no_cors_headers(env: EnvFixture) -> None:
    # Only browsers send Origin and only browsers read CORS headers; server-side SDK calls skip them.
    response = await env.put("/v1/users/u1", json={"name": "A"})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_an_error_outside_an_endpoint_reaches_a_browser_with_cors_headers(
    env: EnvFixture, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_request: Request) -> Response:
        raise RuntimeError("a bug outside the endpoints")

    app = Starlette(
        routes=[Route("/broken", broken)],
        middleware=[Middleware(BrowserCORSMiddleware, allow_origins=["*"])],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.runtime = env.runtime
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as client:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/broken", headers={"Origin": "https://app.example.com"})
    assert_error(response, 500, "internal_error")
    assert response.headers["access-control-allow-origin"] == "*"
    logged = [r for r in caplog.records if r.name == "clarion.api.errors"]
    assert len(logged) == 1
    assert logged[0].exc_info is not None


async def test_unexpected_errors_answer_500_with_cors_headers_and_a_traceback(
    env: EnvFixture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(env.runtime.users, "get", broken)
    with caplog.at_level(logging.ERROR):
        response = await env.get("/v1/users/u1", headers={"Origin": "https://app.example.com"})
    assert_error(response, 500, "internal_error")
    assert response.headers["access-control-allow-origin"] == "*"
    logged = [r for r in caplog.records if r.name == "clarion.api.errors"]
    assert len(logged) == 1
    assert logged[0].exc_info is not None

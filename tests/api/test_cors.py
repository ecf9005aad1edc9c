"""Browsers may call the API: preflights are answered and responses carry the CORS headers."""

from __future__ import annotations

import dataclasses

import httpx

from clarion.api.app import create_app
from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture


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

"""Knock's rate-limit tiers over HTTP, in each mode, with a frozen clock so every request of a test falls
into one one-second window."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from clarion.api.app import create_app
from clarion.api.ratelimit import MemoryRateCounter, RateCounter, RateLimiter
from clarion.config import RateLimitMode
from clarion.runtime import Runtime
from clarion.store.db import create_database
from clarion.store.environments import KeyKind
from clarion.store.rate_limits import DatabaseRateCounter
from tests.conftest import EnvFixture, assert_error


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.25

    def __call__(self) -> float:
        return self.now


def counter_for(runtime: Runtime) -> RateCounter:
    if runtime.database.dialect_name == "postgresql":
        return DatabaseRateCounter(runtime.database)
    return MemoryRateCounter()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def limited(runtime: Runtime, env: EnvFixture, clock: FrozenClock) -> Callable[[RateLimitMode], EnvFixture]:
    """`env`, served by an app whose limiter runs in the given mode."""

    def build(mode: RateLimitMode) -> EnvFixture:
        limiter = RateLimiter(mode, counter_for(runtime), clock)
        app = create_app(dataclasses.replace(runtime, rate_limiter=limiter))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://clarion.test")
        return dataclasses.replace(env, client=client)

    return build


async def test_client_mode_limits_publishable_keys_per_user(
    limited: Callable[[RateLimitMode], EnvFixture], clock: FrozenClock
) -> None:
    env = limited(RateLimitMode.CLIENT)
    await env.put("/v1/users/ann", json={})
    await env.put("/v1/users/bob", json={})
    # GET /v1/users/{id} is tier 4: 200 requests per second.
    for _ in range(200):
        response = await env.get("/v1/users/ann", kind=KeyKind.PUBLISHABLE)
        assert response.status_code == 200
    limited_response = await env.get("/v1/users/ann", kind=KeyKind.PUBLISHABLE)
    assert_error(limited_response, 429, "rate_limited")
    assert limited_response.headers["retry-after"] == "1"
    # Scoped per user: another user's budget is untouched; secret keys are never limited in this mode.
    assert (await env.get("/v1/users/bob", kind=KeyKind.PUBLISHABLE)).status_code == 200
    assert (await env.get("/v1/users/ann")).status_code == 200
    # The next second opens a new window.
    clock.now += 1
    assert (await env.get("/v1/users/ann", kind=KeyKind.PUBLISHABLE)).status_code == 200


async def test_knock_mode_limits_secret_keys_by_tier(limited: Callable[[RateLimitMode], EnvFixture]) -> None:
    env = limited(RateLimitMode.KNOCK)
    await env.put("/v1/users/primary", json={})
    # POST /v1/users/{id}/merge is tier 2: 5 requests per second (a 404 still counts).
    for _ in range(5):
        assert_error(await env.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 404)
    assert_error(
        await env.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 429, "rate_limited"
    )
    # Tiers are per endpoint: listing users has its own budget.
    assert (await env.get("/v1/users")).status_code == 200


async def test_off_mode_never_limits(limited: Callable[[RateLimitMode], EnvFixture]) -> None:
    env = limited(RateLimitMode.OFF)
    await env.put("/v1/users/primary", json={})
    for _ in range(12):
        assert_error(await env.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 404)


async def test_limits_are_per_environment(
    limited: Callable[[RateLimitMode], EnvFixture], runtime: Runtime, other_env: EnvFixture
) -> None:
    env = limited(RateLimitMode.KNOCK)
    await env.put("/v1/users/primary", json={})
    for _ in range(6):
        await env.post("/v1/users/primary/merge", json={"from_user_id": "ghost"})
    other = dataclasses.replace(other_env, client=env.client)
    await other.put("/v1/users/primary", json={})
    assert_error(await other.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 404)


@pytest.fixture
async def second_process_runtime(runtime: Runtime) -> AsyncIterator[Runtime]:
    """A runtime with its own connection pool on the same database, standing in for another API process."""
    database = create_database(runtime.database.url)
    try:
        yield dataclasses.replace(runtime, database=database)
    finally:
        await database.dispose()


async def test_postgres_processes_share_one_budget(
    runtime: Runtime, second_process_runtime: Runtime, env: EnvFixture, clock: FrozenClock
) -> None:
    if runtime.database.dialect_name != "postgresql":
        pytest.skip("one process serves the API on SQLite; shared budgets matter on PostgreSQL only")
    clients = []
    for each in (runtime, second_process_runtime):
        limiter = RateLimiter(RateLimitMode.KNOCK, DatabaseRateCounter(each.database), clock)
        app = create_app(dataclasses.replace(each, rate_limiter=limiter))
        clients.append(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://clarion.test")
        )
    first, second = (dataclasses.replace(env, client=c) for c in clients)
    await first.put("/v1/users/primary", json={})
    for i in range(5):
        process = first if i % 2 else second
        assert_error(await process.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 404)
    assert_error(await first.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 429)
    assert_error(await second.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 429)

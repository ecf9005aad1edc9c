"""Key lookups: cached for a while, and shared by the requests that find the cache expired at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from clarion.api.auth import KeyResolver
from clarion.errors import AuthError
from clarion.runtime import Runtime
from clarion.store.environments import ApiKey, EnvironmentStore, KeyKind


class CountingEnvironments(EnvironmentStore):
    """The real environment store, counting key lookups; `gate` holds them until it is set, and they
    fail with `failure` while it is set."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime.database)
        self.lookups = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: Exception | None = None

    async def find_key(self, key: str) -> ApiKey | None:
        self.lookups += 1
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return await super().find_key(key)


async def _secret_key(runtime: Runtime) -> str:
    environment = await runtime.environments.create(f"auth-{uuid.uuid4().hex[:8]}")
    return (await runtime.environments.create_key(environment.name, KeyKind.SECRET)).key


async def test_concurrent_requests_share_one_lookup(runtime: Runtime) -> None:
    key = await _secret_key(runtime)
    environments = CountingEnvironments(runtime)
    resolver = KeyResolver(environments, cache_seconds=60)
    found = await asyncio.gather(*(resolver.authenticate(f"Bearer {key}") for _ in range(20)))
    assert {api_key.key for api_key in found} == {key}
    assert environments.lookups == 1
    await resolver.authenticate(f"Bearer {key}")
    assert environments.lookups == 1


async def test_a_request_that_goes_away_leaves_the_shared_lookup_running(runtime: Runtime) -> None:
    key = await _secret_key(runtime)
    environments = CountingEnvironments(runtime)
    environments.gate.clear()
    resolver = KeyResolver(environments, cache_seconds=60)
    leaving = asyncio.create_task(resolver.authenticate(f"Bearer {key}"))
    staying = asyncio.create_task(resolver.authenticate(f"Bearer {key}"))
    await asyncio.sleep(0)
    leaving.cancel()
    environments.gate.set()
    assert (await staying).key == key
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert environments.lookups == 1


async def test_an_expired_entry_is_read_again_and_sees_a_revocation(runtime: Runtime) -> None:
    key = await _secret_key(runtime)
    environments = CountingEnvironments(runtime)
    resolver = KeyResolver(environments, cache_seconds=0)
    await resolver.authenticate(f"Bearer {key}")
    await runtime.environments.revoke_key(key)
    with pytest.raises(AuthError, match="not valid"):
        await resolver.authenticate(f"Bearer {key}")
    assert environments.lookups == 2


async def test_a_failed_lookup_fails_its_waiters_and_the_next_request_tries_again(runtime: Runtime) -> None:
    key = await _secret_key(runtime)
    environments = CountingEnvironments(runtime)
    resolver = KeyResolver(environments, cache_seconds=60)
    broken = RuntimeError("database unreachable")
    environments.failure = broken
    outcomes = await asyncio.gather(
        *(resolver.authenticate(f"Bearer {key}") for _ in range(3)), return_exceptions=True
    )
    assert outcomes == [broken, broken, broken]
    assert environments.lookups == 1
    environments.failure = None
    assert (await resolver.authenticate(f"Bearer {key}")).key == key

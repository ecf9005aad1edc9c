"""Who is calling: `Authorization: Bearer <key>` resolved to an environment and a key kind.

Lookups are cached for `Settings.key_cache_seconds`, so a key revoked from the CLI stops working within
that many seconds on every process. When an entry expires, the requests that find it so share one lookup:
under load, one query per key and period instead of one per request in flight (each of which took a
pool connection, opening new ones). Which endpoints a publishable key may call is declared on each route
(`clarion.api.endpoint.route(..., client=True)`), following Knock's list of client-side endpoints.
"""

from __future__ import annotations

import asyncio
import time

from clarion.errors import AuthError
from clarion.store.environments import ApiKey, EnvironmentStore


class KeyResolver:
    def __init__(self, environments: EnvironmentStore, cache_seconds: float) -> None:
        self.environments = environments
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lookups: dict[str, asyncio.Future[ApiKey | None]] = {}

    async def authenticate(self, authorization: str | None) -> ApiKey:
        if not authorization:
            raise AuthError(
                "The API key is missing: send it as 'Authorization: Bearer <key>'", code="api_key_missing"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("The Authorization header must be 'Bearer <key>'", code="api_key_missing")
        # A cached key is taken without awaiting anything: nearly every request finds its key here.
        cached = self._cache.get(token)
        if cached is not None and cached[0] > time.monotonic():
            api_key = cached[1]
        else:
            api_key = await self._lookup(token)
        if api_key is None or api_key.revoked:
            raise AuthError("The API key is not valid")
        return api_key

    async def _lookup(self, token: str) -> ApiKey | None:
        """The key looked up in the store, one lookup shared by the requests that need it at once."""
        lookup = self._lookups.get(token)
        if lookup is None:
            lookup = asyncio.ensure_future(self._refresh(token))
            self._lookups[token] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(token, None))
        # Shielded: a request that goes away must not cancel the lookup the others wait for.
        return await asyncio.shield(lookup)

    async def _refresh(self, token: str) -> ApiKey | None:
        api_key = await self.environments.find_key(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (time.monotonic() + self.cache_seconds, api_key)
        return api_key

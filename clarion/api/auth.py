"""Who is calling: `Authorization: Bearer <key>` resolved to an environment and a key kind.

Lookups are cached for `Settings.key_cache_seconds`, so a key revoked from the CLI stops working within
that many seconds on every process. Which endpoints a publishable key may call is declared on each route
(`clarion.api.endpoint.route(..., client=True)`), following Knock's list of client-side endpoints.
"""

from __future__ import annotations

import time

from clarion.errors import AuthError
from clarion.store.environments import ApiKey, EnvironmentStore


class KeyResolver:
    def __init__(self, environments: EnvironmentStore, cache_seconds: float) -> None:
        self.environments = environments
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def authenticate(self, authorization: str | None) -> ApiKey:
        if not authorization:
            raise AuthError(
                "The API key is missing: send it as 'Authorization: Bearer <key>'", code="api_key_missing"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("The Authorization header must be 'Bearer <key>'", code="api_key_missing")
        api_key = await self._lookup(token)
        if api_key is None or api_key.revoked:
            raise AuthError("The API key is not valid")
        return api_key

    async def _lookup(self, token: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        api_key = await self.environments.find_key(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + self.cache_seconds, api_key)
        return api_key

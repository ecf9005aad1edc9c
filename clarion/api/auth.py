"""Who is calling: `Authorization: Bearer <key>` resolved to an environment and a key kind.

Lookups are cached for `Settings.key_cache_seconds`, so a key revoked from the CLI stops working within
that many seconds on every process; when an entry expires, the requests that find it so share one lookup
(`clarion.expiring_lookups`). Which endpoints a publishable key may call is declared on each route
(`clarion.api.endpoint.route(..., client=True)`), following Knock's list of client-side endpoints.
"""

from __future__ import annotations

from clarion.errors import AuthError
from clarion.expiring_lookups import ExpiringLookups
from clarion.store.environments import ApiKey, EnvironmentStore

KEYS_REMEMBERED = 10_000


class KeyResolver:
    def __init__(self, environments: EnvironmentStore, cache_seconds: float) -> None:
        self.lookups: ExpiringLookups[str, ApiKey | None] = ExpiringLookups(
            environments.find_key, cache_seconds, KEYS_REMEMBERED
        )

    async def authenticate(self, authorization: str | None) -> ApiKey:
        if not authorization:
            raise AuthError(
                "The API key is missing: send it as 'Authorization: Bearer <key>'", code="api_key_missing"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("The Authorization header must be 'Bearer <key>'", code="api_key_missing")
        api_key = await self.lookups.get(token)
        if api_key is None or api_key.revoked:
            raise AuthError("The API key is not valid")
        return api_key

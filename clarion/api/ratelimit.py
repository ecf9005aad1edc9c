"""Knock's per-endpoint rate-limit tiers, answered with 429 and `retry-after`.

Windows are one second long and counted per (environment, key kind, endpoint) and, for publishable keys,
per user as Knock scopes them. `RateLimitMode` says who the tiers apply to. The counter is in-process on
SQLite (one process serves the API) and a table on PostgreSQL (`clarion.store.rate_limits`), so that
several `clarion api` processes share one budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from clarion.config import RateLimitMode
from clarion.errors import RateLimitedError
from clarion.store.environments import ApiKey, KeyKind

TIER_LIMITS = {1: 1, 2: 5, 3: 60, 4: 200, 5: 1000}
"""Requests per second allowed by each of Knock's `x-ratelimit-tier` values."""


class RateCounter(Protocol):
    async def hit(self, bucket: str, window: int) -> int:
        """Count one request in `bucket` for the one-second `window`; return the window's count so far."""
        ...


class MemoryRateCounter:
    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}

    async def hit(self, bucket: str, window: int) -> int:
        current_window, hits = self._counts.get(bucket, (window, 0))
        hits = hits + 1 if current_window == window else 1
        if len(self._counts) > 100_000:
            self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        self._counts[bucket] = (window, hits)
        return hits


class RateLimiter:
    def __init__(
        self, mode: RateLimitMode, counter: RateCounter, clock: Callable[[], float] = time.time
    ) -> None:
        self.mode = mode
        self.counter = counter
        self.clock = clock

    def applies_to(self, api_key: ApiKey) -> bool:
        if self.mode is RateLimitMode.OFF:
            return False
        return self.mode is RateLimitMode.KNOCK or api_key.kind is KeyKind.PUBLISHABLE

    async def check(self, api_key: ApiKey, tier: int, endpoint: str, user_id: str | None) -> None:
        """Count a request of a key the limits apply to (`applies_to`), refusing it past its tier's limit."""
        scope = f"user:{user_id}" if api_key.kind is KeyKind.PUBLISHABLE and user_id else api_key.kind.value
        bucket = f"{api_key.environment.id}|{scope}|{endpoint}"
        limit = TIER_LIMITS[tier]
        if await self.counter.hit(bucket, int(self.clock())) > limit:
            raise RateLimitedError(
                f"Rate limit exceeded: this endpoint allows {limit} request(s) per second", retry_after=1
            )

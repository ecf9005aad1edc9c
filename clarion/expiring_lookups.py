"""Lookups remembered for a while, each shared by the callers that need it at once.

A value looked up is kept for `seconds`. Once it has expired, the callers that find it so share one
lookup instead of making one each: under load, one query per key and period rather than one per request
in flight, each of which would take a pool connection (opening new ones) and hold its request up. A caller
that goes away does not cancel the lookup the others wait for; a lookup that fails fails its waiters and
leaves nothing behind, so the next caller tries again. The API keys (`clarion.api.auth`) and the current
workflows (`clarion.engine.workflow_catalog`) are looked up this way.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class ExpiringLookups(Generic[Key, Value]):
    def __init__(self, lookup: Callable[[Key], Awaitable[Value]], seconds: float, max_entries: int) -> None:
        self.lookup = lookup
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, tuple[float, Value]] = OrderedDict()
        """key → (when it expires, value), oldest first: past `max_entries` the oldest go."""
        self._in_flight: dict[Key, asyncio.Future[Value]] = {}

    async def get(self, key: Key) -> Value:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        lookup = self._in_flight.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(self.lookup(key))
            self._in_flight[key] = lookup
            lookup.add_done_callback(functools.partial(self._settle, key))
        # Shielded: a caller that goes away must not cancel the lookup the others wait for.
        return await asyncio.shield(lookup)

    def forget(self, key: Key) -> None:
        """Drop what is known of `key`, so that the next caller looks it up; a lookup in flight is left
        to its waiters but not remembered, as it may have read what stood before the change."""
        self._entries.pop(key, None)
        self._in_flight.pop(key, None)

    def _settle(self, key: Key, lookup: asyncio.Future[Value]) -> None:
        if self._in_flight.get(key) is not lookup:
            return  # forgotten while in flight
        del self._in_flight[key]
        if lookup.cancelled() or lookup.exception() is not None:
            return
        self._entries[key] = (time.monotonic() + self.seconds, lookup.result())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

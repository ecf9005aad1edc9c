"""Lookups remembered for a while and shared by the callers that need them at once: what a caller sees
when entries are fresh, expired, looked up concurrently, failing, forgotten mid-lookup, or too many."""

from __future__ import annotations

import asyncio

import pytest

from clarion.expiring_lookups import ExpiringLookups


class Source:
    """Answers `value-N` for the N-th lookup of a key; `gate` holds lookups until set, and they fail with
    `failure` while it is set."""

    def __init__(self) -> None:
        self.lookups: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: Exception | None = None

    async def __call__(self, key: str) -> str:
        self.lookups.append(key)
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return f"{key}-{len(self.lookups)}"


async def test_a_fresh_entry_is_answered_without_a_lookup() -> None:
    source = Source()
    lookups = ExpiringLookups(source, seconds=60, max_entries=10)
    assert await lookups.get("a") == "a-1"
    assert await lookups.get("a") == "a-1"
    assert source.lookups == ["a"]


async def test_an_expired_entry_is_looked_up_again() -> None:
    source = Source()
    lookups = ExpiringLookups(source, seconds=0, max_entries=10)
    assert await lookups.get("a") == "a-1"
    assert await lookups.get("a") == "a-2"


async def test_concurrent_callers_share_one_lookup() -> None:
    source = Source()
    source.gate.clear()
    lookups = ExpiringLookups(source, seconds=60, max_entries=10)
    waiting = [asyncio.create_task(lookups.get("a")) for _ in range(20)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*waiting) == ["a-1"] * 20
    assert source.lookups == ["a"]


async def test_a_caller_that_goes_away_leaves_the_shared_lookup_running() -> None:
    source = Source()
    source.gate.clear()
    lookups = ExpiringLookups(source, seconds=60, max_entries=10)
    leaving = asyncio.create_task(lookups.get("a"))
    staying = asyncio.create_task(lookups.get("a"))
    await asyncio.sleep(0)
    leaving.cancel()
    source.gate.set()
    assert await staying == "a-1"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await lookups.get("a") == "a-1"
    assert source.lookups == ["a"]


async def test_a_failed_lookup_fails_its_waiters_and_is_not_remembered() -> None:
    source = Source()
    lookups = ExpiringLookups(source, seconds=60, max_entries=10)
    broken = RuntimeError("database unreachable")
    source.failure = broken
    outcomes = await asyncio.gather(*(lookups.get("a") for _ in range(3)), return_exceptions=True)
    assert outcomes == [broken, broken, broken]
    assert source.lookups == ["a"]
    source.failure = None
    assert await lookups.get("a") == "a-2"


async def test_a_lookup_in_flight_when_forgotten_answers_its_waiters_but_is_not_remembered() -> None:
    """It may have read what stood before the change that forgot the key."""
    source = Source()
    source.gate.clear()
    lookups = ExpiringLookups(source, seconds=60, max_entries=10)
    before = asyncio.create_task(lookups.get("a"))
    await asyncio.sleep(0)
    lookups.forget("a")
    source.gate.set()
    assert await before == "a-1"
    assert await lookups.get("a") == "a-2"
    assert await lookups.get("a") == "a-2"


async def test_past_its_bound_the_oldest_entries_are_dropped() -> None:
    source = Source()
    lookups = ExpiringLookups(source, seconds=60, max_entries=2)
    for key in ("a", "b", "c"):
        await lookups.get(key)
    assert await lookups.get("c") == "c-3"
    assert await lookups.get("b") == "b-2"
    assert await lookups.get("a") == "a-4"
    assert source.lookups == ["a", "b", "c", "a"]

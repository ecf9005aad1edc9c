"""Throttles in the store, with a clock the test sets: the first run to pass opens a window, up to the limit
pass in it, the rest are throttled, and the first run after it opens the next one; each workflow step,
recipient and key counts apart. The statements do not grow with the runs, and on PostgreSQL transactions
counting one throttle at once never let more than the limit through."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store.db import Database
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import throttles
from clarion.store.throttles import (
    ThrottleEntry,
    ThrottleIdentity,
    ThrottleResult,
    count_throttled,
    prune_expired_throttles,
)
from tests.conftest import EnvFixture
from tests.store.conftest import require_postgres
from tests.store.statements import count_statements

T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def throttle(
    env: EnvFixture, *, user: str = "elmo", key: str = "", step_ref: str = "throttle_1"
) -> ThrottleIdentity:
    return ThrottleIdentity(env.id, "alert", step_ref, RecipientKey.user(user), key)


def entry(of: ThrottleIdentity, *, now: datetime = T0, window: float = 60, limit: int = 1) -> ThrottleEntry:
    return ThrottleEntry(identity=of, limit=limit, window_ends_at=now + timedelta(seconds=window))


async def counted(
    database: Database, entries: Sequence[ThrottleEntry], now: datetime = T0
) -> list[ThrottleResult]:
    async with database.writer.begin() as connection:
        return await count_throttled(connection, entries, now)


async def passes(database: Database, entries: Sequence[ThrottleEntry], now: datetime = T0) -> list[bool]:
    return [result.passed for result in await counted(database, entries, now)]


async def test_one_run_passes_per_window_by_default(runtime: Runtime, env: EnvFixture) -> None:
    gate = throttle(env)
    [first] = await counted(runtime.database, [entry(gate)])
    assert (first.passed, first.count, first.window_ends_at) == (True, 1, at(60))
    assert await passes(runtime.database, [entry(gate, now=at(30))], at(30)) == [False]
    assert await passes(runtime.database, [entry(gate, now=at(59))], at(59)) == [False]
    [next_window] = await counted(runtime.database, [entry(gate, now=at(60))], at(60))
    assert (next_window.passed, next_window.count, next_window.window_ends_at) == (True, 1, at(120))


async def test_the_window_is_the_first_passing_runs_and_throttled_runs_do_not_extend_it(
    runtime: Runtime, env: EnvFixture
) -> None:
    gate = throttle(env)
    assert await passes(runtime.database, [entry(gate, window=100)]) == [True]
    # A later run's own (dynamic) window does not move the one that is open.
    [throttled] = await counted(runtime.database, [entry(gate, now=at(50), window=1000)], at(50))
    assert (throttled.passed, throttled.window_ends_at) == (False, at(100))
    assert await passes(runtime.database, [entry(gate, now=at(100), window=10)], at(100)) == [True]
    assert await passes(runtime.database, [entry(gate, now=at(105))], at(105)) == [False]
    assert await passes(runtime.database, [entry(gate, now=at(110))], at(110)) == [True]


async def test_up_to_the_limit_pass_in_one_call_one_after_another(runtime: Runtime, env: EnvFixture) -> None:
    gate = throttle(env)
    results = await counted(runtime.database, [entry(gate, limit=3) for _ in range(5)])
    assert [(r.passed, r.count) for r in results] == [(True, 1), (True, 2), (True, 3), (False, 3), (False, 3)]
    assert await passes(runtime.database, [entry(gate, now=at(10), limit=3)], at(10)) == [False]
    assert await passes(runtime.database, [entry(gate, now=at(60), limit=3)] * 4, at(60)) == [True] * 3 + [
        False
    ]


async def test_each_step_recipient_key_and_environment_counts_apart(
    runtime: Runtime, env: EnvFixture
) -> None:
    other = await runtime.environments.create(f"test-{env.name}-other")
    gates = [
        throttle(env),
        throttle(env, user="big-bird"),
        throttle(env, key="alert-1"),
        throttle(env, step_ref="throttle_2"),
        ThrottleIdentity(env.id, "other-workflow", "throttle_1", RecipientKey.user("elmo"), ""),
        ThrottleIdentity(env.id, "alert", "throttle_1", RecipientKey("servers", "elmo"), ""),
        ThrottleIdentity(other.id, "alert", "throttle_1", RecipientKey.user("elmo"), ""),
    ]
    assert await passes(runtime.database, [entry(g) for g in gates]) == [True] * len(gates)
    assert await passes(runtime.database, [entry(g, now=at(1)) for g in gates], at(1)) == [False] * len(gates)


async def test_statements_do_not_grow_with_the_runs(runtime: Runtime, env: EnvFixture) -> None:
    async def statements(count: int) -> int:
        entries = [entry(throttle(env, user=f"user-{count}-{n % 9}"), limit=2) for n in range(count)]
        with count_statements(runtime.database) as statements_sent:
            results = await counted(runtime.database, entries)
        assert sum(result.passed for result in results) == 18
        return statements_sent.count

    assert await statements(20) == await statements(900) == 2


async def test_expired_windows_are_pruned(runtime: Runtime, env: EnvFixture) -> None:
    far = datetime(2031, 6, 1, tzinfo=UTC)
    ended, running = throttle(env, user="ended"), throttle(env, user="running")
    await counted(
        runtime.database, [entry(ended, now=far, window=10), entry(running, now=far, window=100)], far
    )
    assert await prune_expired_throttles(runtime.database, far + timedelta(seconds=50), batch=1) >= 1
    c = throttles.c
    async with runtime.database.reader.connect() as connection:
        left = await connection.scalars(sa.select(c.recipient_id).where(c.environment_id == env.id))
        assert list(left) == ["running"]


async def test_transactions_counting_at_once_never_pass_more_than_the_limit(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    require_postgres(runtime)
    databases = [runtime.database, second_database]
    for trial in range(8):
        gate = throttle(env, key=f"race-{trial}")
        outcomes = await asyncio.gather(
            *(passes(databases[n % 2], [entry(gate, limit=3), entry(gate, limit=3)]) for n in range(6))
        )
        assert sum(sum(found) for found in outcomes) == 3

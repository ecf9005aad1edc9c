"""Batches in the store, with a clock the test sets: runs open, join, extend and fill batches, carriers flush
them once, cancelled runs' activities leave them, and a batch of 10,000 activities pages through. Entries for
one batch in one call behave as if joined one after another, the statements a call runs do not grow with
its entries, and on PostgreSQL two transactions joining one batch at once make one batch with one opener."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store.batch_activities import activities_page
from clarion.store.batches import (
    BatchFlush,
    BatchIdentity,
    BatchJoin,
    FlushOutcome,
    FlushResult,
    JoinOutcome,
    JoinResult,
    flush_batches,
    join_batches,
    remove_activities,
)
from clarion.store.db import Database
from clarion.store.pagination import PageRequest
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import batches
from tests.conftest import EnvFixture
from tests.store.conftest import require_postgres, wait_until_blocked
from tests.store.statements import count_statements

T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def identity(
    env: EnvFixture, *, user: str = "elmo", key: str = "", step_ref: str = "batch_1"
) -> BatchIdentity:
    return BatchIdentity(env.id, "new-comment", RecipientKey.user(user), step_ref, "", key)


def join(
    of: BatchIdentity,
    *,
    now: datetime = T0,
    window: float = 60,
    actor: str | None = "dennis",
    data: dict[str, Any] | None = None,
    extension_limit: float | None = None,
    max_items: int | None = None,
    flush_leading: bool = False,
    run_id: str | None = None,
) -> BatchJoin:
    return BatchJoin(
        run_id=run_id or str(uuid.uuid4()),
        identity=of,
        actor=None if actor is None else RecipientKey.user(actor),
        data=data if data is not None else {"comment": "hello"},
        closes_at=now + timedelta(seconds=window),
        extension_limit_seconds=extension_limit,
        max_items=max_items,
        flush_leading=flush_leading,
    )


async def joined(database: Database, entries: Sequence[BatchJoin], now: datetime = T0) -> list[JoinResult]:
    async with database.writer.begin() as connection:
        return await join_batches(connection, entries, now)


async def flushed(
    runtime: Runtime,
    env: EnvFixture,
    result: JoinResult,
    now: datetime,
    *,
    limit: int = 10,
    newest: bool = False,
    environment_id: str | None = None,
) -> FlushResult:
    assert result.run_id is not None
    request = BatchFlush(result.batch_id, result.run_id, limit, newest)
    async with runtime.database.writer.begin() as connection:
        [flush] = await flush_batches(connection, environment_id or env.id, [request], now)
    return flush


async def removed(runtime: Runtime, env: EnvFixture, run_ids: Sequence[str], now: datetime) -> list[Any]:
    async with runtime.database.writer.begin() as connection:
        return await remove_activities(connection, env.id, run_ids, now)


async def open_batches(runtime: Runtime, of: BatchIdentity) -> list[Any]:
    c = batches.c
    async with runtime.database.reader.connect() as connection:
        rows = await connection.execute(
            sa.select(c.id, c.opened_by, c.run_id, c.activity_count).where(
                c.environment_id == of.environment_id,
                c.recipient_id == of.recipient.id,
                c.key == of.key,
                c.state == "open",
            )
        )
        return list(rows)


async def test_the_first_run_opens_a_batch_later_ones_join_it_and_its_carrier_flushes_it_once(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    first, second = join(batch, data={"n": 1}), join(batch, now=at(20), actor="nedry", data={"n": 2})
    [opening] = await joined(runtime.database, [first])
    [joining] = await joined(runtime.database, [second], at(20))

    assert (opening.outcome, opening.opened, opening.run_id) == (JoinOutcome.WAIT, True, first.run_id)
    assert (opening.closes_at, opening.activity_count, opening.closed_now) == (at(60), 1, False)
    assert (joining.outcome, joining.opened, joining.batch_id) == (JoinOutcome.END, False, opening.batch_id)
    assert (joining.run_id, joining.closes_at, joining.activity_count) == (first.run_id, at(60), 2)

    flush = await flushed(runtime, env, opening, at(60))
    assert (flush.outcome, flush.total_activities, flush.contents.total_actors) == (
        FlushOutcome.FLUSHED,
        2,
        2,
    )
    assert [a.data for a in flush.contents.activities] == [{"n": 1}, {"n": 2}]
    assert [a.run_id for a in flush.contents.activities] == [first.run_id, second.run_id]
    assert [a.inserted_at for a in flush.contents.activities] == [T0, at(20)]
    assert flush.contents.actors == [RecipientKey.user("dennis"), RecipientKey.user("nedry")]
    assert (await flushed(runtime, env, opening, at(61))).outcome is FlushOutcome.GONE

    [after] = await joined(runtime.database, [join(batch, now=at(70))], at(70))
    assert after.opened and after.batch_id != opening.batch_id


async def test_a_carrier_woken_early_waits_and_only_the_carrier_flushes(
    runtime: Runtime, env: EnvFixture
) -> None:
    [opening, joining] = await joined(runtime.database, [join(identity(env)), join(identity(env))])
    early = await flushed(runtime, env, opening, at(59))
    assert (early.outcome, early.closes_at) == (FlushOutcome.WAIT, at(60))
    # A run that carries no batch, and the carrier asking in another environment, flush nothing.
    impostor = JoinResult(JoinOutcome.WAIT, opening.batch_id, True, str(uuid.uuid4()), at(60), 1, False)
    assert (await flushed(runtime, env, impostor, at(60))).outcome is FlushOutcome.GONE
    elsewhere = await _other_env(runtime)
    assert (
        await flushed(runtime, env, opening, at(60), environment_id=elsewhere)
    ).outcome is FlushOutcome.GONE
    assert (await flushed(runtime, env, opening, at(60))).total_activities == 2
    assert joining.outcome is JoinOutcome.END


async def _other_env(runtime: Runtime) -> str:
    environment = await runtime.environments.create(f"test-{uuid.uuid4().hex[:10]}")
    return environment.id


async def test_a_run_after_the_window_opens_a_new_batch_and_the_old_one_keeps_its_activities(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    [old] = await joined(runtime.database, [join(batch)])
    [late] = await joined(runtime.database, [join(batch, now=at(60))], at(60))
    assert (late.outcome, late.opened) == (JoinOutcome.WAIT, True)
    assert late.batch_id != old.batch_id and late.closes_at == at(120)
    assert [row.id for row in await open_batches(runtime, batch)] == [late.batch_id]
    assert (await flushed(runtime, env, old, at(61))).total_activities == 1
    assert (await flushed(runtime, env, late, at(120))).total_activities == 1


async def test_runs_of_one_batch_in_one_call_join_one_after_another(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    entries = [join(batch, data={"n": n}) for n in range(5)]
    results = await joined(runtime.database, entries)
    assert [r.outcome for r in results] == [JoinOutcome.WAIT] + [JoinOutcome.END] * 4
    assert [r.activity_count for r in results] == [1, 2, 3, 4, 5]
    assert {r.run_id for r in results} == {entries[0].run_id}
    flush = await flushed(runtime, env, results[0], at(60))
    assert [a.data["n"] for a in flush.contents.activities] == [0, 1, 2, 3, 4]


async def test_batches_are_per_recipient_key_step_and_environment(runtime: Runtime, env: EnvFixture) -> None:
    other = await _other_env(runtime)
    identities = [
        identity(env),
        identity(env, key="page-a"),
        identity(env, key="page-b"),
        identity(env, user="big-bird"),
        identity(env, step_ref="batch_2"),
        BatchIdentity(env.id, "new-comment", RecipientKey.user("elmo"), "", "version-1", ""),
        BatchIdentity(env.id, "new-comment", RecipientKey("projects", "elmo"), "batch_1", "", ""),
        BatchIdentity(other, "new-comment", RecipientKey.user("elmo"), "batch_1", "", ""),
    ]
    results = await joined(runtime.database, [join(i) for i in identities] + [join(identities[1])])
    assert [r.outcome for r in results] == [JoinOutcome.WAIT] * len(identities) + [JoinOutcome.END]
    assert len({r.batch_id for r in results}) == len(identities)
    assert results[-1].batch_id == results[1].batch_id


async def test_long_keys_are_kept_apart(runtime: Runtime, env: EnvFixture) -> None:
    first, second = identity(env, key="k" * 300 + "1"), identity(env, key="k" * 300 + "2")
    results = await joined(runtime.database, [join(first), join(second), join(first)])
    assert [r.outcome for r in results] == [JoinOutcome.WAIT, JoinOutcome.WAIT, JoinOutcome.END]
    assert results[2].batch_id == results[0].batch_id != results[1].batch_id


async def test_a_sliding_window_moves_with_each_run_up_to_its_cap(runtime: Runtime, env: EnvFixture) -> None:
    # Knock's example: a 12-hour window that may be extended to 24 hours from the opening.
    batch, hour = identity(env), 3600.0
    sliding: dict[str, Any] = {"window": 12 * hour, "extension_limit": 24 * hour}
    [opening] = await joined(runtime.database, [join(batch, **sliding)])
    [six] = await joined(runtime.database, [join(batch, now=at(6 * hour), **sliding)], at(6 * hour))
    assert (six.closes_at, six.closed_now) == (at(18 * hour), False)
    early = await flushed(runtime, env, opening, at(12 * hour))
    assert (early.outcome, early.closes_at) == (FlushOutcome.WAIT, at(18 * hour))
    [thirteen] = await joined(runtime.database, [join(batch, now=at(13 * hour), **sliding)], at(13 * hour))
    assert thirteen.closes_at == at(24 * hour)
    [sixteen] = await joined(runtime.database, [join(batch, now=at(16 * hour), **sliding)], at(16 * hour))
    assert (sixteen.closes_at, sixteen.activity_count) == (at(24 * hour), 4)
    assert (await flushed(runtime, env, opening, at(18 * hour))).closes_at == at(24 * hour)
    assert (await flushed(runtime, env, opening, at(24 * hour))).total_activities == 4


async def test_a_sliding_cap_already_past_closes_the_batch_at_once(runtime: Runtime, env: EnvFixture) -> None:
    # Knock's example: a 24-hour window with a 12-hour limit, joined after 23 hours.
    batch, hour = identity(env), 3600.0
    sliding: dict[str, Any] = {"window": 24 * hour, "extension_limit": 12 * hour}
    [opening] = await joined(runtime.database, [join(batch, **sliding)])
    assert opening.closes_at == at(24 * hour)
    [late] = await joined(runtime.database, [join(batch, now=at(23 * hour), **sliding)], at(23 * hour))
    assert (late.outcome, late.closed_now, late.closes_at) == (JoinOutcome.END, True, at(23 * hour))
    assert await open_batches(runtime, batch) == []
    assert (await flushed(runtime, env, opening, at(23 * hour))).total_activities == 2


async def test_a_fixed_window_is_not_moved_by_later_runs(runtime: Runtime, env: EnvFixture) -> None:
    batch = identity(env)
    [opening] = await joined(runtime.database, [join(batch)])
    [later] = await joined(runtime.database, [join(batch, now=at(50), window=600)], at(50))
    assert later.closes_at == opening.closes_at == at(60)


async def test_a_full_batch_closes_at_once_and_the_next_run_opens_another(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    entries = [join(batch, max_items=3, data={"n": n}) for n in range(5)]
    results = await joined(runtime.database, entries[:2]) + await joined(
        runtime.database, entries[2:], at(10)
    )
    assert [r.outcome for r in results] == [
        JoinOutcome.WAIT,
        JoinOutcome.END,
        JoinOutcome.END,
        JoinOutcome.WAIT,
        JoinOutcome.END,
    ]
    assert [r.closed_now for r in results] == [False, False, True, False, False]
    assert results[2].closes_at == at(10) and results[2].run_id == entries[0].run_id
    assert results[3].batch_id != results[0].batch_id and results[4].batch_id == results[3].batch_id
    flush = await flushed(runtime, env, results[0], at(10))
    assert [a.data["n"] for a in flush.contents.activities] == [0, 1, 2]
    assert [row.id for row in await open_batches(runtime, batch)] == [results[3].batch_id]


async def test_a_run_filling_several_batches_in_one_call(runtime: Runtime, env: EnvFixture) -> None:
    batch = identity(env)
    results = await joined(runtime.database, [join(batch, max_items=2) for _ in range(7)])
    assert [r.outcome for r in results] == [JoinOutcome.WAIT, JoinOutcome.END] * 3 + [JoinOutcome.WAIT]
    assert len({r.batch_id for r in results}) == 4
    assert [r.closed_now for r in results] == [False, True] * 3 + [False]
    assert len(await open_batches(runtime, batch)) == 1


async def test_flush_leading_lets_the_first_run_go_and_the_second_carries_the_batch(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    entries = [join(batch, flush_leading=True, data={"n": n}) for n in range(3)]
    [leading] = await joined(runtime.database, entries[:1])
    assert (leading.outcome, leading.opened, leading.run_id, leading.activity_count) == (
        JoinOutcome.CONTINUE,
        True,
        None,
        0,
    )
    [second, third] = await joined(runtime.database, entries[1:], at(5))
    assert (second.outcome, second.run_id, second.activity_count) == (JoinOutcome.WAIT, entries[1].run_id, 1)
    assert (third.outcome, third.run_id, third.closes_at) == (JoinOutcome.END, entries[1].run_id, at(60))
    flush = await flushed(runtime, env, second, at(60))
    assert [a.data["n"] for a in flush.contents.activities] == [1, 2] and flush.total_activities == 2


async def test_a_flush_leading_batch_nobody_joined_ends_with_its_window(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    [leading] = await joined(runtime.database, [join(batch, flush_leading=True)])
    [next_leading] = await joined(runtime.database, [join(batch, now=at(61), flush_leading=True)], at(61))
    assert next_leading.outcome is JoinOutcome.CONTINUE and next_leading.batch_id != leading.batch_id


async def test_rendering_takes_the_first_or_last_activities_and_distinct_actors(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    actors = ["a", "b", "a", "c", "d", "b", None, "e"]
    entries = [join(batch, actor=actor, data={"n": n}) for n, actor in enumerate(actors)]
    [opening, *_] = await joined(runtime.database, entries)

    first = await flushed(runtime, env, opening, at(60), limit=3)
    assert [a.data["n"] for a in first.contents.activities] == [0, 1, 2]
    assert first.contents.actors == [RecipientKey.user(a) for a in ("a", "b", "c")]
    assert (first.total_activities, first.contents.total_actors) == (8, 5)
    assert first.contents.activities[0].actor == RecipientKey.user("a")


async def test_rendering_the_newest_keeps_them_oldest_first(runtime: Runtime, env: EnvFixture) -> None:
    batch = identity(env)
    actors = ["a", "b", "a", "c", "d", "b", None, "e"]
    [opening, *_] = await joined(
        runtime.database, [join(batch, actor=a, data={"n": n}) for n, a in enumerate(actors)]
    )
    last = await flushed(runtime, env, opening, at(60), limit=3, newest=True)
    assert [a.data["n"] for a in last.contents.activities] == [5, 6, 7]
    assert last.contents.activities[1].actor is None
    # The last three distinct actors to act: d (4), b (5), e (7).
    assert last.contents.actors == [RecipientKey.user(a) for a in ("d", "b", "e")]
    assert last.contents.total_actors == 5


async def test_cancelled_runs_leave_an_open_batch_and_its_carrier_stays(
    runtime: Runtime, env: EnvFixture
) -> None:
    batch = identity(env)
    entries = [join(batch, data={"n": n}) for n in range(3)]
    [opening, *_] = await joined(runtime.database, entries)
    gone = await removed(runtime, env, [entries[1].run_id, entries[0].run_id, str(uuid.uuid4())], at(30))
    assert sorted((r.run_id, r.carrier) for r in gone) == sorted(
        [(entries[0].run_id, True), (entries[1].run_id, False)]
    )
    assert {r.batch_id for r in gone} == {opening.batch_id}
    [row] = await open_batches(runtime, batch)
    assert row.activity_count == 1
    [after] = await joined(runtime.database, [join(batch, now=at(40), data={"n": 3})], at(40))
    assert after.activity_count == 2 and after.run_id == entries[0].run_id
    flush = await flushed(runtime, env, opening, at(60))
    assert [a.data["n"] for a in flush.contents.activities] == [2, 3] and flush.total_activities == 2


async def test_a_batch_whose_activities_were_all_cancelled_flushes_empty(
    runtime: Runtime, env: EnvFixture
) -> None:
    entries = [join(identity(env)) for _ in range(2)]
    [opening, _] = await joined(runtime.database, entries)
    assert len(await removed(runtime, env, [e.run_id for e in entries], at(1))) == 2
    flush = await flushed(runtime, env, opening, at(60))
    assert (flush.outcome, flush.total_activities, flush.contents.activities) == (FlushOutcome.FLUSHED, 0, [])
    assert flush.contents.total_actors == 0


async def test_a_closed_batch_keeps_its_activities_when_runs_are_cancelled(
    runtime: Runtime, env: EnvFixture
) -> None:
    entries = [join(identity(env)) for _ in range(2)]
    [opening, _] = await joined(runtime.database, entries)
    assert await removed(runtime, env, [entries[1].run_id], at(60)) == []
    other = await _other_env(runtime)
    async with runtime.database.writer.begin() as connection:
        assert await remove_activities(connection, other, [entries[1].run_id], at(1)) == []
    assert (await flushed(runtime, env, opening, at(60))).total_activities == 2


async def test_ten_thousand_activities_page_through(runtime: Runtime, env: EnvFixture) -> None:
    batch = identity(env)
    entries = [join(batch, data={"n": n, "even": n % 2 == 0}) for n in range(10_000)]
    results = await joined(runtime.database, entries)
    assert results[-1].activity_count == 10_000
    seen: list[int] = []
    page = PageRequest(page_size=50)
    while True:
        found, result = await activities_page(runtime.database, env.id, results[0].batch_id, page)
        seen.extend(activity.data["n"] for activity in found)
        if result.after is None:
            break
        page = PageRequest(page_size=50, after=result.after)
    assert seen == list(range(10_000))
    back, _ = await activities_page(
        runtime.database, env.id, results[0].batch_id, PageRequest(page_size=3, before=result.before)
    )
    assert [a.data["n"] for a in back] == [9_947, 9_948, 9_949]
    even, _ = await activities_page(
        runtime.database, env.id, results[0].batch_id, PageRequest(page_size=5), trigger_data={"even": True}
    )
    assert [a.data["n"] for a in even] == [0, 2, 4, 6, 8]
    assert len({a.id for a in found}) == len(found)
    other, _ = await activities_page(runtime.database, await _other_env(runtime), results[0].batch_id, page)
    assert other == []
    flush = await flushed(runtime, env, results[0], at(60), limit=100, newest=True)
    assert [a.data["n"] for a in flush.contents.activities] == list(range(9_900, 10_000))


async def test_statements_do_not_grow_with_the_entries(runtime: Runtime, env: EnvFixture) -> None:
    async def statements(count: int) -> tuple[int, int, int]:
        # 21 batches, each joined by several runs, which fill them (two activities) and open new ones.
        entries = [
            join(identity(env, user=f"user-{count}-{n % 7}", key=str(n % 3)), max_items=2, data={"n": n})
            for n in range(count)
        ]
        with count_statements(runtime.database) as counted:
            results = await joined(runtime.database, entries)
        joining = counted.count
        with count_statements(runtime.database) as counted:
            gone = await removed(runtime, env, [e.run_id for e in entries[-21:]], at(1))
        assert len(gone) == 21
        removing = counted.count
        carriers = {r.batch_id: r.run_id for r in results if r.outcome is JoinOutcome.WAIT}
        requests = [BatchFlush(batch_id, str(run_id), 10, False) for batch_id, run_id in carriers.items()]
        with count_statements(runtime.database) as counted:
            async with runtime.database.writer.begin() as connection:
                flushes = await flush_batches(connection, env.id, requests, at(60))
        assert {f.outcome for f in flushes} == {FlushOutcome.FLUSHED}
        return joining, removing, counted.count

    assert await statements(63) == await statements(651) == (4, 3, 4)


async def test_two_transactions_joining_one_batch_make_one_opener(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    require_postgres(runtime)
    for trial in range(10):
        batch = identity(env, key=f"race-{trial}")
        first, second = join(batch), join(batch)
        one, two = await asyncio.gather(joined(runtime.database, [first]), joined(second_database, [second]))
        results = one + two
        assert sorted(r.outcome for r in results) == [JoinOutcome.END, JoinOutcome.WAIT]
        [carrier] = [r for r in results if r.outcome is JoinOutcome.WAIT]
        assert {r.run_id for r in results} == {carrier.run_id} and {r.batch_id for r in results} == {
            carrier.batch_id
        }
        [row] = await open_batches(runtime, batch)
        assert (row.id, row.activity_count) == (carrier.batch_id, 2)


async def test_a_join_waits_for_the_uncommitted_opener_and_then_joins_its_batch(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    require_postgres(runtime)
    batch = identity(env)
    first, second = join(batch), join(batch)
    async with runtime.database.writer.begin() as connection:
        [opening] = await join_batches(connection, [first], T0)
        waiting = asyncio.create_task(joined(second_database, [second], at(1)))
        await wait_until_blocked(runtime.database)
        assert not waiting.done()
    [joining] = await waiting
    assert (joining.outcome, joining.batch_id, joining.run_id) == (
        JoinOutcome.END,
        opening.batch_id,
        first.run_id,
    )


async def test_a_flush_and_a_join_at_the_close_lose_no_activity(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    require_postgres(runtime)
    for trial in range(12):
        batch = identity(env, key=f"close-{trial}")
        [opening] = await joined(runtime.database, [join(batch)])
        # The joining run's clock is a moment behind the carrier's: it still sees the window open.
        late = join(batch, now=at(59))
        flush_result, [late_result] = await asyncio.gather(
            flushed(runtime, env, opening, at(60)), joined(second_database, [late], at(59))
        )
        if late_result.batch_id == opening.batch_id:  # joined first: the flush waited and took it
            assert late_result.outcome is JoinOutcome.END and flush_result.total_activities == 2
        else:  # flushed first: the late run opened the next batch
            assert late_result.opened and flush_result.total_activities == 1
        assert flush_result.outcome is FlushOutcome.FLUSHED


async def test_crossing_joins_do_not_deadlock(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    require_postgres(runtime)
    users = [f"crossing-{n}" for n in range(20)]
    for _ in range(5):
        forwards = [join(identity(env, user=user)) for user in users]
        backwards = [join(identity(env, user=user)) for user in reversed(users)]
        await asyncio.gather(joined(runtime.database, forwards), joined(second_database, backwards))
    for user in users:
        [row] = await open_batches(runtime, identity(env, user=user))
        assert row.activity_count == 10

"""One suite for every queue engine: the session's store parametrises it, so the same assertions hold for
`SQLiteQueueEngine` and `PostgresQueueEngine` (cf. Oban's `engine_test.exs`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

import clarion.store.clock
from clarion.errors import ConflictError
from clarion.jobs.engines.base import QueueEngine, UniqueKeyContendedError
from clarion.jobs.job import Job, JobRecord, JobState
from clarion.runtime import Runtime, create_queue_engine
from clarion.store.tables import jobs, workers
from tests.jobs.conftest import FakeClock

WORKER = "worker-a"
LEASE = 30.0


async def claim_one(engine: QueueEngine, queue: str, worker: str = WORKER) -> JobRecord:
    (job,) = await engine.claim(queue, 1, worker, LEASE)
    return job


async def state_of(engine: QueueEngine, job_id: int) -> JobRecord:
    job = await engine.get(job_id)
    assert job is not None
    return job


@contextmanager
def writes(engine: QueueEngine) -> Iterator[list[str]]:
    """The statements sent to the store meanwhile that change rows."""
    recorded: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if re.search(r"\b(INSERT|UPDATE|DELETE)\b", re.sub(r"FOR UPDATE", "", statement)):
            recorded.append(statement)

    target = engine.database.writer.sync_engine
    sa.event.listen(target, "before_cursor_execute", record)
    try:
        yield recorded
    finally:
        sa.event.remove(target, "before_cursor_execute", record)


async def test_insert_returns_an_available_job(engine: QueueEngine, queue: str, clock: FakeClock) -> None:
    job = await engine.enqueue(Job("test.echo", {"n": 1}, queue=queue, priority=3, max_attempts=5))
    assert job.state is JobState.AVAILABLE
    assert (job.kind, job.args, job.queue, job.priority, job.max_attempts) == (
        "test.echo",
        {"n": 1},
        queue,
        3,
        5,
    )
    assert job.attempt == 0
    assert job.errors == []
    assert job.scheduled_at == clock.now
    assert not job.conflict


@pytest.mark.parametrize("own_transaction", [False, True], ids=["insert_all", "enqueue_all"])
async def test_insert_all_stores_each_job_as_insert_does(
    engine: QueueEngine, queue: str, clock: FakeClock, own_transaction: bool
) -> None:
    later = clock.now + timedelta(minutes=5)
    batch = [
        Job("test.echo", {"n": 1, "nested": {"big": 2**70}}, queue=queue, priority=3, max_attempts=5),
        Job("test.echo", {"n": 2}, queue=queue, scheduled_at=later, unique_key=f"{queue}:once"),
        Job("test.echo", {"n": 3}, queue=queue, unique_key=f"{queue}:once"),
    ]
    if own_transaction:
        await engine.enqueue_all(batch)
    else:
        async with engine.database.writer.begin() as connection:
            assert await engine.insert_all(connection, batch) == 2, "the repeated unique key is skipped"
    [now] = await engine.claim(queue, 10, WORKER, LEASE)
    assert (now.kind, now.args, now.priority, now.max_attempts, now.attempt) == (
        "test.echo",
        {"n": 1, "nested": {"big": 2**70}},
        3,
        5,
        1,
    )
    assert now.errors == []
    assert now.scheduled_at == clock.now
    clock.advance(300)
    [delayed] = await engine.claim(queue, 10, WORKER, LEASE)
    assert (delayed.args, delayed.unique_key, delayed.scheduled_at) == ({"n": 2}, f"{queue}:once", later)
    assert await engine.retry(delayed, "boom") is JobState.RETRYABLE
    assert [entry["error"] for entry in (await state_of(engine, delayed.id)).errors] == ["boom"]


async def test_claim_order_is_priority_then_scheduled_at_then_id(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    earlier = clock.now - timedelta(seconds=10)
    low = await engine.enqueue(Job("k", queue=queue, priority=5))
    first = await engine.enqueue(Job("k", queue=queue, priority=0))
    second = await engine.enqueue(Job("k", queue=queue, priority=0))
    oldest = await engine.enqueue(Job("k", queue=queue, priority=0, scheduled_at=earlier))
    claimed = await engine.claim(queue, 10, WORKER, LEASE)
    assert [job.id for job in claimed] == [oldest.id, first.id, second.id, low.id]
    assert {job.state for job in claimed} == {JobState.EXECUTING}
    assert {job.attempt for job in claimed} == {1}
    assert {job.attempted_by for job in claimed} == {WORKER}
    assert {job.lease_expires_at for job in claimed} == {clock.now + timedelta(seconds=LEASE)}


async def test_claim_takes_at_most_the_demand(engine: QueueEngine, queue: str) -> None:
    for _ in range(5):
        await engine.enqueue(Job("k", queue=queue))
    assert len(await engine.claim(queue, 2, WORKER, LEASE)) == 2
    assert len(await engine.claim(queue, 10, WORKER, LEASE)) == 3
    assert await engine.claim(queue, 10, WORKER, LEASE) == []
    assert await engine.claim(queue, 0, WORKER, LEASE) == []


async def test_claim_only_takes_its_queue(engine: QueueEngine, queue: str) -> None:
    await engine.enqueue(Job("k", queue=queue + "-other"))
    assert await engine.claim(queue, 10, WORKER, LEASE) == []


async def test_scheduled_jobs_wait_for_their_time(engine: QueueEngine, queue: str, clock: FakeClock) -> None:
    job = await engine.enqueue(Job("k", queue=queue, scheduled_at=clock.now + timedelta(seconds=60)))
    assert job.state is JobState.SCHEDULED
    assert await engine.claim(queue, 10, WORKER, LEASE) == []
    clock.advance(59)
    assert await engine.claim(queue, 10, WORKER, LEASE) == []
    clock.advance(1)
    assert [j.id for j in await engine.claim(queue, 10, WORKER, LEASE)] == [job.id]


async def test_concurrent_claimers_never_share_a_job(engine: QueueEngine, queue: str) -> None:
    total = 200
    async with engine.database.writer.begin() as connection:
        assert (
            await engine.insert_all(connection, [Job("k", {"i": i}, queue=queue) for i in range(total)])
            == total
        )

    async def claimer(name: str) -> list[int]:
        taken: list[int] = []
        while batch := await engine.claim(queue, 7, name, LEASE):
            taken.extend(job.id for job in batch)
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(claimer(f"worker-{n}") for n in range(8)))
    claimed = [job_id for taken in results for job_id in taken]
    assert len(claimed) == total
    assert len(set(claimed)) == total


async def test_complete(engine: QueueEngine, queue: str, clock: FakeClock) -> None:
    await engine.enqueue(Job("k", queue=queue))
    job = await claim_one(engine, queue)
    assert await engine.complete(job)
    stored = await state_of(engine, job.id)
    assert stored.state is JobState.COMPLETED
    assert stored.completed_at == clock.now
    assert stored.lease_expires_at is None
    assert not await engine.complete(job), "a job completes once"


async def test_failed_attempts_back_off_then_discard(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    await engine.enqueue(Job("k", queue=queue, max_attempts=3))
    job = await claim_one(engine, queue)
    assert await engine.retry(job, "boom 1") is JobState.RETRYABLE
    stored = await state_of(engine, job.id)
    assert stored.state is JobState.RETRYABLE
    first_delay = (stored.scheduled_at - clock.now).total_seconds()
    assert 17 * 0.9 <= first_delay <= 17 * 1.1
    assert [(e["attempt"], e["error"]) for e in stored.errors] == [(1, "boom 1")]
    assert await engine.claim(queue, 1, WORKER, LEASE) == [], "not before its backoff"

    clock.advance(first_delay)
    job = await claim_one(engine, queue)
    assert job.attempt == 2
    assert await engine.retry(job, "boom 2") is JobState.RETRYABLE
    stored = await state_of(engine, job.id)
    second_delay = (stored.scheduled_at - clock.now).total_seconds()
    assert 19 * 0.9 <= second_delay <= 19 * 1.1

    clock.advance(second_delay)
    job = await claim_one(engine, queue)
    assert job.attempt == 3
    assert await engine.retry(job, "boom 3") is JobState.DISCARDED
    stored = await state_of(engine, job.id)
    assert stored.state is JobState.DISCARDED
    assert stored.discarded_at == clock.now
    assert [e["attempt"] for e in stored.errors] == [1, 2, 3]
    clock.advance(3600)
    assert await engine.claim(queue, 1, WORKER, LEASE) == []


async def test_unique_key_returns_the_holding_job(engine: QueueEngine, queue: str) -> None:
    key = f"{queue}:unique"
    first = await engine.enqueue(Job("k", {"v": 1}, queue=queue, unique_key=key))
    again = await engine.enqueue(Job("k", {"v": 2}, queue=queue, unique_key=key))
    assert again.conflict
    assert again.id == first.id
    assert again.args == {"v": 1}

    job = await claim_one(engine, queue)
    assert await engine.complete(job)
    after_completion = await engine.enqueue(Job("k", queue=queue, unique_key=key))
    assert after_completion.conflict, "a completed job still holds its key"
    assert after_completion.id == first.id

    async with engine.database.writer.begin() as connection:
        inserted = await engine.insert_all(
            connection,
            [Job("k", queue=queue, unique_key=key), Job("k", queue=queue, unique_key=key + "-2")],
        )
    assert inserted == 1


async def test_cancelled_and_discarded_jobs_release_their_key(engine: QueueEngine, queue: str) -> None:
    key = f"{queue}:unique"
    first = await engine.enqueue(Job("k", queue=queue, unique_key=key))
    assert await engine.cancel(await claim_one(engine, queue), "not wanted")
    second = await engine.enqueue(Job("k", queue=queue, unique_key=key, max_attempts=1))
    assert not second.conflict
    assert second.id != first.id
    assert await engine.retry(await claim_one(engine, queue), "boom") is JobState.DISCARDED
    third = await engine.enqueue(Job("k", queue=queue, unique_key=key))
    assert not third.conflict


async def test_insert_belongs_to_the_callers_transaction(engine: QueueEngine, queue: str) -> None:
    with pytest.raises(RuntimeError):
        async with engine.database.writer.begin() as connection:
            job = await engine.insert(connection, Job("k", queue=queue, unique_key=f"{queue}:tx"))
            raise RuntimeError("the caller's write failed")
    assert await engine.get(job.id) is None
    assert await engine.claim(queue, 10, WORKER, LEASE) == []
    assert not (await engine.enqueue(Job("k", queue=queue, unique_key=f"{queue}:tx"))).conflict


async def test_expired_lease_is_rescued_and_late_acks_are_ignored(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    await engine.enqueue(Job("k", queue=queue))
    lost = await claim_one(engine, queue, "dead-worker")
    clock.advance(LEASE - 1)
    await engine.rescue()
    assert (await state_of(engine, lost.id)).state is JobState.EXECUTING, "the lease still runs"

    clock.advance(2)
    rescued, _ = await engine.rescue()
    assert rescued >= 1
    stored = await state_of(engine, lost.id)
    assert stored.state is JobState.AVAILABLE
    assert stored.lease_expires_at is None
    assert "dead-worker" in stored.errors[-1]["error"]

    again = await claim_one(engine, queue, "live-worker")
    assert again.id == lost.id
    assert again.attempt == 2
    assert not await engine.complete(lost), "the dead worker's late ack changes nothing"
    assert await engine.retry(lost, "late") is None
    assert await engine.complete(again)
    assert (await state_of(engine, lost.id)).state is JobState.COMPLETED


async def test_a_job_is_held_for_a_transaction_only_by_its_executing_attempt(
    engine: QueueEngine, queue: str, clock: FakeClock, runtime: Runtime
) -> None:
    await engine.enqueue(Job("k", queue=queue))
    lost = await claim_one(engine, queue, "dead-worker")
    async with runtime.database.writer.begin() as connection:
        assert await engine.hold_in(connection, lost)
    assert (await state_of(engine, lost.id)).state is JobState.EXECUTING, "holding does not complete"

    clock.advance(LEASE + 1)
    await engine.rescue()
    again = await claim_one(engine, queue, "live-worker")
    async with runtime.database.writer.begin() as connection:
        assert not await engine.hold_in(connection, lost), "the rescued attempt no longer holds it"
        assert await engine.hold_in(connection, again)
        assert await engine.complete_in(connection, again)


async def test_rescue_discards_a_job_out_of_attempts(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    await engine.enqueue(Job("k", queue=queue, max_attempts=1))
    job = await claim_one(engine, queue)
    clock.advance(LEASE + 1)
    _, discarded = await engine.rescue()
    assert discarded >= 1
    stored = await state_of(engine, job.id)
    assert stored.state is JobState.DISCARDED
    assert stored.discarded_at == clock.now


async def test_heartbeat_keeps_the_lease(engine: QueueEngine, queue: str, clock: FakeClock) -> None:
    await engine.enqueue(Job("k", queue=queue))
    job = await claim_one(engine, queue)
    for _ in range(4):
        clock.advance(LEASE / 2)
        assert await engine.extend_leases(WORKER, [job], LEASE) == 1
        await engine.rescue()
    assert (await state_of(engine, job.id)).state is JobState.EXECUTING
    assert await engine.extend_leases("another-worker", [job], LEASE) == 0
    assert await engine.complete(job)


async def test_snooze_reschedules_without_spending_an_attempt(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    await engine.enqueue(Job("k", queue=queue, max_attempts=1))
    job = await claim_one(engine, queue)
    assert await engine.snooze(job, 60)
    stored = await state_of(engine, job.id)
    assert stored.state is JobState.SCHEDULED
    assert stored.scheduled_at == clock.now + timedelta(seconds=60)
    assert stored.max_attempts == 2
    assert await engine.claim(queue, 1, WORKER, LEASE) == []
    clock.advance(60)
    again = await claim_one(engine, queue)
    assert again.attempt == 2
    assert await engine.retry(again, "boom") is JobState.DISCARDED


async def test_cancel_by_the_handler(engine: QueueEngine, queue: str, clock: FakeClock) -> None:
    await engine.enqueue(Job("k", queue=queue))
    job = await claim_one(engine, queue)
    assert await engine.cancel(job, "nothing to do")
    stored = await state_of(engine, job.id)
    assert stored.state is JobState.CANCELLED
    assert stored.cancelled_at == clock.now
    assert "nothing to do" in stored.errors[-1]["error"]


async def test_prune_deletes_only_old_finished_jobs(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    old = await engine.enqueue(Job("k", queue=queue))
    assert await engine.complete(await claim_one(engine, queue))
    clock.advance(3600)
    recent = await engine.enqueue(Job("k", queue=queue))
    assert await engine.complete(await claim_one(engine, queue))
    waiting = await engine.enqueue(Job("k", queue=queue, scheduled_at=clock.now - timedelta(days=2)))

    assert await engine.prune(timedelta(minutes=30)) >= 1
    assert await engine.get(old.id) is None
    assert await engine.get(recent.id) is not None
    assert await engine.get(waiting.id) is not None


async def test_prune_works_in_batches(engine: QueueEngine, queue: str, clock: FakeClock) -> None:
    async with engine.database.writer.begin() as connection:
        await engine.insert_all(connection, [Job("k", queue=queue) for _ in range(5)])
    for job in await engine.claim(queue, 5, WORKER, LEASE):
        assert await engine.complete(job)
    clock.advance(3600)
    assert await engine.prune(timedelta(minutes=1), limit=2) == 2


@pytest.mark.parametrize("own_transaction", [False, True], ids=["insert", "enqueue_all"])
async def test_listeners_are_woken_by_committed_inserts(
    engine: QueueEngine, queue: str, own_transaction: bool
) -> None:
    woken: asyncio.Queue[str] = asyncio.Queue()
    listener = await engine.listen(woken.put_nowait)
    try:
        if own_transaction:
            await engine.enqueue_all([Job("k", queue=queue), Job("k", queue=queue)])
        else:
            async with engine.database.writer.begin() as connection:
                await engine.insert(connection, Job("k", queue=queue))
        assert await asyncio.wait_for(_next_for(woken, queue), 5) == queue
    finally:
        await listener.close()


async def test_a_closed_listener_is_not_woken(engine: QueueEngine, queue: str, runtime: Runtime) -> None:
    woken: list[str] = []
    listener = await engine.listen(woken.append)
    await listener.close()
    await engine.enqueue(Job("k", queue=queue))
    await asyncio.sleep(0.2)
    assert queue not in woken


async def _next_for(woken: asyncio.Queue[str], queue: str) -> str:
    while (name := await woken.get()) != queue:
        pass
    return name


async def test_an_idle_claim_writes_nothing(engine: QueueEngine, queue: str, clock: FakeClock) -> None:
    await engine.enqueue(Job("k", queue=queue, scheduled_at=clock.now + timedelta(seconds=60)))
    with writes(engine) as idle:
        assert await engine.claim(queue, 10, WORKER, LEASE) == []
    assert idle == []
    clock.advance(60)
    with writes(engine) as due:
        assert len(await engine.claim(queue, 10, WORKER, LEASE)) == 1
    assert len(due) == 2, "staged, then claimed"


async def test_a_rescued_attempt_is_not_renewed_when_its_worker_claims_the_job_again(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    await engine.enqueue(Job("k", queue=queue))
    stale = await claim_one(engine, queue)
    clock.advance(LEASE + 1)
    await engine.rescue()
    live = await claim_one(engine, queue)
    assert (live.id, live.attempt, live.attempted_by) == (stale.id, 2, stale.attempted_by)

    assert await engine.extend_leases(WORKER, [stale], LEASE) == 0
    clock.advance(LEASE / 2)
    assert await engine.extend_leases(WORKER, [stale, live], LEASE) == 1
    assert (await state_of(engine, live.id)).lease_expires_at == clock.now + timedelta(seconds=LEASE)
    assert not await engine.complete(stale), "the stale attempt's ack changes nothing"
    assert await engine.complete(live)


async def test_discarding_runs_the_discard_hook_in_the_same_transaction(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    seen: list[tuple[int, JobState, str]] = []

    async def hook(connection: AsyncConnection, job: JobRecord) -> None:
        stored = (await connection.execute(sa.select(jobs.c.state).where(jobs.c.id == job.id))).scalar_one()
        seen.append((job.id, job.state, stored))

    await engine.enqueue(Job("k", queue=queue, max_attempts=2))
    job = await claim_one(engine, queue)
    assert await engine.retry(job, "boom 1", hook) is JobState.RETRYABLE
    assert seen == [], "not while attempts remain"
    clock.advance(3600)
    job = await claim_one(engine, queue)
    assert await engine.retry(job, "boom 2", hook) is JobState.DISCARDED
    assert seen == [(job.id, JobState.DISCARDED, "discarded")]
    assert await engine.retry(job, "late", hook) is None
    assert len(seen) == 1, "an ack for a job no longer executing runs no hook"


async def test_a_failing_discard_hook_is_undone_and_the_job_discarded_anyway(
    engine: QueueEngine, queue: str
) -> None:
    async def broken(connection: AsyncConnection, job: JobRecord) -> None:
        await connection.execute(jobs.update().where(jobs.c.id == job.id).values(kind="written-by-hook"))
        raise RuntimeError("a bug in the hook")

    await engine.enqueue(Job("k", queue=queue, max_attempts=1))
    job = await claim_one(engine, queue)
    assert await engine.retry(job, "boom", broken) is JobState.DISCARDED
    stored = await state_of(engine, job.id)
    assert (stored.state, stored.kind) == (JobState.DISCARDED, "k")


async def test_rescue_runs_the_discard_hook_of_each_job_out_of_attempts(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    seen: list[int] = []

    async def hook(connection: AsyncConnection, job: JobRecord) -> None:
        assert job.state is JobState.DISCARDED
        seen.append(job.id)

    await engine.enqueue(Job("hooked", queue=queue, max_attempts=1))
    await engine.enqueue(Job("hooked", queue=queue, max_attempts=2))
    await engine.enqueue(Job("unhooked", queue=queue, max_attempts=1))
    last, spare, other = await engine.claim(queue, 3, WORKER, LEASE)
    clock.advance(LEASE + 1)
    rescued, discarded = await engine.rescue(on_discarded={"hooked": hook})
    assert rescued >= 1
    assert discarded >= 2
    assert seen == [last.id]
    assert (await state_of(engine, spare.id)).state is JobState.AVAILABLE
    for job in (last, other):
        stored = await state_of(engine, job.id)
        assert stored.state is JobState.DISCARDED
        assert stored.discarded_at == clock.now
        assert [(e["attempt"], e["error"]) for e in stored.errors] == [
            (1, f"rescued: the lease of worker {WORKER} expired")
        ]


async def test_rescue_changes_every_stalled_job_in_one_statement(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    async with engine.database.writer.begin() as connection:
        await engine.insert_all(connection, [Job("k", queue=queue, max_attempts=i % 2 + 1) for i in range(6)])
    await engine.claim(queue, 6, WORKER, LEASE)
    clock.advance(LEASE + 1)
    with writes(engine) as statements:
        rescued, discarded = await engine.rescue()
    assert rescued >= 3
    assert discarded >= 3
    assert len(statements) == 1


async def test_concurrent_inserts_of_one_unique_key_insert_one_job(engine: QueueEngine, queue: str) -> None:
    key = f"{queue}:race"
    results = await asyncio.gather(
        *(engine.enqueue(Job("k", {"n": n}, queue=queue, unique_key=key)) for n in range(16))
    )
    inserted = [job for job in results if not job.conflict]
    assert len(inserted) == 1
    assert {job.id for job in results} == {inserted[0].id}


async def test_unique_inserts_racing_with_the_key_being_released_never_fail(
    engine: QueueEngine, queue: str
) -> None:
    key = f"{queue}:churn"

    async def release() -> None:
        for _ in range(30):
            for job in await engine.claim(queue, 1, WORKER, LEASE):
                assert await engine.cancel(job, "released")
            await asyncio.sleep(0)

    async def insert() -> JobRecord:
        return await engine.enqueue(Job("k", queue=queue, unique_key=key))

    releasing = asyncio.create_task(release())
    results = await asyncio.gather(*(insert() for _ in range(30)))
    await releasing
    assert any(not job.conflict for job in results)
    async with engine.database.reader.connect() as connection:
        holders = (
            await connection.execute(
                sa.select(sa.func.count()).where(
                    jobs.c.unique_key == key, jobs.c.state.not_in(["cancelled", "discarded"])
                )
            )
        ).scalar_one()
    assert holders <= 1


async def test_a_unique_key_that_keeps_changing_hands_is_a_conflict(
    engine: QueueEngine, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"{queue}:contended"
    await engine.enqueue(Job("k", queue=queue, unique_key=key))

    async def released_every_time(connection: AsyncConnection, unique_key: str | None) -> None:
        return None

    monkeypatch.setattr(engine, "_unique_key_holder", released_every_time)
    with pytest.raises(UniqueKeyContendedError) as raised:
        await engine.enqueue(Job("k", queue=queue, unique_key=key))
    assert isinstance(raised.value, ConflictError)
    assert raised.value.status == 409


# -- workers' heartbeats ----------------------------------------------------------------------------

DEAD_AFTER = 6.0


async def worker_rows(engine: QueueEngine, *worker_ids: str) -> dict[str, sa.Row[Any]]:
    async with engine.database.reader.connect() as connection:
        rows = await connection.execute(sa.select(workers).where(workers.c.id.in_(worker_ids)))
        return {row.id: row for row in rows}


async def test_a_beat_registers_the_worker_and_later_beats_renew_it(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    worker = f"{queue}-worker"
    await engine.beat(worker, [queue, "other"])
    first = (await worker_rows(engine, worker))[worker]
    assert (first.queues, first.started_at, first.beat_at) == ([queue, "other"], clock.now, clock.now)
    started = clock.now
    clock.advance(2)
    await engine.beat(worker, [queue, "other"])
    renewed = (await worker_rows(engine, worker))[worker]
    assert (renewed.started_at, renewed.beat_at) == (started, clock.now)
    await engine.retire(worker)
    assert await worker_rows(engine, worker) == {}


async def test_the_jobs_of_a_worker_silent_for_a_few_beats_are_rescued_before_their_lease_runs_out(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    dead, live = f"{queue}-dead", f"{queue}-live"
    for worker in (dead, live):
        await engine.beat(worker, [queue])
    await engine.enqueue(Job("k", queue=queue))
    await engine.enqueue(Job("k", queue=queue))
    lost = await claim_one(engine, queue, dead)
    kept = await claim_one(engine, queue, live)
    clock.advance(DEAD_AFTER - 1)
    await engine.beat(live, [queue])
    await engine.rescue(dead_after=DEAD_AFTER)
    assert (await state_of(engine, lost.id)).state is JobState.EXECUTING, "silent, not yet dead"

    clock.advance(2)
    rescued, _ = await engine.rescue(dead_after=DEAD_AFTER)
    assert rescued >= 1
    stored = await state_of(engine, lost.id)
    assert stored.state is JobState.AVAILABLE
    assert stored.lease_expires_at is None
    assert stored.errors[-1] == {
        "attempt": 1,
        "at": clock.now.isoformat(),
        "error": f"rescued: worker {dead} died",
    }
    assert lost.lease_expires_at is not None and clock.now < lost.lease_expires_at, "not the lease's doing"
    assert (await state_of(engine, kept.id)).state is JobState.EXECUTING
    assert set(await worker_rows(engine, dead, live)) == {live}, "the dead worker's row is deleted"
    assert not await engine.complete(lost), "the dead worker's late ack changes nothing"
    assert await engine.complete(kept)


async def test_a_rescuer_never_takes_itself_for_dead(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    me = f"{queue}-me"
    await engine.beat(me, [queue])
    await engine.enqueue(Job("k", queue=queue))
    job = await claim_one(engine, queue, me)
    clock.advance(DEAD_AFTER + 1)
    await engine.rescue(dead_after=DEAD_AFTER, rescuer=me)
    assert (await state_of(engine, job.id)).state is JobState.EXECUTING
    assert set(await worker_rows(engine, me)) == {me}
    rescued, _ = await engine.rescue(dead_after=DEAD_AFTER, rescuer=f"{queue}-other")
    assert rescued >= 1
    assert (await state_of(engine, job.id)).state is JobState.AVAILABLE


async def test_workers_named_dead_lose_their_jobs_at_once_with_or_without_a_row(
    engine: QueueEngine, queue: str
) -> None:
    beating, rowless, live = f"{queue}-beating", f"{queue}-rowless", f"{queue}-live"
    for worker in (beating, live):
        await engine.beat(worker, [queue])
    for _ in range(3):
        await engine.enqueue(Job("k", queue=queue))
    jobs_of = {worker: await claim_one(engine, queue, worker) for worker in (beating, rowless, live)}
    rescued, _ = await engine.rescue(dead_workers=[beating, rowless])
    assert rescued >= 2
    states = {worker: (await state_of(engine, job.id)).state for worker, job in jobs_of.items()}
    assert states == {beating: JobState.AVAILABLE, rowless: JobState.AVAILABLE, live: JobState.EXECUTING}
    assert set(await worker_rows(engine, beating, live)) == {live}


async def test_a_dead_workers_row_stays_while_a_job_of_its_still_executes(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    dead = f"{queue}-dead"
    await engine.beat(dead, [queue])
    for _ in range(2):
        await engine.enqueue(Job("k", queue=queue))
    first, second = await engine.claim(queue, 2, dead, LEASE)
    clock.advance(DEAD_AFTER + 1)
    await engine.rescue(limit=1, dead_after=DEAD_AFTER)
    assert set(await worker_rows(engine, dead)) == {dead}, "one of its jobs still executes"
    await engine.rescue(dead_after=DEAD_AFTER)
    assert {(await state_of(engine, job.id)).state for job in (first, second)} == {JobState.AVAILABLE}
    assert await worker_rows(engine, dead) == {}


async def test_a_dead_workers_job_out_of_attempts_is_discarded_with_its_hook(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    seen: list[int] = []

    async def hook(connection: AsyncConnection, job: JobRecord) -> None:
        seen.append(job.id)

    dead = f"{queue}-dead"
    await engine.beat(dead, [queue])
    await engine.enqueue(Job("hooked", queue=queue, max_attempts=1))
    job = await claim_one(engine, queue, dead)
    clock.advance(DEAD_AFTER + 1)
    _, discarded = await engine.rescue(on_discarded={"hooked": hook}, dead_after=DEAD_AFTER)
    assert discarded >= 1
    assert seen == [job.id]
    stored = await state_of(engine, job.id)
    assert (stored.state, stored.discarded_at) == (JobState.DISCARDED, clock.now)
    assert stored.errors[-1]["error"] == f"rescued: worker {dead} died"


async def test_a_worker_taken_for_dead_registers_again_with_its_next_beat(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    worker = f"{queue}-slow"
    await engine.beat(worker, [queue])
    clock.advance(DEAD_AFTER + 1)
    await engine.rescue(dead_after=DEAD_AFTER)
    assert await worker_rows(engine, worker) == {}
    await engine.beat(worker, [queue])
    assert (await worker_rows(engine, worker))[worker].beat_at == clock.now


async def test_an_idle_rescue_writes_nothing(engine: QueueEngine, clock: FakeClock) -> None:
    await engine.rescue(dead_after=DEAD_AFTER)  # whatever earlier tests left behind
    with writes(engine) as idle:
        assert await engine.rescue(dead_after=DEAD_AFTER, dead_workers=["nobody"]) == (0, 0)
    assert idle == []


# -- the database's clock ---------------------------------------------------------------------------


class HostClockAhead(datetime):
    """The host's clock, an hour ahead of the database's."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + timedelta(hours=1)


async def test_a_host_clock_running_ahead_rescues_no_live_job(
    runtime: Runtime, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_queue_engine(runtime.database)
    await engine.enqueue(Job("k", queue=queue))
    job = await claim_one(engine, queue, "live-worker")
    monkeypatch.setattr(clarion.store.clock, "datetime", HostClockAhead)
    await engine.rescue()
    assert (await state_of(engine, job.id)).state is JobState.EXECUTING
    assert await engine.complete(job)


async def test_the_database_clock_decides_due_times_and_leases(runtime: Runtime, queue: str) -> None:
    engine = create_queue_engine(runtime.database)
    host_now = datetime.now(UTC)
    due = await engine.enqueue(Job("k", queue=queue, scheduled_at=host_now - timedelta(seconds=1)))
    later = await engine.enqueue(Job("k", queue=queue, scheduled_at=host_now + timedelta(seconds=30)))
    assert (due.state, later.state) == (JobState.AVAILABLE, JobState.SCHEDULED)
    assert [job.id for job in await engine.claim(queue, 10, WORKER, LEASE)] == [due.id]
    claimed = await state_of(engine, due.id)
    assert claimed.attempted_at is not None
    assert claimed.lease_expires_at is not None
    assert claimed.lease_expires_at - claimed.attempted_at == timedelta(seconds=LEASE)
    assert abs(claimed.attempted_at - host_now) < timedelta(seconds=5), "the test's host is the database's"
    assert await engine.extend_leases(WORKER, [claimed], LEASE) == 1
    renewed = await state_of(engine, due.id)
    assert renewed.lease_expires_at is not None
    assert renewed.lease_expires_at >= claimed.lease_expires_at

    batch = [Job("k", queue=queue), Job("k", queue=queue, scheduled_at=host_now + timedelta(seconds=30))]
    async with engine.database.writer.begin() as connection:
        assert await engine.insert_all(connection, batch) == 2
    assert len(await engine.claim(queue, 10, WORKER, LEASE)) == 1, "the batch's delayed job waits"


async def test_sqlite_writes_the_database_clock_in_the_stored_layout(runtime: Runtime, queue: str) -> None:
    if runtime.database.dialect_name != "sqlite":
        pytest.skip("only SQLite keeps timestamps as text")
    engine = create_queue_engine(runtime.database)
    await engine.enqueue(Job("k", queue=queue))
    job = await claim_one(engine, queue)
    assert await engine.retry(job, "boom") is JobState.RETRYABLE
    columns = [jobs.c.scheduled_at, jobs.c.attempted_at, jobs.c.inserted_at]
    async with engine.database.reader.connect() as connection:
        stored = (
            await connection.execute(
                sa.select(*(sa.cast(column, sa.String) for column in columns)).where(jobs.c.id == job.id)
            )
        ).one()
    for text in stored:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", text), text


async def test_sqlite_finds_jobs_through_indexes_without_scanning_the_table(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    """Every statement of a job's life (a unique key taken and refused, staging, claiming, retrying,
    finishing, rescuing by lease and by heartbeat, pruning) reads the jobs through an index: the query
    plans SQLite makes for them, with the parameters they ran with, never scan the table."""
    if engine.database.dialect_name != "sqlite":
        pytest.skip("SQLite's query plans; PostgreSQL plans a small table by its own costs")
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "jobs" in statement and not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            statements.append((statement, parameters))

    target = engine.database.writer.sync_engine
    sa.event.listen(target, "before_cursor_execute", record)
    try:
        key = f"{queue}:unique"
        await engine.enqueue(Job("k", queue=queue, unique_key=key))
        assert (await engine.enqueue(Job("k", queue=queue, unique_key=key))).conflict
        await engine.enqueue(Job("k", queue=queue, scheduled_at=clock.now + timedelta(seconds=5)))
        clock.advance(10)
        assert await engine.retry(await claim_one(engine, queue), "boom") is JobState.RETRYABLE
        assert await engine.complete(await claim_one(engine, queue))
        clock.advance(3600)
        await claim_one(engine, queue, worker="worker-b")
        clock.advance(3600)
        rescued, _ = await engine.rescue()
        assert rescued >= 1, "worker-b's job, its lease run out (other tests' jobs may be rescued too)"
        await engine.beat("worker-c", [queue])
        await claim_one(engine, queue, worker="worker-c")
        clock.advance(LEASE / 2)
        rescued, _ = await engine.rescue(dead_after=LEASE / 4, dead_workers=["worker-d"])
        assert rescued >= 1, "worker-c's job, its heartbeat silent"
        await engine.prune(timedelta(minutes=1))
    finally:
        sa.event.remove(target, "before_cursor_execute", record)

    assert len(statements) >= 8
    async with engine.database.reader.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        for statement, parameters in statements:
            cursor = driver.cursor()
            await cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = [row[3] for row in await cursor.fetchall()]
            assert not [step for step in plan if re.match(r"SCAN jobs\b", step)], (statement, plan)

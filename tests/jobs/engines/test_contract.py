"""One suite for every queue engine: the session's store parametrises it, so the same assertions hold for
`SQLiteQueueEngine` and `PostgresQueueEngine` (cf. Oban's `engine_test.exs`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import Job, JobRecord, JobState
from clarion.runtime import Runtime
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
    async with engine.database.writer.begin() as connection:
        assert await engine.cancel_jobs(connection, [first.id]) == 1
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
        assert await engine.extend_leases(WORKER, [job.id], LEASE) == 1
        await engine.rescue()
    assert (await state_of(engine, job.id)).state is JobState.EXECUTING
    assert await engine.extend_leases("another-worker", [job.id], LEASE) == 0
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


async def test_cancel_jobs_stops_pending_and_running_jobs(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    running = await engine.enqueue(Job("k", queue=queue))
    await claim_one(engine, queue)
    running_job = await state_of(engine, running.id)
    pending = await engine.enqueue(Job("k", queue=queue))
    later = await engine.enqueue(Job("k", queue=queue, scheduled_at=clock.now + timedelta(hours=1)))
    done = await engine.enqueue(Job("k", queue=queue + "-done"))
    assert await engine.complete(await claim_one(engine, queue + "-done"))

    async with engine.database.writer.begin() as connection:
        assert await engine.cancel_jobs(connection, [running.id, pending.id, later.id, done.id]) == 3
    for job_id in (running.id, pending.id, later.id):
        assert (await state_of(engine, job_id)).state is JobState.CANCELLED
    assert (await state_of(engine, done.id)).state is JobState.COMPLETED
    assert not await engine.complete(running_job), "a cancelled job's outcome is ignored"
    clock.advance(7200)
    assert await engine.claim(queue, 10, WORKER, LEASE) == []


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


async def test_listeners_are_woken_by_committed_inserts(engine: QueueEngine, queue: str) -> None:
    woken: asyncio.Queue[str] = asyncio.Queue()
    listener = await engine.listen(woken.put_nowait)
    try:
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

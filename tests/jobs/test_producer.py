from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.executor import Executor
from clarion.jobs.job import Job, JobHandler, JobRecord, JobState, Outcome
from clarion.jobs.producer import Producer
from clarion.runtime import Runtime
from tests.jobs.conftest import FakeClock


async def wait_for_state(engine: QueueEngine, job_id: int, states: set[JobState]) -> JobRecord:
    """The job once it reaches one of `states`; a TimeoutError after ten seconds."""
    async with asyncio.timeout(10):
        while True:
            job = await engine.get(job_id)
            assert job is not None
            if job.state in states:
                return job
            await asyncio.sleep(0.02)


@asynccontextmanager
async def producing(
    engine: QueueEngine,
    handlers: Mapping[str, JobHandler],
    queue: str,
    *,
    limit: int = 5,
    lease_seconds: float = 60.0,
    grace_seconds: float = 15.0,
) -> AsyncIterator[Producer]:
    producer = Producer(
        engine,
        Executor(engine, handlers),
        queue=queue,
        limit=limit,
        worker_id="producer-test",
        lease_seconds=lease_seconds,
        poll_seconds=0.05,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop(grace_seconds)


async def test_a_queue_runs_at_most_its_limit_at_once(runtime: Runtime, queue: str) -> None:
    engine = runtime.queue
    running = 0
    most = 0

    async def slow(job: JobRecord) -> Outcome:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return None

    async with producing(engine, {"slow": slow}, queue, limit=2):
        jobs = [await engine.enqueue(Job("slow", queue=queue)) for _ in range(8)]
        for job in jobs:
            await wait_for_state(engine, job.id, {JobState.COMPLETED})
    assert most == 2


async def test_running_jobs_keep_their_lease(runtime: Runtime, queue: str) -> None:
    engine = runtime.queue
    release = asyncio.Event()

    async def held(job: JobRecord) -> Outcome:
        await release.wait()
        return None

    async with producing(engine, {"held": held}, queue, lease_seconds=0.3):
        job = await engine.enqueue(Job("held", queue=queue))
        claimed = await wait_for_state(engine, job.id, {JobState.EXECUTING})
        for _ in range(4):
            await asyncio.sleep(0.2)
            await engine.rescue()
        stored = await engine.get(job.id)
        assert stored is not None
        assert stored.state is JobState.EXECUTING
        assert stored.attempt == 1, "never rescued while the producer renews the lease"
        assert stored.lease_expires_at is not None
        assert claimed.lease_expires_at is not None
        assert stored.lease_expires_at > claimed.lease_expires_at
        release.set()
        await wait_for_state(engine, job.id, {JobState.COMPLETED})


async def test_stop_lets_jobs_finish_within_the_grace_period(runtime: Runtime, queue: str) -> None:
    engine = runtime.queue
    started = asyncio.Event()

    async def brief(job: JobRecord) -> Outcome:
        started.set()
        await asyncio.sleep(0.2)
        return None

    async with producing(engine, {"brief": brief}, queue, grace_seconds=5):
        job = await engine.enqueue(Job("brief", queue=queue))
        await asyncio.wait_for(started.wait(), 5)
    stored = await engine.get(job.id)
    assert stored is not None
    assert stored.state is JobState.COMPLETED


async def test_stop_gives_back_jobs_that_outlast_the_grace_period(runtime: Runtime, queue: str) -> None:
    engine = runtime.queue
    started = asyncio.Event()

    async def endless(job: JobRecord) -> Outcome:
        started.set()
        await asyncio.Event().wait()
        return None

    async with producing(engine, {"endless": endless}, queue, grace_seconds=0.1):
        job = await engine.enqueue(Job("endless", queue=queue, max_attempts=1))
        await asyncio.wait_for(started.wait(), 5)
    stored = await engine.get(job.id)
    assert stored is not None
    assert stored.state is JobState.AVAILABLE
    assert stored.lease_expires_at is None
    assert stored.max_attempts == 2, "the interrupted attempt is given back"


async def test_a_job_claimed_again_by_its_stalled_producer_keeps_its_new_lease(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    lease = 0.6
    started = {1: asyncio.Event(), 2: asyncio.Event()}
    release = {1: asyncio.Event(), 2: asyncio.Event()}

    async def stalls(job: JobRecord) -> Outcome:
        started[job.attempt].set()
        await release[job.attempt].wait()
        return None

    async with producing(engine, {"stalls": stalls}, queue, limit=2, lease_seconds=lease) as producer:
        job = await engine.enqueue(Job("stalls", queue=queue))
        await asyncio.wait_for(started[1].wait(), 5)
        # The producer's host stalls past the lease: the lifeline rescues attempt 1 while it still runs,
        # and the same producer claims the job again.
        while (await wait_for_state(engine, job.id, {JobState.EXECUTING})).attempt == 1:
            clock.advance(lease * 10)
            await engine.rescue()
        await asyncio.wait_for(started[2].wait(), 5)
        assert len(producer.running) == 2, "both attempts run, and both count against the limit"
        (stale,) = [task for claimed, task in producer.running.values() if claimed.attempt == 1]

        release[1].set()
        await asyncio.wait_for(stale, 5)
        assert [claimed.attempt for claimed, _ in producer.running.values()] == [2]
        renewed_from = (await wait_for_state(engine, job.id, {JobState.EXECUTING})).lease_expires_at
        assert renewed_from is not None
        clock.advance(lease / 2)
        async with asyncio.timeout(5):
            while True:
                current = await wait_for_state(engine, job.id, {JobState.EXECUTING})
                assert current.lease_expires_at is not None
                if current.lease_expires_at > renewed_from:
                    break
                await asyncio.sleep(0.02)
        await engine.rescue()
        assert (await wait_for_state(engine, job.id, {JobState.EXECUTING})).attempt == 2

        release[2].set()
        done = await wait_for_state(engine, job.id, {JobState.COMPLETED})
    assert done.attempt == 2

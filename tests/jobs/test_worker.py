from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from clarion.jobs.job import Job, JobRecord, JobState, Outcome
from clarion.jobs.worker import Worker, WorkerOptions
from clarion.runtime import Runtime


async def done(job: JobRecord) -> Outcome:
    return None


async def test_an_insert_wakes_the_worker_without_polling(runtime: Runtime, queue: str) -> None:
    engine = runtime.queue
    ran = asyncio.Event()

    async def signal(job: JobRecord) -> Outcome:
        ran.set()
        return None

    worker = Worker(engine, {"signal": signal}, WorkerOptions(queues={queue: 1}, poll_seconds=60))
    await worker.start()
    try:
        await asyncio.sleep(0.1)  # the first idle claim is over: from now on only a wake-up helps
        async with engine.database.writer.begin() as connection:
            await engine.insert(connection, Job("signal", queue=queue))
        await asyncio.wait_for(ran.wait(), 5)
    finally:
        await worker.stop()


async def test_stop_ends_every_loop(runtime: Runtime, queue: str) -> None:
    before = set(asyncio.all_tasks())
    worker = Worker(runtime.queue, {"ok": done}, WorkerOptions(queues={queue: 1, queue + "-b": 1}))
    await worker.start()
    assert len(set(asyncio.all_tasks()) - before) >= 4
    await worker.stop()
    await asyncio.sleep(0)
    assert {task for task in set(asyncio.all_tasks()) - before if not task.done()} == set()


async def test_drain_runs_a_queue_until_empty(runtime: Runtime, queue: str) -> None:
    engine = runtime.queue
    seen: list[int] = []

    async def chain(job: JobRecord) -> Outcome:
        seen.append(job.args["n"])
        if job.args["n"] < 3:
            await engine.enqueue(Job("chain", {"n": job.args["n"] + 1}, queue=queue))
        return None

    later = datetime.now(UTC) + timedelta(hours=1)
    await engine.enqueue(Job("chain", {"n": 10}, queue=queue, scheduled_at=later))
    await engine.enqueue(Job("chain", {"n": 1}, queue=queue))
    worker = Worker(engine, {"chain": chain}, WorkerOptions(queues={queue: 1}))
    assert await worker.drain() == {JobState.COMPLETED: 3}
    assert seen == [1, 2, 3]
    assert await worker.drain(with_scheduled=True) == {JobState.COMPLETED: 1}
    assert seen == [1, 2, 3, 10]

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from clarion.config import settings_from_env
from clarion.jobs.job import Job, JobRecord, JobState, Outcome
from clarion.jobs.worker import Worker, WorkerOptions
from clarion.runtime import Runtime, build_worker, process_locks
from clarion.store.tables import workers


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


async def test_a_worker_beats_while_it_runs_and_leaves_no_trace_once_stopped(
    runtime: Runtime, queue: str
) -> None:
    locks = process_locks(runtime.database)
    worker = Worker(
        runtime.queue, {"ok": done}, WorkerOptions(queues={queue: 1}, heartbeat_seconds=0.05), locks=locks
    )
    beats: set[datetime] = set()

    async def beat_at() -> datetime | None:
        async with runtime.database.reader.connect() as connection:
            row = (await connection.execute(sa.select(workers).where(workers.c.id == worker.id))).first()
        return None if row is None else row.beat_at

    await worker.start()
    try:
        assert locks is None or worker.id in {path.stem for path in locks.directory.iterdir()}
        async with asyncio.timeout(10):
            while len(beats) < 3:
                beat = await beat_at()
                if beat is not None:
                    beats.add(beat)
                await asyncio.sleep(0.02)
    finally:
        await worker.stop()
    assert await beat_at() is None
    assert locks is None or worker.id not in {path.stem for path in locks.directory.iterdir()}


async def test_clarion_workers_take_their_intervals_from_the_settings(runtime: Runtime) -> None:
    settings = settings_from_env(
        {
            "CLARION_JOB_LEASE_SECONDS": "90",
            "CLARION_HEARTBEAT_SECONDS": "0.5",
            "CLARION_RESCUE_SECONDS": "4",
        }
    )
    worker = build_worker(dataclasses.replace(runtime, settings=settings))
    options = worker.options
    assert (options.lease_seconds, options.heartbeat_seconds, options.rescue_seconds) == (90, 0.5, 4)
    assert (worker.locks is not None) == (runtime.database.dialect_name == "sqlite")

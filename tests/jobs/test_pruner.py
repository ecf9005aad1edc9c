from __future__ import annotations

from datetime import timedelta

import pytest

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import Job
from clarion.jobs.pruner import Pruner
from tests.jobs.conftest import FakeClock


async def test_a_pass_deletes_every_old_finished_job_batch_by_batch(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    async with engine.database.writer.begin() as connection:
        await engine.insert_all(connection, [Job("k", queue=queue) for _ in range(7)])
    jobs = await engine.claim(queue, 7, "worker", 30)
    for job in jobs:
        assert await engine.complete(job)
    clock.advance(7200)
    await Pruner(engine, interval=60, retention=timedelta(hours=1), limit=2).tick()
    for job in jobs:
        assert await engine.get(job.id) is None


def test_the_interval_must_be_positive(engine: QueueEngine) -> None:
    with pytest.raises(ValueError, match="interval"):
        Pruner(engine, interval=0, retention=timedelta(hours=1))

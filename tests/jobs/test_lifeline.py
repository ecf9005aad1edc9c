"""The lifeline end to end: a worker process killed with SIGKILL in the middle of a job loses it to another
worker once its lease runs out, and the job completes exactly once."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from clarion.jobs.job import Job, JobState
from clarion.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]


async def start_worker(runtime: Runtime, queue: str, marker: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.jobs.worker_process", runtime.database.url, queue, str(marker), cwd=ROOT
    )


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Return once `condition()` holds; a TimeoutError after thirty seconds."""
    async with asyncio.timeout(30):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


async def test_a_killed_workers_job_is_rescued_and_completed_once(
    runtime: Runtime, queue: str, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    job = await runtime.queue.enqueue(Job("test.crash_once", queue=queue))

    async def marked(*lines: str) -> bool:
        return marker.read_text().splitlines() == list(lines)

    doomed = await start_worker(runtime, queue, marker)
    try:
        await wait_until(lambda: marked("start 1"))
    finally:
        doomed.kill()
        await doomed.wait()
    assert doomed.returncode == -signal.SIGKILL
    stalled = await runtime.queue.get(job.id)
    assert stalled is not None
    assert stalled.state is JobState.EXECUTING

    rescuer = await start_worker(runtime, queue, marker)
    try:

        async def completed() -> bool:
            stored = await runtime.queue.get(job.id)
            return stored is not None and stored.state is JobState.COMPLETED

        await wait_until(completed)
        await asyncio.sleep(1.5)  # longer than a lease: a second run would show by now
        assert await marked("start 1", "start 2", "done")
    finally:
        rescuer.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(rescuer.wait(), 30) == 0

    stored = await runtime.queue.get(job.id)
    assert stored is not None
    assert stored.state is JobState.COMPLETED
    assert stored.attempt == 2
    assert [error["attempt"] for error in stored.errors] == [1]
    assert "lease" in stored.errors[0]["error"]
    assert stored.attempted_by != stalled.attempted_by

"""The lifeline end to end, with worker processes killed with SIGKILL in the middle of a job: another worker
takes the job within seconds of the death (its heartbeat falls silent), a restarted worker on SQLite takes
its predecessor's job as it starts (its process lock is free), and the lease still rescues the job of a
worker that left neither; the job completes exactly once."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.jobs.job import Job, JobRecord, JobState
from clarion.runtime import Runtime
from clarion.store.tables import workers

ROOT = Path(__file__).resolve().parents[2]
RESCUE_BOUND = 10.0
"""Seconds from a worker's death to its job's completion by another worker (issue 16)."""
AT_ONCE = 5.0
"""Seconds from a restarted worker's start to its taking back its predecessor's job: its first pass, where
every periodic rescue of the test's workers is a minute away."""


@dataclass(frozen=True)
class Intervals:
    lease: float
    heartbeat: float
    rescue: float
    locks: bool = True
    """Whether the worker holds a process lock on SQLite, as Clarion's workers do."""


LEASE_ONLY = Intervals(lease=1, heartbeat=3600, rescue=0.2, locks=False)
"""A worker whose death neither its heartbeat (within the test) nor a lock reveals: only its lease."""
HEARTBEATS = Intervals(lease=60, heartbeat=1, rescue=1, locks=False)
"""A worker whose death only its heartbeat reveals within the test: the lease is longer than the test."""
RESTARTED = Intervals(lease=60, heartbeat=60, rescue=60)
"""Clarion's worker on SQLite, with every periodic rescue far slower than the test: only the lifeline's
pass at start, which finds the dead worker's lock free, can take the job back in time."""


async def start_worker(
    runtime: Runtime, queue: str, marker: Path, intervals: Intervals
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.jobs.worker_process",
        runtime.database.url,
        queue,
        str(marker),
        str(intervals.lease),
        str(intervals.heartbeat),
        str(intervals.rescue),
        "locks" if intervals.locks else "nolocks",
        cwd=ROOT,
    )


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Return once `condition()` holds; a TimeoutError after thirty seconds."""
    async with asyncio.timeout(30):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


class CrashingJob:
    """A `test.crash_once` job and the MARKER file its attempts write to."""

    def __init__(self, runtime: Runtime, queue: str, marker: Path) -> None:
        self.runtime = runtime
        self.queue = queue
        self.marker = marker
        marker.touch()

    async def enqueue(self) -> JobRecord:
        self.job = await self.runtime.queue.enqueue(Job("test.crash_once", queue=self.queue))
        return self.job

    async def marked(self, *lines: str) -> bool:
        return self.marker.read_text().splitlines() == list(lines)

    async def stored(self) -> JobRecord:
        stored = await self.runtime.queue.get(self.job.id)
        assert stored is not None
        return stored

    async def completed(self) -> bool:
        return (await self.stored()).state is JobState.COMPLETED

    async def start_attempt_and_kill(self, intervals: Intervals) -> JobRecord:
        """Start a worker with `intervals`, kill it with SIGKILL in the middle of the job's first attempt,
        and return the job as the killed worker left it."""
        doomed = await start_worker(self.runtime, self.queue, self.marker, intervals)
        try:
            await wait_until(lambda: self.marked("start 1"))
        finally:
            await kill(doomed)
        stalled = await self.stored()
        assert stalled.state is JobState.EXECUTING
        return stalled

    async def assert_completed_once_by_another(self, stalled: JobRecord, cause: str) -> JobRecord:
        await asyncio.sleep(1.5)  # a second run would show by now
        assert await self.marked("start 1", "start 2", "done")
        stored = await self.stored()
        assert stored.state is JobState.COMPLETED
        assert stored.attempt == 2
        assert [error["attempt"] for error in stored.errors] == [1]
        assert stored.errors[0]["error"] == f"rescued: {cause}"
        assert stored.attempted_by != stalled.attempted_by
        return stored


async def kill(process: asyncio.subprocess.Process) -> None:
    process.kill()
    await process.wait()
    assert process.returncode == -signal.SIGKILL


async def stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0


async def rows_of(runtime: Runtime, pid: int) -> list[sa.Row[Any]]:
    """The `workers` rows of the process `pid`."""
    async with runtime.database.reader.connect() as connection:
        rows = (await connection.execute(sa.select(workers))).all()
    return [row for row in rows if f":{pid}:" in row.id]


async def test_a_killed_workers_job_is_finished_by_a_live_worker_within_seconds(
    runtime: Runtime, queue: str, tmp_path: Path
) -> None:
    crashing = CrashingJob(runtime, queue, tmp_path / "marker")
    await crashing.enqueue()
    doomed = await start_worker(runtime, queue, crashing.marker, HEARTBEATS)
    try:
        await wait_until(lambda: crashing.marked("start 1"))
        rescuer = await start_worker(runtime, queue, crashing.marker, HEARTBEATS)
        try:

            async def rescuer_beats() -> bool:
                return bool(await rows_of(runtime, rescuer.pid))

            await wait_until(rescuer_beats)
            assert await rows_of(runtime, doomed.pid)
            stalled = await crashing.stored()
            assert stalled.state is JobState.EXECUTING
            await kill(doomed)
            killed_at = asyncio.get_running_loop().time()
            await wait_until(crashing.completed)
            elapsed = asyncio.get_running_loop().time() - killed_at
            assert elapsed < RESCUE_BOUND, f"finished {elapsed:.1f} s after the kill"
            stored = await crashing.assert_completed_once_by_another(
                stalled, f"worker {stalled.attempted_by} died"
            )
            assert stored.attempted_by is not None
            assert f":{rescuer.pid}:" in stored.attempted_by
            assert await rows_of(runtime, doomed.pid) == [], "the dead worker's row is deleted"
        finally:
            await stop(rescuer)
        assert await rows_of(runtime, rescuer.pid) == [], "a clean stop deletes its row"
    finally:
        if doomed.returncode is None:
            await kill(doomed)


async def test_a_restarted_worker_takes_its_killed_predecessors_job_as_it_starts(
    runtime: Runtime, queue: str, tmp_path: Path
) -> None:
    if runtime.database.dialect_name != "sqlite":
        pytest.skip("process locks tell dead workers at once only on SQLite, whose processes share a host")
    crashing = CrashingJob(runtime, queue, tmp_path / "marker")
    await crashing.enqueue()
    stalled = await crashing.start_attempt_and_kill(RESTARTED)
    assert stalled.attempted_by is not None
    successor = await start_worker(runtime, queue, crashing.marker, RESTARTED)
    try:
        await wait_until(crashing.completed)
        (successor_row,) = await rows_of(runtime, successor.pid)
        stored = await crashing.assert_completed_once_by_another(
            stalled, f"worker {stalled.attempted_by} died"
        )
    finally:
        await stop(successor)
    # Measured on the database's clock from the successor's start, once it runs: the interpreter's own
    # start is no part of the queue's.
    assert stored.attempted_at is not None
    taken_after = (stored.attempted_at - successor_row.started_at).total_seconds()
    assert taken_after < AT_ONCE, f"taken {taken_after:.1f} s after the successor started"
    assert stalled.lease_expires_at is not None
    assert stored.attempted_at < stalled.lease_expires_at, "taken back long before the lease ran out"


async def test_a_killed_workers_job_is_rescued_by_its_lease_and_completed_once(
    runtime: Runtime, queue: str, tmp_path: Path
) -> None:
    crashing = CrashingJob(runtime, queue, tmp_path / "marker")
    await crashing.enqueue()
    stalled = await crashing.start_attempt_and_kill(LEASE_ONLY)
    rescuer = await start_worker(runtime, queue, crashing.marker, LEASE_ONLY)
    try:
        await wait_until(crashing.completed)
        await crashing.assert_completed_once_by_another(
            stalled, f"the lease of worker {stalled.attempted_by} expired"
        )
    finally:
        await stop(rescuer)

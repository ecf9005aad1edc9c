"""A worker in a process of its own, for the kill -9 test (`tests/jobs/test_lifeline.py`).

`python -m tests.jobs.worker_process DATABASE_URL QUEUE MARKER` runs the `test.crash_once` kind on QUEUE
with a one-second lease. Each attempt appends `start <attempt>` to the MARKER file; the first attempt then
hangs (so the test can kill the process mid-job), later ones append `done` and complete.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from clarion.jobs.job import JobRecord, Outcome
from clarion.jobs.worker import Worker, WorkerOptions
from clarion.runtime import create_queue_engine
from clarion.store.db import create_database

LEASE_SECONDS = 1.0


async def main(database_url: str, queue: str, marker: Path) -> None:
    database = create_database(database_url)

    async def crash_once(job: JobRecord) -> Outcome:
        with marker.open("a") as lines:
            lines.write(f"start {job.attempt}\n")
        if job.attempt == 1:
            await asyncio.Event().wait()
        with marker.open("a") as lines:
            lines.write("done\n")
        return None

    options = WorkerOptions(
        queues={queue: 1}, lease_seconds=LEASE_SECONDS, poll_seconds=0.1, rescue_seconds=0.2
    )
    worker = Worker(create_queue_engine(database), {"test.crash_once": crash_once}, options)
    try:
        await worker.run_until_signalled()
    finally:
        await database.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))

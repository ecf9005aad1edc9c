"""A worker in a process of its own, for the kill -9 tests (`tests/jobs/test_lifeline.py`).

`python -m tests.jobs.worker_process DATABASE_URL QUEUE MARKER LEASE HEARTBEAT RESCUE LOCKS` runs the
`test.crash_once` kind on QUEUE with the given lease, heartbeat and rescue intervals (seconds), holding a
process lock on SQLite as Clarion's workers do when LOCKS is `locks` (`nolocks`: a worker that leaves no
lock behind, whose death only its heartbeat or its lease reveal). Each attempt appends `start <attempt>` to
the MARKER file; the first attempt then hangs (so the test can kill the process mid-job), later ones append
`done` and complete.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from clarion.jobs.job import JobRecord, Outcome
from clarion.jobs.worker import Worker, WorkerOptions
from clarion.runtime import create_queue_engine, process_locks
from clarion.store.db import create_database


async def main(database_url: str, queue: str, marker: Path, options: WorkerOptions, locks: bool) -> None:
    database = create_database(database_url)

    async def crash_once(job: JobRecord) -> Outcome:
        with marker.open("a") as lines:
            lines.write(f"start {job.attempt}\n")
        if job.attempt == 1:
            await asyncio.Event().wait()
        with marker.open("a") as lines:
            lines.write("done\n")
        return None

    worker = Worker(
        create_queue_engine(database),
        {"test.crash_once": crash_once},
        options,
        locks=process_locks(database) if locks else None,
    )
    try:
        await worker.run_until_signalled()
    finally:
        await database.dispose()


if __name__ == "__main__":
    url, name, path, lease, heartbeat, rescue, lock_mode = sys.argv[1:8]
    chosen = WorkerOptions(
        queues={name: 1},
        lease_seconds=float(lease),
        poll_seconds=0.1,
        heartbeat_seconds=float(heartbeat),
        rescue_seconds=float(rescue),
    )
    asyncio.run(main(url, name, Path(path), chosen, lock_mode == "locks"))

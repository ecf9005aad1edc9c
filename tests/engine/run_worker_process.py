"""Clarion's own worker in a process of its own, for the kill -9 tests of workflow runs
(`tests/engine/test_run_crashes.py`).

`run_worker` builds the runtime exactly as `clarion worker` does (same channels file, same job handlers)
but with quick heartbeats and rescues, so that the jobs of a killed worker come back within the test's
patience. They come back because the worker is found dead (its process lock released on SQLite, its
heartbeat stopped on PostgreSQL), not because its lease ran out: the lease is long, so that a live worker
slowed by a loaded machine keeps its jobs and their attempts.

The tests start each worker from a `multiprocessing` fork server that has imported this module once, so
that a worker is running in a fraction of a second rather than the second or more (several on a loaded
machine) that importing Clarion takes. `python -m tests.engine.run_worker_process DATA_DIR DATABASE_URL`
runs one by hand.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from clarion.config import Settings
from clarion.engine.workflow_jobs import WORKFLOW_QUEUE
from clarion.jobs.worker import WorkerOptions
from clarion.runtime import build_runtime, build_worker

OPTIONS = WorkerOptions(
    queues={WORKFLOW_QUEUE: 20},
    lease_seconds=30.0,
    heartbeat_seconds=0.3,
    poll_seconds=0.1,
    rescue_seconds=0.2,
    prune_seconds=3600,
)


async def main(data_dir: Path, database_url: str) -> None:
    runtime = await build_runtime(
        Settings(data_dir=data_dir, database_url=database_url), apply_migrations=False
    )
    try:
        await build_worker(runtime, OPTIONS).run_until_signalled()
    finally:
        await runtime.close()


def run_worker(data_dir: Path, database_url: str) -> None:
    """A worker process's whole life, until SIGTERM (or SIGKILL)."""
    asyncio.run(main(data_dir, database_url))


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), sys.argv[2])

"""The durable job queue (modelled on Oban) and the worker that runs it: `job.py` says what a job is,
`engines/` store and claim jobs (PostgreSQL or SQLite), `worker.py` runs them."""

from __future__ import annotations

from clarion.jobs.engines.base import QueueEngine, UniqueKeyContendedError
from clarion.jobs.job import (
    Acknowledged,
    Cancel,
    DiscardHook,
    Job,
    JobHandler,
    JobRecord,
    JobState,
    Outcome,
    Snooze,
    Superseded,
)
from clarion.jobs.worker import Worker, WorkerOptions

__all__ = [
    "Acknowledged",
    "Cancel",
    "DiscardHook",
    "Job",
    "JobHandler",
    "JobRecord",
    "JobState",
    "Outcome",
    "QueueEngine",
    "Snooze",
    "Superseded",
    "UniqueKeyContendedError",
    "Worker",
    "WorkerOptions",
]

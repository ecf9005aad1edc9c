"""Runs one claimed job: finds the handler for its kind, calls it, and turns what happened into the job's
next state.

    returned None       -> completed
    returned Snooze(s)  -> scheduled again in s seconds (the attempt is given back)
    returned Cancel(r)  -> cancelled, r recorded
    returned Acknowledged -> completed by the handler in its own transaction
    raised Superseded   -> nothing: the attempt was not this worker's to finish
    raised              -> retryable after a backoff, or discarded after its last attempt (with the
                           kind's discard hook run in the discarding transaction)
    no handler for kind -> treated as raised (a newer release may have queued a kind this worker lacks)

Cancellation of the running task (worker shutdown) is not an outcome: it propagates, and the producer gives
the job back. The per-queue concurrency around this lives in `producer.py`. Each outcome is logged at INFO
(a JSON line per job with `CLARION_LOG_FORMAT=json`), and told to the worker's `JobObserver` (metrics).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from typing import Protocol

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import (
    Acknowledged,
    Cancel,
    DiscardHook,
    JobHandler,
    JobRecord,
    JobState,
    Snooze,
    Superseded,
)

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4_000


class JobObserver(Protocol):
    def job_started(self, job: JobRecord) -> None: ...

    def job_finished(self, job: JobRecord, state: JobState | None) -> None:
        """`state`: the job's new state, None when the attempt's outcome was dropped (`execute`)."""
        ...


class Executor:
    def __init__(
        self,
        engine: QueueEngine,
        handlers: Mapping[str, JobHandler],
        on_discarded: Mapping[str, DiscardHook] | None = None,
        observer: JobObserver | None = None,
    ) -> None:
        self.engine = engine
        self.handlers = handlers
        self.on_discarded = on_discarded or {}
        self.observer = observer

    async def execute(self, job: JobRecord) -> JobState | None:
        """Run `job` and record its outcome. Returns the job's new state, or None when the job had been
        taken from this worker meanwhile (rescued or cancelled) and its outcome was dropped."""
        if self.observer is not None:
            self.observer.job_started(job)
        started = time.perf_counter()
        state = await self._execute(job)
        if self.observer is not None:
            self.observer.job_finished(job, state)
        if logger.isEnabledFor(logging.INFO):
            outcome = "superseded" if state is None else state.value
            milliseconds = round((time.perf_counter() - started) * 1000, 3)
            logger.info(
                "job %d (%s) attempt %d: %s in %.1f ms",
                job.id,
                job.kind,
                job.attempt,
                outcome,
                milliseconds,
                extra={
                    "job_id": job.id,
                    "job_kind": job.kind,
                    "queue": job.queue,
                    "attempt": job.attempt,
                    "outcome": outcome,
                    "duration_ms": milliseconds,
                },
            )
        return state

    async def _execute(self, job: JobRecord) -> JobState | None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            return await self._failed(job, f"no handler for the job kind {job.kind!r}")
        try:
            outcome = await handler(job)
        except Superseded:
            logger.info(
                "job %d (%s): attempt %d superseded; its work was not recorded", job.id, job.kind, job.attempt
            )
            return None
        except Exception as exc:
            logger.warning(
                "job %d (%s) failed on attempt %d/%d: %r",
                job.id,
                job.kind,
                job.attempt,
                job.max_attempts,
                exc,
            )
            text = "".join(traceback.format_exception(exc))
            return await self._failed(job, text[-MAX_ERROR_CHARS:])
        if isinstance(outcome, Snooze):
            return JobState.SCHEDULED if await self.engine.snooze(job, outcome.seconds) else None
        if isinstance(outcome, Cancel):
            return JobState.CANCELLED if await self.engine.cancel(job, outcome.reason) else None
        if isinstance(outcome, Acknowledged):
            return JobState.COMPLETED
        return JobState.COMPLETED if await self.engine.complete(job) else None

    async def _failed(self, job: JobRecord, error: str) -> JobState | None:
        state = await self.engine.retry(job, error, self.on_discarded.get(job.kind))
        if state is JobState.DISCARDED:
            logger.error("job %d (%s) discarded after %d attempts", job.id, job.kind, job.attempt)
        return state

"""One queue's loop in one worker: keeps up to `limit` of the queue's jobs running at once.

It claims `demand = limit - running` jobs whenever it is woken: by an insert notification (`engine.listen`),
by a job of its own finishing, or by a jittered polling timer that also picks up delayed and retried jobs as
they come due. While jobs run it extends their leases every third of the lease. Running work is tracked
per attempt, (job id, attempt): when a stalled attempt's job was rescued and this same producer claimed it
again, both attempts count against the limit until each ends, and only the live attempt's lease is renewed
(the stale one's acknowledgement is ignored by the engine). On stop it claims no more,
lets running jobs finish within the grace period, then interrupts the rest and gives them back to the queue
(available at once, attempt not counted). Running a single job lives in `executor.py`.

A failure because the database did not answer is the store's to report, once per outage
(`clarion.store.availability`), not a traceback per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.executor import Executor
from clarion.jobs.job import JobRecord
from clarion.jobs.looper import jittered

logger = logging.getLogger(__name__)


class Producer:
    def __init__(
        self,
        engine: QueueEngine,
        executor: Executor,
        *,
        queue: str,
        limit: int,
        worker_id: str,
        lease_seconds: float,
        poll_seconds: float,
    ) -> None:
        if limit < 1:
            raise ValueError(f"queue {queue!r}: the concurrency limit must be at least 1, not {limit}")
        self.engine = engine
        self.executor = executor
        self.queue = queue
        self.limit = limit
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.running: dict[tuple[int, int], tuple[JobRecord, asyncio.Task[None]]] = {}
        """(job id, attempt) → the attempt as claimed, and the task running it."""
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.create_task(self._loop(), name=f"clarion-jobs-producer-{self.queue}")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name=f"clarion-jobs-lease-{self.queue}")

    async def stop(self, grace_seconds: float = 0.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            # Let a claim in flight finish, so that every job it took is tracked and can be given back.
            await self._loop_task
            self._loop_task = None
        tasks = [task for _, task in self.running.values()]
        if tasks and grace_seconds > 0:
            await asyncio.wait(tasks, timeout=grace_seconds)
        interrupted = [job for job, task in self.running.values() if not task.done()]
        for _, task in self.running.values():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        for job in interrupted:
            try:
                await self.engine.snooze(job, 0)
            except Exception:
                logger.exception("could not give back job %d; the lifeline will rescue it", job.id)
        if interrupted:
            logger.warning("queue %s: gave back %d interrupted jobs", self.queue, len(interrupted))

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            demand = self.limit - len(self.running)
            claimed: list[JobRecord] = []
            if demand > 0:
                try:
                    claimed = await self.engine.claim(self.queue, demand, self.worker_id, self.lease_seconds)
                except Exception as exc:
                    if not self._store_unavailable(exc):
                        logger.exception("queue %s: claiming jobs failed", self.queue)
                for job in claimed:
                    task = asyncio.create_task(self._run(job), name=f"clarion-job-{job.id}")
                    self.running[job.id, job.attempt] = (job, task)
                if claimed and len(claimed) == demand:
                    continue  # the queue may hold more; claim again before sleeping
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), jittered(self.poll_seconds))

    async def _run(self, job: JobRecord) -> None:
        try:
            await self.executor.execute(job)
        except Exception as exc:
            # Recording the outcome failed (store unreachable): the job stays executing and the lifeline
            # rescues it once its lease runs out.
            if not self._store_unavailable(exc):
                logger.exception("job %d (%s): recording its outcome failed", job.id, job.kind)
        finally:
            self.running.pop((job.id, job.attempt), None)
            self._wake.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self.running:
                continue
            try:
                claimed = [job for job, _ in self.running.values()]
                await self.engine.extend_leases(self.worker_id, claimed, self.lease_seconds)
            except Exception as exc:
                if not self._store_unavailable(exc):
                    logger.exception("queue %s: renewing the leases of running jobs failed", self.queue)

    def _store_unavailable(self, exc: Exception) -> bool:
        return self.engine.database.availability.unavailable(exc) is not None

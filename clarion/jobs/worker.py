"""The worker: runs the jobs of the configured queues in this process until stopped.

`start` subscribes to wake-ups and starts one producer per queue (`producer.py`), the heartbeat, the
lifeline and the pruner (and, on SQLite, takes the worker's process lock); `stop` stops claiming, gives
running jobs `shutdown_grace_seconds` to finish, hands the rest back to the queue, then deletes the
worker's heartbeat row, so that only a worker that died leaves jobs for the lifelines to rescue. Any
number of workers may share a store: `clarion serve` runs one beside the API, `clarion worker` runs one
alone. `drain` runs jobs inline until a queue is empty, for tests and one-off tools. Which handler runs
which job kind, which kinds react to their jobs being discarded, and which other periodic clean-ups run
beside the queue's (`housekeeping`), is decided by whoever builds the worker (`clarion.runtime`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clarion.jobs.engines.base import Listener, QueueEngine
from clarion.jobs.executor import Executor, JobObserver
from clarion.jobs.heartbeat import Heartbeat, dead_after
from clarion.jobs.job import DEFAULT_QUEUE, DiscardHook, JobHandler, JobState
from clarion.jobs.lifeline import Lifeline
from clarion.jobs.looper import Looper
from clarion.jobs.process_locks import ProcessLocks
from clarion.jobs.producer import Producer
from clarion.jobs.pruner import Pruner

logger = logging.getLogger(__name__)

DRAIN_BATCH = 100
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WorkerOptions:
    queues: Mapping[str, int] = field(default_factory=lambda: {DEFAULT_QUEUE: 10})
    """Queue name → how many of its jobs this worker runs at once."""
    lease_seconds: float = 60.0
    """How long a claimed job stays this worker's without its lease being renewed (every third of it):
    the backstop for a worker whose heartbeat row is missing."""
    poll_seconds: float = 1.0
    """How often an idle producer looks for due jobs without being woken (delays, retries, other
    processes' inserts on SQLite)."""
    heartbeat_seconds: float = 2.0
    """How often the worker records that it is alive; silent for three of these, it is dead."""
    rescue_seconds: float = 2.0
    """How often the lifeline looks for the jobs of dead workers. A dead worker's jobs are rescued at
    most three heartbeats plus one rescue interval (jittered) after its last beat."""
    prune_seconds: float = 60.0
    retention: timedelta = timedelta(hours=1)
    """How long finished jobs are kept before the pruner deletes them."""
    shutdown_grace_seconds: float = 15.0


def worker_id() -> str:
    """Names this worker in `jobs.attempted_by`: host, process and a random part for several workers in
    one process."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        engine: QueueEngine,
        handlers: Mapping[str, JobHandler],
        options: WorkerOptions | None = None,
        on_discarded: Mapping[str, DiscardHook] | None = None,
        housekeeping: Sequence[Looper] = (),
        locks: ProcessLocks | None = None,
        observer: JobObserver | None = None,
    ) -> None:
        """`locks`: the process locks of the workers sharing this store, on SQLite (`process_locks.py`)."""
        self.engine = engine
        self.options = options or WorkerOptions()
        self.id = worker_id()
        self.executor = Executor(engine, handlers, on_discarded, observer)
        self.producers = {
            queue: Producer(
                engine,
                self.executor,
                queue=queue,
                limit=limit,
                worker_id=self.id,
                lease_seconds=self.options.lease_seconds,
                poll_seconds=self.options.poll_seconds,
            )
            for queue, limit in self.options.queues.items()
        }
        self.locks = locks
        self.heartbeat = Heartbeat(engine, self.options.heartbeat_seconds, self.id, list(self.options.queues))
        self.loopers: list[Looper] = [
            Lifeline(
                engine,
                self.options.rescue_seconds,
                on_discarded,
                rescuer=self.id,
                dead_after=dead_after(self.options.heartbeat_seconds),
                locks=locks,
            ),
            Pruner(engine, self.options.prune_seconds, self.options.retention),
            *housekeeping,
        ]
        self._listener: Listener | None = None

    def _wake_up(self, queue: str) -> None:
        producer = self.producers.get(queue)
        if producer is not None:
            producer.wake()

    async def start(self) -> None:
        if self.locks is not None:
            self.locks.hold(self.id)
        self._listener = await self.engine.listen(self._wake_up)
        loopers: list[Looper] = [self.heartbeat, *self.producers.values(), *self.loopers]
        for looper in loopers:
            await looper.start()

    async def stop(self) -> None:
        await asyncio.gather(
            *(p.stop(self.options.shutdown_grace_seconds) for p in self.producers.values()),
            *(looper.stop() for looper in self.loopers),
        )
        # Beating until the jobs are handed back: a kill during the grace period still leaves them to
        # the other workers' lifelines.
        await self.heartbeat.stop()
        try:
            await self.engine.retire(self.id)
        except Exception:
            logger.exception("could not delete this worker's heartbeat; the lifelines will")
        if self.locks is not None:
            self.locks.release(self.id)
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def run_until_signalled(self) -> None:
        """Run until SIGINT or SIGTERM, then stop gracefully (`clarion worker`)."""
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopped.set)
        await self.start()
        try:
            await stopped.wait()
        finally:
            await self.stop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def drain(
        self, queues: Iterable[str] | None = None, *, with_scheduled: bool = False
    ) -> Counter[JobState]:
        """Run the available jobs of `queues` (default: this worker's) one by one, in claim order, until
        none is left, including jobs those jobs enqueue. With `with_scheduled`, delayed and retrying jobs
        are run too, without waiting for their time. Returns how many attempts ended in each state."""
        outcomes: Counter[JobState] = Counter()
        names = list(queues) if queues is not None else list(self.options.queues)
        while True:
            ran = 0
            for queue in names:
                if with_scheduled:
                    await self.engine.stage(queue, until=_FAR_FUTURE)
                claimed = await self.engine.claim(queue, DRAIN_BATCH, self.id, self.options.lease_seconds)
                for job in claimed:
                    state = await self.executor.execute(job)
                    if state is not None:
                        outcomes[state] += 1
                ran += len(claimed)
            if not ran:
                return outcomes

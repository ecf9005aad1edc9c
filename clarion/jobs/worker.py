"""The worker: runs the jobs of the configured queues in this process until stopped.

`start` subscribes to wake-ups and starts one producer per queue (`producer.py`), the lifeline and the
pruner; `stop` stops claiming, gives running jobs `shutdown_grace_seconds` to finish and hands the rest
back to the queue. Any number of workers may share a store: `clarion serve` runs one beside the API,
`clarion worker` runs one alone. `drain` runs jobs inline until a queue is empty, for tests and one-off
tools. Which handler runs which job kind, which kinds react to their jobs being discarded, and which other
periodic clean-ups run beside the queue's (`housekeeping`), is decided by whoever builds the worker
(`clarion.runtime`).
"""

from __future__ import annotations

import asyncio
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
from clarion.jobs.job import DEFAULT_QUEUE, DiscardHook, JobHandler, JobState
from clarion.jobs.lifeline import Lifeline
from clarion.jobs.looper import Looper
from clarion.jobs.producer import Producer
from clarion.jobs.pruner import Pruner

DRAIN_BATCH = 100
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WorkerOptions:
    queues: Mapping[str, int] = field(default_factory=lambda: {DEFAULT_QUEUE: 10})
    """Queue name → how many of its jobs this worker runs at once."""
    lease_seconds: float = 60.0
    """How long a claimed job stays this worker's without a heartbeat; renewed every third of it."""
    poll_seconds: float = 1.0
    """How often an idle producer looks for due jobs without being woken (delays, retries, other
    processes' inserts on SQLite)."""
    rescue_seconds: float = 15.0
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
        observer: JobObserver | None = None,
    ) -> None:
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
        self.loopers: list[Looper] = [
            Lifeline(engine, self.options.rescue_seconds, on_discarded),
            Pruner(engine, self.options.prune_seconds, self.options.retention),
            *housekeeping,
        ]
        self._listener: Listener | None = None

    def _wake_up(self, queue: str) -> None:
        producer = self.producers.get(queue)
        if producer is not None:
            producer.wake()

    async def start(self) -> None:
        self._listener = await self.engine.listen(self._wake_up)
        for looper in [*self.producers.values(), *self.loopers]:
            await looper.start()

    async def stop(self) -> None:
        await asyncio.gather(
            *(p.stop(self.options.shutdown_grace_seconds) for p in self.producers.values()),
            *(looper.stop() for looper in self.loopers),
        )
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

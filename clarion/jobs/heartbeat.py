"""The heartbeat: every few seconds a worker records in the `workers` table that it is alive, so that the
lifelines of the other workers can tell, within seconds, that it has died (`lifeline.py`).

The first beat is written as the worker starts, and registers it; a clean stop deletes its row
(`Worker.stop`), so only a worker that died leaves a silent row behind. A worker is dead once its last
beat is `MISSED_BEATS` intervals old on the database's clock: beats are jittered like every periodic
duty, so one or two late beats (a busy store, a slow event loop) do not kill a live worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.looper import Periodic

MISSED_BEATS = 3
"""How many heartbeat intervals a worker may stay silent before it is taken for dead."""


def dead_after(heartbeat_seconds: float) -> float:
    """Seconds without a beat after which a worker beating every `heartbeat_seconds` is dead."""
    return MISSED_BEATS * heartbeat_seconds


class Heartbeat(Periodic):
    name = "heartbeat"
    at_start = True

    def __init__(self, engine: QueueEngine, interval: float, worker_id: str, queues: Sequence[str]) -> None:
        super().__init__(interval)
        self.engine = engine
        self.worker_id = worker_id
        self.queues = list(queues)

    async def tick(self) -> None:
        await self.engine.beat(self.worker_id, self.queues)

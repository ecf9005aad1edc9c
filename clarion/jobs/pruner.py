"""The pruner: periodically deletes completed, cancelled and discarded jobs older than the retention, in
batches, so the job table stays the size of the work in flight.

Each pass deletes at most `limit` rows per statement and repeats while a full batch was deleted, so one
pass never holds a long transaction. A pruned job's unique key is free again (`clarion.jobs.job`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.looper import Periodic

logger = logging.getLogger(__name__)


class Pruner(Periodic):
    name = "pruner"

    def __init__(
        self, engine: QueueEngine, interval: float, retention: timedelta, limit: int = 10_000
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.retention = retention
        self.limit = limit

    async def tick(self) -> None:
        total = 0
        while True:
            deleted = await self.engine.prune(self.retention, self.limit)
            total += deleted
            if deleted < self.limit:
                break
        if total:
            logger.info("pruned %d finished jobs", total)

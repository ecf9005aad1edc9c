"""The engine's periodic clean-ups, run by every worker beside the queue's own (`clarion.runtime`):
expired idempotency keys of triggers, in batches, so the table holds a day of keys and no more; and the
data retention (`clarion.store.retention`), so messages and runs are kept for the configured days."""

from __future__ import annotations

import logging
from datetime import timedelta

from clarion.jobs.engines.base import Clock
from clarion.jobs.looper import Periodic
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.idempotency_keys import prune_expired
from clarion.store.retention import BATCH, prune_older_than

logger = logging.getLogger(__name__)


class IdempotencyKeyPruner(Periodic):
    name = "idempotency-key-pruner"

    def __init__(self, database: Database, interval: float, limit: int = 10_000) -> None:
        super().__init__(interval)
        self.database = database
        self.limit = limit

    async def tick(self) -> None:
        total = 0
        while True:
            deleted = await prune_expired(self.database, self.limit)
            total += deleted
            if deleted < self.limit:
                break
        if total:
            logger.info("pruned %d expired idempotency keys", total)


class RetentionPruner(Periodic):
    """Deletes the messages, runs, bulk operations and batches the retention lets go, and the throttle
    windows that are over. Rows are stamped with the host's clock (`clarion.store.clock`), so the cutoff
    is taken from it too; tests pass their own."""

    name = "retention-pruner"

    def __init__(
        self,
        database: Database,
        interval: float,
        retention: timedelta,
        clock: Clock = utcnow,
        batch: int = BATCH,
    ) -> None:
        super().__init__(interval)
        self.database = database
        self.retention = retention
        self.clock = clock
        self.batch = batch

    async def tick(self) -> None:
        pruned = await prune_older_than(self.database, self.retention, now=self.clock(), batch=self.batch)
        if pruned:
            logger.info(
                "retention of %s: pruned %d messages, %d workflow runs, %d bulk operations, %d batches"
                " (%d activities), %d throttle windows",
                self.retention,
                pruned.messages,
                pruned.runs,
                pruned.bulk_operations,
                pruned.batches,
                pruned.batch_activities,
                pruned.throttles,
            )

"""The engine's periodic clean-ups, run by every worker beside the queue's own (`clarion.runtime`):
expired idempotency keys of triggers, in batches, so the table holds a day of keys and no more."""

from __future__ import annotations

import logging

from clarion.jobs.looper import Periodic
from clarion.store.db import Database
from clarion.store.idempotency_keys import prune_expired

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

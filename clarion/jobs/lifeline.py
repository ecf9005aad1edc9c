"""The lifeline: periodically returns jobs stuck `executing` past their lease to `available`, so the work
of a worker that died (kill -9, lost host, lost connection) is picked up by another.

A job that has used all its attempts is discarded instead, with its kind's discard hook run in the same
transaction (so that, say, a bulk operation whose job dies this way ends `failed`); every lifeline must
know every kind's hook, since any of them may discard any job. Every worker runs a lifeline; on PostgreSQL
concurrent sweeps skip each other's rows (`SKIP LOCKED`), so no leader is needed. Leases are compared with
the database's clock, so a host whose clock runs ahead rescues no live job. A live worker extends its
leases every third of the lease (`producer.py`), so only a worker silent for a whole lease loses its jobs.

> A worker that is alive but cannot reach the store for longer than its lease (or whose event loop is
> blocked that long) loses its jobs to the lifeline while still running them: they may run twice. Its late
> acknowledgement is then ignored (`engines/base.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import DiscardHook
from clarion.jobs.looper import Periodic

logger = logging.getLogger(__name__)


class Lifeline(Periodic):
    name = "lifeline"

    def __init__(
        self, engine: QueueEngine, interval: float, on_discarded: Mapping[str, DiscardHook] | None = None
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.on_discarded = on_discarded or {}

    async def tick(self) -> None:
        rescued, discarded = await self.engine.rescue(on_discarded=self.on_discarded)
        if rescued or discarded:
            logger.warning(
                "rescued %d jobs whose worker stopped renewing its lease; discarded %d out of attempts",
                rescued,
                discarded,
            )

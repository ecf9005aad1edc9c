"""The lifeline: periodically returns the jobs of dead workers to `available`, so that the work of a worker
that died (kill -9, lost host, lost connection) is picked up by another within seconds.

A worker is dead when its heartbeat (`heartbeat.py`) has been silent for a few intervals, on the database's
clock, so a host whose clock runs ahead rescues no live job; on SQLite also, at once, when its process lock
is free (`process_locks.py`): that is how a restarted `clarion serve` takes back its predecessor's jobs as
it starts, since the lifeline's first pass runs when the worker starts. A lifeline never takes its own
worker for dead, whatever its heartbeat says. Leases stay the backstop: a job whose lease ran out is rescued
too (a worker that never wrote a heartbeat, or whose row is gone); a live worker extends its leases every
third of the lease (`producer.py`).

A job that has used all its attempts is discarded instead, with its kind's discard hook run in the same
transaction (so that, say, a bulk operation whose job dies this way ends `failed`); every lifeline must
know every kind's hook, since any of them may discard any job. Every worker runs a lifeline; on PostgreSQL
concurrent sweeps skip each other's rows (`SKIP LOCKED`), so no leader is needed.

> A worker that is alive but cannot reach the store for a few heartbeats (or whose event loop is blocked
> that long) loses its jobs to the lifeline while still running them: they may run twice. Its late
> acknowledgement is then ignored (`engines/base.py`), and its next beat registers it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import DiscardHook
from clarion.jobs.looper import Periodic
from clarion.jobs.process_locks import ProcessLocks

logger = logging.getLogger(__name__)


class Lifeline(Periodic):
    name = "lifeline"
    at_start = True

    def __init__(
        self,
        engine: QueueEngine,
        interval: float,
        on_discarded: Mapping[str, DiscardHook] | None = None,
        *,
        rescuer: str | None = None,
        dead_after: float | None = None,
        locks: ProcessLocks | None = None,
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.on_discarded = on_discarded or {}
        self.rescuer = rescuer
        self.dead_after = dead_after
        self.locks = locks

    async def tick(self) -> None:
        ended = self.locks.dead() if self.locks is not None else []
        rescued, discarded = await self.engine.rescue(
            on_discarded=self.on_discarded,
            dead_after=self.dead_after,
            dead_workers=ended,
            rescuer=self.rescuer,
        )
        if rescued or discarded:
            logger.warning(
                "rescued %d jobs of dead workers or expired leases; discarded %d out of attempts",
                rescued,
                discarded,
            )

"""The shape every background loop of the worker shares: `start` and `stop` (the `Looper` protocol), and
`Periodic`, a loop that runs one duty on a jittered interval, logging and carrying on when it fails.

Jitter spreads the duties of many workers started together so they do not hit the store in step. The loops
themselves live in `producer.py`, `heartbeat.py`, `lifeline.py` and `pruner.py`; `worker.py` starts and stops
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from abc import ABC, abstractmethod
from typing import Protocol

logger = logging.getLogger(__name__)

JITTER = 0.2


def jittered(seconds: float) -> float:
    """`seconds` ± 20 %."""
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


class Looper(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Periodic(ABC):
    """Runs `tick` every `interval` seconds (jittered) from `start` until `stop`."""

    name = "periodic"
    at_start = False
    """Whether the first tick runs as soon as the loop starts, rather than an interval later."""

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"{self.name}: the interval must be positive, not {interval}")
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def tick(self) -> None: ...

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"clarion-jobs-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        wait = not self.at_start
        while True:
            if wait:
                await asyncio.sleep(jittered(self.interval))
            wait = True
            try:
                await self.tick()
            except Exception:
                logger.exception("job %s failed; trying again in %.0f s", self.name, self.interval)

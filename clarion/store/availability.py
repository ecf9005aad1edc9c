"""Whether the database answers: the errors that say it does not become `ServiceUnavailableError` here, and
an outage is logged once when it starts and once when it ends.

The first failure that means an outage (`clarion.store.errors.unavailability`) opens the circuit: one
warning, and from then on `check()` refuses API requests at once instead of letting each wait out the
bound, while a probe asks the database every second whether it answers again. The probe's first success
closes the circuit with a second line. A lock held by another process on SQLite is no outage: the wait
that ran out answers 503, and the next statement tries again (nothing is logged, the circuit stays shut).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from clarion.errors import ServiceUnavailableError
from clarion.store.errors import unavailability

logger = logging.getLogger(__name__)

PROBE_SECONDS = 1.0

# What went wrong is the operator's to read in the log, not the caller's (it names hosts and ports).
_UNREACHABLE = "The database is unreachable; try again shortly"
_BUSY = "The database is busy with another process's write; try again shortly"


class StoreAvailability:
    def __init__(self, probe: Callable[[], Awaitable[None]], *, probe_seconds: float = PROBE_SECONDS) -> None:
        self._probe = probe
        self.probe_seconds = probe_seconds
        self.retry_after = max(1, math.ceil(probe_seconds))
        self.down_since: float | None = None
        """When the current outage began (monotonic clock), None while the database answers."""
        self._prober: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Refuse at once while an outage is under way."""
        if self.down_since is not None:
            raise ServiceUnavailableError(_UNREACHABLE, retry_after=self.retry_after)

    def unavailable(self, exc: BaseException) -> ServiceUnavailableError | None:
        """The 503 for `exc` if it means the database did not answer (noting an outage), else None."""
        found = unavailability(exc)
        if found is None:
            return None
        if found.outage:
            self._went_down(found.reason)
        return ServiceUnavailableError(_UNREACHABLE if found.outage else _BUSY, retry_after=self.retry_after)

    def _went_down(self, reason: str) -> None:
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        logger.warning("database unreachable: %s", reason)
        self._prober = asyncio.create_task(self._probe_until_answered(), name="clarion-database-probe")

    async def _probe_until_answered(self) -> None:
        while True:
            await asyncio.sleep(self.probe_seconds)
            try:
                await self._probe()
            except Exception as exc:
                if unavailability(exc) is None:
                    logger.warning("database probe failed: %r", exc)
                continue
            break
        assert self.down_since is not None
        logger.warning("database reachable again after %.1f s", time.monotonic() - self.down_since)
        self.down_since = None
        self._prober = None

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None

"""Work submitted concurrently, done in batches: the queue and flusher that group commits
(`clarion.store.group_commit`) and coalesced reads (`clarion.store.coalesced_reads`) share.

Each submitter awaits its own future. While one batch is being done, new submissions queue up and form
the next, so the batch size follows the load: one item at a time when idle, up to `max_batch` under
pressure. Subclasses say how a batch is done and resolve its futures.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class PendingBatches(ABC, Generic[Item, Result]):
    gathers_one_turn = False
    """Whether the first batch of a burst waits one turn of the event loop: requests read from their
    sockets in the same turn reach `submit` only in the next one, and joining them doubles a write batch
    under load, at the cost of one turn's latency when idle."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all())
        return await future

    @abstractmethod
    async def flush(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        """Do `batch` and resolve each of its futures that is not done yet (a waiter may have left)."""

    async def _flush_all(self) -> None:
        try:
            if self.gathers_one_turn:
                await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    await self.flush(batch)
                except BaseException:
                    # Cancelled mid-batch (the loop is shutting down): nobody will resolve these any more.
                    for _, future in batch:
                        future.cancel()
                    raise
        finally:
            self._flusher = None

"""Group commit: writes submitted concurrently are applied together, in one transaction or one statement
as the batch handler manages, instead of one transaction each.

Submissions queue up as `clarion.store.pending_batches` describes; unless told otherwise, the first batch
of a burst waits one turn of the event loop for the requests read alongside it (under load, a batch twice
the size for the fixed cost of a write; not worth the turn when that cost is one round trip). If a batch
fails, its items are retried one batch each, so one bad item fails alone and the others still land;
unless the database did not answer (`clarion.store.errors.unavailability`): then every item fails with that
error at once, instead of each waiting out the bound again.

Callers see the same outcome as with individual transactions, provided the handler keeps its contract:
it applies the items as if one after another in the order given, and returns, for each item, the result
as it stood right after that item, never a later state (`clarion.store.users.identify_batch` does so
with the rounds of `clarion.store.batching`). A batch then equals its items committed one by one in
submission order, and batches follow each other in that order too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from clarion.store.errors import unavailability
from clarion.store.pending_batches import PendingBatches

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchHandler = Callable[[Sequence[Item]], Awaitable[Sequence[Result]]]
"""Writes a batch atomically (all of it or nothing); returns one result per item, in the items' order."""


class GroupCommitter(PendingBatches[Item, Result]):
    def __init__(
        self, handler: BatchHandler[Item, Result], max_batch: int = 500, *, gathers_one_turn: bool = True
    ) -> None:
        super().__init__(max_batch)
        self.handler = handler
        self.gathers_one_turn = gathers_one_turn

    async def flush(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self.handler([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and unavailability(exc) is None:
                for single in batch:
                    await self.flush([single])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

"""Group commit: writes submitted concurrently are applied together, in one transaction and as few
statements as the batch handler can manage, instead of one transaction each.

While one batch is being written, new submissions queue up and form the next batch, so the batch size
adapts to the load: one item at a time when idle, hundreds under pressure. The first batch of a burst
waits one turn of the event loop for the requests already read alongside it. Each submitter awaits its own
result. If a batch fails, its items are retried one transaction each, so one bad item fails alone and
the others still land.

Callers see the same outcome as with individual transactions, provided the handler keeps its contract:
it applies the items as if one after another in the order given, and returns, for each item, the result
as it stood right after that item, never a later state (`clarion.store.users.upsert_user_batch` does so
with the rounds of `clarion.store.batching`). A batch then equals its items committed one by one in
submission order, and batches follow each other in that order too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store.db import Database

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchHandler = Callable[[AsyncConnection, Sequence[Item]], Awaitable[Sequence[Result]]]
"""Writes a batch in the given transaction; returns one result per item, in the items' order."""


class GroupCommitter(Generic[Item, Result]):
    def __init__(self, database: Database, handler: BatchHandler[Item, Result], max_batch: int = 500) -> None:
        self.database = database
        self.handler = handler
        self.max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        try:
            # One turn of the event loop first: requests read from their sockets in this turn reach
            # `submit` only in the next one, and joining them doubles the batch under load at the cost
            # of one turn's latency when idle.
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    await self._flush(batch)
                except BaseException:
                    # Cancelled mid-batch (the loop is shutting down): nobody will resolve these any more.
                    for _, future in batch:
                        future.cancel()
                    raise
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            async with self.database.writer.begin() as connection:
                results = await self.handler(connection, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                for single in batch:
                    await self._flush([single])
            elif not batch[0][1].done():
                batch[0][1].set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

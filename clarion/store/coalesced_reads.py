"""Coalesced point reads: reads of single rows asked for concurrently are answered by one query.

Each read waits for the next batch; while one batch's query runs, new reads gather for the one after, so
the batch size follows the load: one read at a time when idle, dozens under pressure, where each read
would otherwise pay a round trip, a pool checkout and a statement of its own. A read never joins a query
that is already running, so it sees at least every write committed before it was asked for, exactly as a
query of its own would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clarion.store.direct import DirectQuery, DirectReader

Row = dict[str, Any]


class CoalescedReads:
    """Rows of one table by (environment, id). `query` takes the parameters `environment_id` and `ids`
    (the list of ids, bound as one parameter: `clarion.store.dialect.in_bound_list`) and selects the
    column `key` holding each row's id."""

    def __init__(
        self, direct: DirectReader, query: DirectQuery, key: str = "id", max_batch: int = 500
    ) -> None:
        self.direct = direct
        self.query = query
        self.key = key
        self.max_batch = max_batch
        self._pending: list[tuple[str, str, asyncio.Future[Row | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def fetch(self, environment_id: str, row_id: str) -> Row | None:
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._pending.append((environment_id, row_id, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    await self._flush(batch)
                except BaseException:
                    # Cancelled mid-query (the loop is shutting down): nobody will resolve these any more.
                    for _, _, future in batch:
                        future.cancel()
                    raise
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[str, str, asyncio.Future[Row | None]]]) -> None:
        by_environment: dict[str, set[str]] = {}
        for environment_id, row_id, _ in batch:
            by_environment.setdefault(environment_id, set()).add(row_id)
        found: dict[tuple[str, str], Row] = {}
        failed: dict[str, Exception] = {}
        for environment_id, ids in by_environment.items():
            try:
                rows = await self.direct.fetch_all(self.query, environment_id=environment_id, ids=sorted(ids))
            except Exception as exc:
                failed[environment_id] = exc
                continue
            found.update(((environment_id, row[self.key]), row) for row in rows)
        for environment_id, row_id, future in batch:
            if future.done():
                continue
            if environment_id in failed:
                future.set_exception(failed[environment_id])
            else:
                # Reads of one row in one batch share it: rows are read, never changed, by their callers.
                future.set_result(found.get((environment_id, row_id)))

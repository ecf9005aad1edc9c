"""Coalesced point reads: reads of single rows asked for concurrently are answered by one query.

Each read waits for the next batch (`clarion.store.pending_batches`), where it would otherwise pay a round
trip, a pool checkout and a statement of its own. Unlike group commits, reads take their batch at once:
waiting a loop turn to gather more was not shown to pay for reads. A read never joins a query
that is already running, so it sees at least every write committed before it was asked for, exactly as a
query of its own would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clarion.store.direct import DirectQuery, DirectReader
from clarion.store.pending_batches import PendingBatches

Row = dict[str, Any]


class CoalescedReads(PendingBatches[tuple[str, str], Row | None]):
    """Rows of one table by (environment, id). `query` takes the parameters `environment_id` and `ids`
    (the list of ids, bound as one parameter: `clarion.store.dialect.select_by_keys`) and selects the
    column `key` holding each row's id."""

    def __init__(
        self, direct: DirectReader, query: DirectQuery, key: str = "id", max_batch: int = 500
    ) -> None:
        super().__init__(max_batch)
        self.direct = direct
        self.query = query
        self.key = key

    async def fetch(self, environment_id: str, row_id: str) -> Row | None:
        return await self.submit((environment_id, row_id))

    async def flush(self, batch: list[tuple[tuple[str, str], asyncio.Future[Row | None]]]) -> None:
        by_environment: dict[str, set[str]] = {}
        for (environment_id, row_id), _ in batch:
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
        for key, future in batch:
            if future.done():
                continue
            if key[0] in failed:
                future.set_exception(failed[key[0]])
            else:
                # Reads of one row in one batch share it: rows are read, never changed, by their callers.
                future.set_result(found.get(key))

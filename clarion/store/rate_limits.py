"""Rate-limit windows counted in the database, shared by every API process on PostgreSQL.

One row per bucket; a hit in a new second resets its count. One upsert per counted request. Buckets idle
for a minute are deleted once a minute, so per-user buckets do not pile up.
"""

from __future__ import annotations

import sqlalchemy as sa

from clarion.store import dialect
from clarion.store.db import Database
from clarion.store.tables import rate_limit_counters

PRUNE_AFTER_SECONDS = 60


class DatabaseRateCounter:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._pruned_window = 0

    async def hit(self, bucket: str, window: int) -> int:
        table = rate_limit_counters
        statement = dialect.upsert(
            table,
            self.database.dialect_name,
            {"bucket": bucket, "window": window, "hits": 1},
            conflict=["bucket"],
            update=lambda excluded: {
                "hits": sa.case((table.c.window == excluded.window, table.c.hits + 1), else_=1),
                "window": excluded.window,
            },
        ).returning(table.c.hits)
        async with self.database.writer.begin() as connection:
            hits = int((await connection.execute(statement)).scalar_one())
        if window - self._pruned_window >= PRUNE_AFTER_SECONDS:
            self._pruned_window = window
            async with self.database.writer.begin() as connection:
                await connection.execute(table.delete().where(table.c.window < window - PRUNE_AFTER_SECONDS))
        return hits

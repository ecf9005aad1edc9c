"""Idempotency keys of triggers: the first response given to a request that carried an `Idempotency-Key`,
replayed for 24 hours to every later request with the same key.

`claim` runs in the transaction that does the request's work: it inserts the key with the response that
work will give, so the key and the work commit together. A concurrent request with the same key waits on
the first one's row (PostgreSQL) or the single writer (SQLite), then finds the key taken and is told the
response to replay instead of doing the work again. A key older than the window counts as free, and the
worker deletes such keys in batches (`prune_expired`, `clarion.engine.housekeeping`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.tables import idempotency_keys

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class StoredResponse:
    fingerprint: str
    response: dict[str, Any]


async def claim(
    connection: AsyncConnection,
    environment_id: str,
    key: str,
    fingerprint: str,
    response: dict[str, Any],
) -> StoredResponse | None:
    """Take `key` for this request in the caller's transaction. None when it was free (the caller goes on
    with its work); otherwise the response stored with the key, which the caller replays (and rolls back)."""
    now = utcnow()
    c = idempotency_keys.c
    scope = sa.and_(c.environment_id == environment_id, c.key == key)
    await connection.execute(idempotency_keys.delete().where(scope, c.inserted_at < now - WINDOW))
    inserted = await connection.execute(
        dialect.insert(idempotency_keys, connection.dialect.name)
        .values(
            environment_id=environment_id,
            key=key,
            fingerprint=fingerprint,
            response=response,
            inserted_at=now,
        )
        .on_conflict_do_nothing(index_elements=["environment_id", "key"])
        .returning(c.key)
    )
    if inserted.first() is not None:
        return None
    row = (await connection.execute(sa.select(c.fingerprint, c.response).where(scope))).one()
    return StoredResponse(row.fingerprint, row.response)


async def prune_expired(database: Database, limit: int = 10_000) -> int:
    """Delete up to `limit` keys older than the window; returns how many."""
    c = idempotency_keys.c
    async with database.writer.begin() as connection:
        expired = (
            sa.select(c.environment_id, c.key)
            .where(c.inserted_at < utcnow() - WINDOW)
            .limit(limit)
            .subquery()
        )
        result = await connection.execute(
            idempotency_keys.delete().where(
                sa.tuple_(c.environment_id, c.key).in_(sa.select(expired.c.environment_id, expired.c.key))
            )
        )
    return int(result.rowcount)

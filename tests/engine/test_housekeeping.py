"""Expired idempotency keys are pruned in batches; keys inside the 24-hour window stay and keep replaying."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from clarion.engine.housekeeping import IdempotencyKeyPruner
from clarion.store.clock import utcnow
from clarion.store.tables import idempotency_keys
from tests.conftest import EnvFixture


async def keys_of(env: EnvFixture) -> list[str]:
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(
            sa.select(idempotency_keys.c.key)
            .where(idempotency_keys.c.environment_id == env.id)
            .order_by(idempotency_keys.c.key)
        )
        return [row.key for row in rows]


async def test_expired_keys_are_pruned_in_batches_and_fresh_ones_kept(env: EnvFixture) -> None:
    now = utcnow()
    rows = [
        {
            "environment_id": env.id,
            "key": f"{age}-{n}",
            "fingerprint": "f",
            "response": {"workflow_run_id": "r"},
            "inserted_at": now - timedelta(hours=age),
        }
        for age in (1, 23, 25, 48)
        for n in range(3)
    ]
    async with env.runtime.database.writer.begin() as connection:
        await connection.execute(idempotency_keys.insert(), rows)
    await IdempotencyKeyPruner(env.runtime.database, interval=60, limit=2).tick()
    assert await keys_of(env) == ["1-0", "1-1", "1-2", "23-0", "23-1", "23-2"]

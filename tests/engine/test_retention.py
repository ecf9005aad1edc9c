"""Data retention with a clock the test moves: messages (with their events and activities), finished runs,
finished bulk operations and batches older than the retention are gone from the API; newer ones stay, and so
do runs still waiting (at a delay) and their messages, and batches such runs carry, until they finish and age
out in turn. Throttle windows go once they are over.

Each test has a store of its own, since a pass with the clock months ahead prunes everything old in it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from clarion.api.app import create_app
from clarion.config import settings_from_env
from clarion.engine.bulk import BULK_QUEUE
from clarion.engine.housekeeping import RetentionPruner
from clarion.engine.workflow_jobs import WORKFLOW_QUEUE
from clarion.runtime import Runtime, build_runtime, build_worker
from clarion.store.batches import BatchFlush, BatchIdentity, BatchJoin, flush_batches, join_batches
from clarion.store.clock import utcnow
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import batch_activities, batches, throttles
from clarion.store.throttles import ThrottleEntry, ThrottleIdentity, count_throttled
from tests.conftest import EnvFixture, fresh_postgres_database, make_settings, new_environment, push_workflow

RETENTION = timedelta(days=90)

FEED_STEP = {
    "ref": "in_app_feed_1",
    "type": "channel",
    "channel_key": "in-app-feed",
    "template": {"markdown_body": "{{ data.text }}"},
}
YEAR_DELAY = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "days", "value": 365}}}
LATER_STEP = {**FEED_STEP, "ref": "in_app_feed_2"}


@pytest.fixture
def private_database_url(store: str, tmp_path: Path) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{tmp_path / 'retention.db'}"
        return
    with fresh_postgres_database("retention test") as url:
        yield url


@pytest.fixture
async def private_env(store: str, private_database_url: str, tmp_path: Path) -> AsyncIterator[EnvFixture]:
    runtime = await build_runtime(make_settings(store, tmp_path, private_database_url))
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as client:
            yield await new_environment(runtime, client)
    finally:
        await runtime.close()


async def drain(runtime: Runtime) -> None:
    await build_worker(runtime).drain([WORKFLOW_QUEUE, BULK_QUEUE])


async def trigger(env: EnvFixture, workflow: str, user: str, **fields: Any) -> None:
    body = {"recipients": [{"id": user}], "data": {"text": f"for {user}"}, **fields}
    response = await env.post(f"/v1/workflows/{workflow}/trigger", json=body)
    assert response.status_code == 200, response.text
    await drain(env.runtime)


async def messages_of(env: EnvFixture, user: str) -> list[dict[str, Any]]:
    response = await env.get(f"/v1/users/{user}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def run_of(env: EnvFixture, user: str) -> dict[str, Any]:
    response = await env.get("/v1/workflow_recipient_runs", params={"recipient": user})
    assert response.status_code == 200, response.text
    [run] = response.json()["items"]
    assert isinstance(run, dict)
    return run


async def statuses(env: EnvFixture, *paths: str) -> list[int]:
    return [(await env.get(path)).status_code for path in paths]


def message_paths(message: dict[str, Any]) -> list[str]:
    base = f"/v1/messages/{message['id']}"
    return [base, f"{base}/events", f"{base}/activities", f"{base}/content"]


async def prune(env: EnvFixture, now: Any, batch: int = 200) -> None:
    pruner = RetentionPruner(env.runtime.database, 60, RETENTION, clock=lambda: now, batch=batch)
    await pruner.tick()


async def test_old_data_goes_new_and_waiting_data_stays(private_env: EnvFixture, tmp_path: Path) -> None:
    env = private_env
    await push_workflow(env, tmp_path, "notice", {"name": "Notice", "steps": [FEED_STEP]})
    await push_workflow(
        env, tmp_path, "reminder", {"name": "R", "steps": [FEED_STEP, YEAR_DELAY, LATER_STEP]}
    )

    # The old ones: two finished runs, a run waiting a year at its delay, a finished bulk operation.
    await trigger(env, "notice", "old-1")
    await trigger(env, "reminder", "waiting", cancellation_key="k")
    await trigger(env, "notice", "old-2")
    bulk = (await env.post("/v1/users/bulk/identify", json={"users": [{"id": "bulk-1"}]})).json()
    await drain(env.runtime)
    assert (await env.get(f"/v1/bulk_operations/{bulk['id']}")).json()["status"] == "completed"
    old_messages = [*(await messages_of(env, "old-1")), *(await messages_of(env, "old-2"))]
    old_runs = [await run_of(env, "old-1"), await run_of(env, "old-2")]
    [waiting_message] = await messages_of(env, "waiting")
    assert (await run_of(env, "waiting"))["status"] == "paused"

    boundary = utcnow()
    await asyncio.sleep(0.01)
    await trigger(env, "notice", "new")
    [new_message] = await messages_of(env, "new")
    new_run = await run_of(env, "new")

    # 90 days after the boundary, one row a batch: the walk passes the waiting run's message and stops at
    # the first new row.
    await prune(env, boundary + RETENTION, batch=1)

    for message in old_messages:
        assert await statuses(env, *message_paths(message)) == [404] * 4
    for run in old_runs:
        assert await statuses(env, f"/v1/workflow_recipient_runs/{run['id']}") == [404]
    assert await statuses(env, f"/v1/bulk_operations/{bulk['id']}") == [404]
    assert await messages_of(env, "old-1") == []
    for message in (waiting_message, new_message):
        assert await statuses(env, *message_paths(message)) == [200] * 4
    assert (await run_of(env, "waiting"))["status"] == "paused"
    assert await statuses(env, f"/v1/workflow_recipient_runs/{new_run['id']}") == [200]
    events = (await env.get(f"/v1/messages/{waiting_message['id']}/events")).json()["items"]
    assert [event["type"] for event in events] == ["message.delivered", "message.created"]

    # Once the waiting run has finished (cancelled here), a pass past the retention takes it too.
    cancelled = await env.post("/v1/workflows/reminder/cancel", json={"cancellation_key": "k"})
    assert cancelled.status_code == 204, cancelled.text
    later = utcnow() + RETENTION + timedelta(days=1)
    await prune(env, later)
    for message in (waiting_message, new_message):
        assert await statuses(env, f"/v1/messages/{message['id']}") == [404]
    assert await statuses(env, f"/v1/workflow_recipient_runs/{new_run['id']}") == [404]
    response = await env.get("/v1/workflow_recipient_runs", params={"recipient": "waiting"})
    assert response.json()["items"] == []


async def test_a_finished_run_is_kept_for_the_retention_after_it_finishes(
    private_env: EnvFixture, tmp_path: Path
) -> None:
    env = private_env
    await push_workflow(
        env, tmp_path, "reminder", {"name": "R", "steps": [FEED_STEP, YEAR_DELAY, LATER_STEP]}
    )
    await trigger(env, "reminder", "waiting", cancellation_key="k")
    started = utcnow()
    [first_message] = await messages_of(env, "waiting")
    await asyncio.sleep(0.01)
    assert (
        await env.post("/v1/workflows/reminder/cancel", json={"cancellation_key": "k"})
    ).status_code == 204
    run = await run_of(env, "waiting")
    assert run["status"] == "cancelled"

    # Started before the cutoff, finished after it: the run stays, its message (made before) goes.
    await prune(env, started + RETENTION)
    assert await statuses(env, f"/v1/workflow_recipient_runs/{run['id']}") == [200]
    assert await statuses(env, f"/v1/messages/{first_message['id']}") == [404]


def test_the_retention_setting_defaults_to_90_days_and_0_keeps_everything(runtime: Runtime) -> None:
    assert settings_from_env({}).retention_days == 90
    assert settings_from_env({"CLARION_RETENTION_DAYS": "30"}).retention_days == 30
    for bad in ("-1", "30d", "1.5", "", "36501"):
        with pytest.raises(ValueError, match="CLARION_RETENTION_DAYS must be a whole number of days"):
            settings_from_env({"CLARION_RETENTION_DAYS": bad})

    def retention_of(days: int) -> list[timedelta]:
        runtime_with = replace(runtime, settings=replace(runtime.settings, retention_days=days))
        loopers = build_worker(runtime_with).loopers
        return [looper.retention for looper in loopers if isinstance(looper, RetentionPruner)]

    assert retention_of(30) == [timedelta(days=30)]
    assert retention_of(0) == []


async def test_sqlite_reuses_the_pages_pruning_freed(
    store: str, private_env: EnvFixture, tmp_path: Path
) -> None:
    if store != "sqlite":
        pytest.skip("about SQLite's file")
    env = private_env
    await push_workflow(env, tmp_path, "notice", {"name": "Notice", "steps": [FEED_STEP]})

    async def fill() -> int:
        for n in range(30):
            body = {"recipients": [{"id": f"user-{n}"}], "data": {"text": "hello"}}
            assert (await env.post("/v1/workflows/notice/trigger", json=body)).status_code == 200
        await drain(env.runtime)
        while await env.runtime.queue.prune(timedelta(0)):
            pass
        return await pages(env, "page_count")

    full = await fill()
    await prune(env, utcnow() + RETENTION)
    assert await messages_of(env, "user-0") == []
    assert await pages(env, "freelist_count") > 0
    assert await fill() <= full


async def pages(env: EnvFixture, pragma: str) -> int:
    async with env.runtime.database.reader.connect() as connection:
        return int((await connection.exec_driver_sql(f"PRAGMA {pragma}")).scalar_one())


async def test_old_batches_go_with_their_activities_and_those_still_carried_stay(
    private_env: EnvFixture, tmp_path: Path
) -> None:
    env = private_env
    database = env.runtime.database
    await push_workflow(
        env, tmp_path, "reminder", {"name": "R", "steps": [FEED_STEP, YEAR_DELAY, LATER_STEP]}
    )
    await trigger(env, "reminder", "waiting")
    waiting_run = (await run_of(env, "waiting"))["id"]
    opened = utcnow() - RETENTION - timedelta(days=10)

    def entries(user: str, carrier: str | None = None) -> list[BatchJoin]:
        identity = BatchIdentity(env.id, "digest", RecipientKey.user(user), "batch_1", "", "")
        closes_at = opened + timedelta(minutes=1)
        first = BatchJoin(carrier or str(uuid.uuid4()), identity, None, {"n": 0}, closes_at)
        return [first, BatchJoin(str(uuid.uuid4()), identity, None, {"n": 1}, closes_at)]

    async with database.writer.begin() as connection:
        flushed, _, carried, _, abandoned, _ = await join_batches(
            connection,
            [*entries("flushed"), *entries("carried", carrier=waiting_run), *entries("abandoned")],
            opened,
        )
        assert flushed.run_id is not None
        request = BatchFlush(flushed.batch_id, flushed.run_id, 10, False)
        await flush_batches(connection, env.id, [request], opened + timedelta(minutes=1))
        # A throttle window that is over, and one that is not.
        await count_throttled(
            connection,
            [
                ThrottleEntry(ThrottleIdentity(env.id, "alert", "t", RecipientKey.user(user), ""), 1, ends)
                for user, ends in (("over", opened), ("running", utcnow() + timedelta(days=1)))
            ],
            opened - timedelta(seconds=1),
        )

    await prune(env, utcnow(), batch=1)

    async with database.reader.connect() as connection:
        left = await connection.execute(sa.select(batches.c.id, batches.c.activity_count))
        assert [tuple(row) for row in left] == [(carried.batch_id, 2)]
        activities = await connection.scalars(sa.select(batch_activities.c.batch_id))
        assert list(activities) == [carried.batch_id] * 2
        throttled = await connection.scalars(sa.select(throttles.c.recipient_id))
        assert list(throttled) == ["running"]
    assert abandoned.batch_id not in (flushed.batch_id, carried.batch_id)

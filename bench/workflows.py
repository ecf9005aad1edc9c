"""Workflow benchmarks on SQLite and PostgreSQL, each printed as a ratio measured in the same run:

- intake: triggers/s of a one-recipient in-app workflow, by wrk against `clarion api` (the API alone, as
  in the scale-out setup: the runs wait for workers) at 64 connections, over hello-world's rate at as many,
  the two alternated in turns of two seconds. Goal >= 50%.
- fan-out: one trigger to 1,000 users named by id (identified beforehand, as most triggers name their
  recipients), the time until all 1,000 feed messages are readable (in-process runtime with its
  worker), as messages/s and over the same database's raw batched-insert rate of message rows (1,000
  rows per INSERT, one transaction); both the best of five, alternated (a raw insert, a fan-out to the
  same users, and again). Goal >= 25%. Then the same with the 1,000 users inline in the
  trigger, identified by it, for comparison.
- feed read: p50 and p99 of `GET /v1/users/{id}/feeds/{channel}` (default page of 50, sequential requests
  to `clarion api`) for a user with 10,000 messages in a table of 1,000,000.

Needs `wrk` on the PATH (Debian: `apt-get install wrk`). Run from the repository root:

    .venv/bin/python -m bench.workflows [--seconds 8] [--parts intake,fanout,feed] [--stores sqlite,postgres]
        [--connections 64[,128,…]]
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml

from bench.harness import (
    LoadLevel,
    Rate,
    at_load_levels,
    benchmark_arguments,
    best_ratio,
    clarion_server,
    describe_levels,
    each_store,
    hello_world,
    workflows_environment,
    wrk,
)
from clarion.api.app import create_app
from clarion.config import RateLimitMode, Settings
from clarion.runtime import Runtime, build_runtime, build_worker, freeze_startup_heap
from clarion.store.clock import utcnow
from clarion.store.db import create_database
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import environments, messages

FEED_WORKFLOW = {
    "name": "Bench",
    "steps": [
        {
            "ref": "in_app_feed_1",
            "type": "channel",
            "channel_key": "in-app-feed",
            "template": {"markdown_body": "**{{ data.actor_name }}** commented: {{ data.text }}"},
        }
    ],
}

TRIGGER_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local recipient = '"bench-' .. (counter % RECIPIENTS) .. '"'
  local body = '{"recipients":[' .. recipient .. '],"data":{"actor_name":"Ann","n":' .. counter .. '}}'
  local headers = {["Authorization"] = "Bearer KEY", ["Content-Type"] = "application/json"}
  return wrk.format("POST", "/v1/workflows/WORKFLOW/trigger", headers, body)
end
"""


def trigger_script(secret_key: str, workflow: str = "bench", recipients: int = 5000) -> str:
    """wrk's requests: one-recipient triggers of `workflow`, to the users `bench-0` … `bench-{recipients - 1}`
    in turn."""
    return (
        TRIGGER_SCRIPT.replace("KEY", secret_key)
        .replace("WORKFLOW", workflow)
        .replace("RECIPIENTS", str(recipients))
    )


FAN_OUT = 1_000
ROUNDS = 5
"""Fan-outs, each after a raw insert of as many rows; the best of each counts."""
FEED_MESSAGES = 10_000
TABLE_MESSAGES = 1_000_000
FEED_REQUESTS = 400


INTAKE_CONNECTIONS = [64]
"""The load intake is measured at, the least at which both servers serve their most (docs/performance.md):
a trigger is answered once its job is durably committed, so at 32 connections its rate is the commit's
latency more than the server's capacity."""


@contextmanager
def trigger_intake(database_url: str, connections: int) -> Iterator[Rate]:
    """`clarion api` on a fresh store, warmed up at `connections`, and the function measuring its trigger
    intake: triggers/s that the API accepts (and enqueues; no worker runs them)."""
    with clarion_server(database_url, "api", workflows={"bench": FEED_WORKFLOW}) as server:
        script = trigger_script(server.secret_key)
        wrk(server.base, 2, connections, script)  # warm-up
        yield lambda seconds, level: wrk(server.base, seconds, level, script)


def intake_levels(database_url: str, seconds: int, levels: Sequence[int], hello: Rate) -> list[LoadLevel]:
    with trigger_intake(database_url, levels[0]) as intake:
        return at_load_levels(intake, hello, seconds, levels)


def message_row(environment_id: str, channel_id: str, n: int, now: Any) -> dict[str, Any]:
    return {
        "id": f"bench{uuid.uuid4().hex[:22]}",
        "environment_id": environment_id,
        "channel_id": channel_id,
        "recipient_collection": "$users",
        "recipient_id": f"raw-{n}",
        "workflow_key": "bench",
        "run_id": str(uuid.uuid4()),
        "step_ref": "in_app_feed_1",
        "source": {
            "key": "bench",
            "version_id": str(uuid.uuid4()),
            "categories": [],
            "step_ref": "in_app_feed_1",
        },
        "tenant": None,
        "actors": [],
        "activities": [{"id": "a", "actor": None, "data": {"n": n}, "inserted_at": "2026-01-01T00:00:00Z"}],
        "data": {"n": n},
        "content": {
            "__typename": "MessageInAppFeedContent",
            "blocks": [{"name": "body", "content": f"m {n}"}],
        },
        "status": "delivered",
        "metadata": None,
        "inserted_at": now,
        "updated_at": now,
    }


async def _one_raw_insert(runtime: Runtime, environment_id: str, channel_id: str) -> float:
    """Seconds to write 1,000 message rows as one INSERT in one transaction (then deleted again)."""
    rows = [message_row(environment_id, channel_id, n, utcnow()) for n in range(FAN_OUT)]
    started = time.perf_counter()
    async with runtime.database.writer.begin() as connection:
        await connection.execute(messages.insert(), rows)
    elapsed = time.perf_counter() - started
    async with runtime.database.writer.begin() as connection:
        await connection.execute(
            messages.delete().where(
                messages.c.workflow_key == "bench", messages.c.run_id.in_([r["run_id"] for r in rows])
            )
        )
    return elapsed


@dataclass(frozen=True)
class InProcess:
    """A runtime with its worker running, an environment with the benchmark's workflows, and a client of
    the ASGI app authenticated with the environment's secret key."""

    runtime: Runtime
    client: httpx.AsyncClient
    environment_id: str


@asynccontextmanager
async def in_process(database_url: str, workflows: dict[str, dict[str, Any]]) -> AsyncIterator[InProcess]:
    """`workflows` (key → workflow.json) pushed to a new environment of an in-process runtime, set up as
    `clarion serve` sets up its own, with its worker started."""
    data_dir = Path(tempfile.mkdtemp(prefix="clarion-bench-"))
    try:
        for workflow_key, document in workflows.items():
            folder = data_dir / "workflows" / workflow_key
            folder.mkdir(parents=True)
            (folder / "workflow.json").write_text(json.dumps(document))
        settings = Settings(data_dir=data_dir, database_url=database_url, rate_limit_mode=RateLimitMode.OFF)
        runtime = await build_runtime(settings)
        freeze_startup_heap()  # as `clarion serve` does
        try:
            environment_id, key = await workflows_environment(runtime, "bench", data_dir / "workflows")
            worker = build_worker(runtime)
            await worker.start()
            try:
                transport = httpx.ASGITransport(app=create_app(runtime))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {key}"}
                ) as client:
                    yield InProcess(runtime, client, environment_id)
            finally:
                await worker.stop()
        finally:
            await runtime.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _one_fan_out(bench: InProcess, body: dict[str, Any]) -> float:
    """Seconds from sending the trigger until all its messages can be read."""
    started = time.perf_counter()
    response = await bench.client.post("/v1/workflows/bench/trigger", json=body)
    assert response.status_code == 200, response.text
    made = sa.select(sa.func.count()).where(
        messages.c.environment_id == bench.environment_id,
        messages.c.workflow_run_id == response.json()["workflow_run_id"],
    )
    while True:
        async with bench.runtime.database.reader.connect() as connection:
            if (await connection.execute(made)).scalar_one() >= FAN_OUT:
                return time.perf_counter() - started
        # Polled often: the time measured is rounded up to the next poll.
        await asyncio.sleep(0.001)


async def fan_out(database_url: str, *, inline: bool) -> tuple[float, float]:
    async with in_process(database_url, {"bench": FEED_WORKFLOW}) as bench:
        channel = bench.runtime.channels.by_key("in-app-feed")
        assert channel is not None
        users = [(f"fan-{n}", {"name": f"Fan {n}"}, InlineRecipientData()) for n in range(FAN_OUT)]
        recipients: list[Any] = [{"id": user_id, **properties} for user_id, properties, _ in users]
        if not inline:
            await bench.runtime.users.identify_many(bench.environment_id, users)
            recipients = [user_id for user_id, _, _ in users]
        body = {"recipients": recipients, "data": {"actor_name": "Ann", "text": "hello"}}
        # Alternated, so that both see the database as it is in the same minutes.
        raw_times, fan_out_times = [], []
        for _ in range(ROUNDS):
            raw_times.append(await _one_raw_insert(bench.runtime, bench.environment_id, channel.id))
            fan_out_times.append(await _one_fan_out(bench, body))
    rate = FAN_OUT / min(fan_out_times)
    return rate, rate / (FAN_OUT / min(raw_times))


def seed_statement(dialect: str, environment_id: str, channel_id: str, count: int, recipient: str) -> str:
    """An INSERT … SELECT generating `count` feed messages for `recipient` inside the database."""
    if dialect == "postgresql":
        return f"""
        INSERT INTO messages (id, environment_id, channel_id, recipient_collection, recipient_id,
            workflow_key, run_id, step_ref, source, tenant, actors, activities, data, content, status,
            inserted_at, updated_at)
        SELECT left(md5('{recipient}' || n), 27), '{environment_id}', '{channel_id}', '$users', '{recipient}',
            'bench', md5('{recipient}' || n), 'in_app_feed_1',
            jsonb_build_object('key', 'bench', 'version_id', '00000000-0000-4000-8000-000000000000',
                'categories', '[]'::jsonb, 'step_ref', 'in_app_feed_1'),
            NULL, '[]'::jsonb,
            jsonb_build_array(jsonb_build_object('id', 'a' || n, 'actor', NULL,
                'data', jsonb_build_object('n', n), 'inserted_at', '2026-01-01T00:00:00Z')),
            jsonb_build_object('n', n),
            jsonb_build_object('__typename', 'MessageInAppFeedContent', 'blocks', jsonb_build_array(
                jsonb_build_object('name', 'body', 'type', 'markdown', 'content', 'Message ' || n,
                    'rendered', '<p>Message ' || n || '</p>'))),
            'delivered', now() - make_interval(secs => {count} - n),
            now() - make_interval(secs => {count} - n)
        FROM generate_series(1, {count}) AS n
        """
    return f"""
    WITH RECURSIVE series(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM series WHERE n < {count})
    INSERT INTO messages (id, environment_id, channel_id, recipient_collection, recipient_id, workflow_key,
        run_id, step_ref, source, tenant, actors, activities, data, content, status, inserted_at, updated_at)
    SELECT 'seed' || '{recipient}' || n, '{environment_id}', '{channel_id}', '$users', '{recipient}', 'bench',
        '{recipient}' || n, 'in_app_feed_1',
        json_object('key', 'bench', 'version_id', '00000000-0000-4000-8000-000000000000',
            'categories', json('[]'), 'step_ref', 'in_app_feed_1'),
        NULL, '[]',
        json_array(json_object('id', 'a' || n, 'actor', NULL, 'data', json_object('n', n),
            'inserted_at', '2026-01-01T00:00:00Z')),
        json_object('n', n),
        json_object('__typename', 'MessageInAppFeedContent', 'blocks', json_array(
            json_object('name', 'body', 'type', 'markdown', 'content', 'Message ' || n,
                'rendered', '<p>Message ' || n || '</p>'))),
        'delivered', strftime('%Y-%m-%d %H:%M:%f000', 'now', '-' || ({count} - n) || ' seconds'),
        strftime('%Y-%m-%d %H:%M:%f000', 'now', '-' || ({count} - n) || ' seconds')
    FROM series
    """


async def seed_feed(database_url: str, data_dir: Path) -> tuple[str, str]:
    """10,000 messages for `reader` in the development environment, the rest of the million for other
    users of another environment. Returns the feed channel's id."""
    channels = yaml.safe_load((data_dir / "channels.yml").read_text())["channels"]
    channel_id = next(c["id"] for c in channels if c["key"] == "in-app-feed")
    url = Settings(data_dir=data_dir, database_url=database_url).resolved_database_url
    # A seeding statement writes 100,000 rows: far longer than a request's bound on its statements.
    database = create_database(url, wait_seconds=600)
    try:
        async with database.writer.begin() as connection:
            development = (
                await connection.execute(
                    sa.select(environments.c.id).where(environments.c.name == "development")
                )
            ).scalar_one()
            filler = str(uuid.uuid4())
            await connection.execute(
                environments.insert().values(
                    id=filler, name=f"filler-{filler[:8]}", enhanced_security=False, inserted_at=utcnow()
                )
            )
        dialect = database.dialect_name
        chunk = 100_000
        others = TABLE_MESSAGES - FEED_MESSAGES
        for start in range(0, others, chunk):
            async with database.writer.begin() as connection:
                await connection.exec_driver_sql(
                    seed_statement(dialect, filler, channel_id, chunk, f"other-{start // chunk}")
                )
        async with database.writer.begin() as connection:
            await connection.exec_driver_sql(
                seed_statement(dialect, development, channel_id, FEED_MESSAGES, "reader")
            )
        if dialect == "postgresql":
            # As autovacuum leaves a table that stopped growing: statistics taken, and every page marked
            # all-visible, which index-only scans (the feed's counts) rely on to skip the rows.
            async with database.writer.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql("VACUUM ANALYZE messages")
    finally:
        await database.dispose()
    return channel_id, development


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def feed_latency(database_url: str) -> tuple[float, float]:
    with clarion_server(database_url, "api") as server:
        channel_id, _ = asyncio.run(seed_feed(database_url, server.data_dir))
        url = f"{server.base}/v1/users/reader/feeds/{channel_id}"
        headers = {"Authorization": f"Bearer {server.secret_key}"}
        timings: list[float] = []
        with httpx.Client(headers=headers, timeout=30) as client:
            first = client.get(url)
            assert first.status_code == 200 and first.json()["meta"]["total_count"] == FEED_MESSAGES, (
                first.text[:300]
            )
            for _ in range(FEED_REQUESTS):
                started = time.perf_counter()
                response = client.get(url)
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200
    return percentile(timings, 0.5) * 1000, percentile(timings, 0.99) * 1000


def main() -> None:
    parser = benchmark_arguments(__doc__, seconds=8)
    parser.set_defaults(connections=INTAKE_CONNECTIONS)
    parser.add_argument("--parts", default="intake,fanout,feed")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "intake" in parts and shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    stores = args.stores.split(",")
    if "intake" in parts:
        with hello_world() as hello:
            for store, levels in each_store(
                stores, args.postgres, lambda url: intake_levels(url, args.seconds, args.connections, hello)
            ):
                rate, ratio = best_ratio(levels)
                print(f"{store:9} trigger intake {rate:8,.0f} triggers/s = {ratio:6.1%} of hello (goal 50%)")
                print(f"{store:9}   by connections (triggers/hello-world): {describe_levels(levels)}")
    if "fanout" in parts:
        for store, ((rate, ratio), (inline_rate, inline_ratio)) in each_store(
            stores,
            args.postgres,
            lambda url: (asyncio.run(fan_out(url, inline=False)), asyncio.run(fan_out(url, inline=True))),
        ):
            print(
                f"{store:9} fan-out 1,000   {rate:8,.0f} messages/s = {ratio:6.1%} of raw inserts (goal 25%)"
            )
            inline_line = f"{inline_rate:8,.0f} messages/s = {inline_ratio:6.1%} of raw inserts"
            print(f"{store:9}   inline users {inline_line}")
    if "feed" in parts:
        for store, (p50, p99) in each_store(stores, args.postgres, feed_latency):
            print(f"{store:9} feed read       p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  (10,000 of 1,000,000)")


if __name__ == "__main__":
    main()

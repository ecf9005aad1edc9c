"""Disk per message on SQLite and PostgreSQL: fills a fresh store through the real engine and prints what it
grew by, per message and per million messages.

Each trigger is the shipped `welcome` workflow (an in-app feed message and an email) for one new recipient
given inline (identified by the trigger, as a sign-up would), sent through the API in-process and run by
the worker; finished jobs are then pruned as the queue does an hour later. Printed per store:

- the messages table with its indexes, per message; the runs table with its indexes, per run;
- the whole store's growth (users, runs, messages and all), per message, and so per million messages;
- a retention pass that prunes everything (the clock moved past the retention), its time per batch, and
  the store's size after the same triggers again: the space freed is reused, so the size holds.

Run from the repository root:

    .venv/bin/python -m bench.disk [--triggers 20000] [--stores sqlite,postgres] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import sqlalchemy as sa

from bench.harness import DEFAULT_POSTGRES, ROOT, postgres_database, workflows_environment
from clarion.api.app import create_app
from clarion.config import RateLimitMode, Settings
from clarion.engine.workflow_jobs import WORKFLOW_QUEUE
from clarion.runtime import Runtime, build_runtime, build_worker
from clarion.store.clock import utcnow
from clarion.store.retention import BATCH, prune_older_than
from clarion.store.tables import messages, workflow_runs

TRIGGERS_AT_ONCE = 50
"""Triggers in flight together, so intake group-commits them as it does under load."""
DRAIN_EVERY = 1_000
RETENTION = timedelta(days=90)

T = TypeVar("T")
Sizes = dict[str, int]
"""Bytes per table, its indexes (and on PostgreSQL its TOAST) included."""


def sqlite_sizes(path: Path) -> Sizes:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT s.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_schema s ON s.name = d.name "
            "GROUP BY s.tbl_name"
        ).fetchall()
        [(pages, page_size)] = connection.execute(
            "SELECT page_count, page_size FROM pragma_page_count, pragma_page_size"
        ).fetchall()
    return {**{name: int(size) for name, size in rows}, "(file)": pages * page_size}


def postgres_sizes(url: str) -> Callable[[], Awaitable[Sizes]]:
    async def measure() -> Sizes:
        connection = await asyncpg.connect(url)
        try:
            # What autovacuum would have done by the time anyone looks: dead rows' space marked reusable.
            await connection.execute("VACUUM")
            rows = await connection.fetch(
                "SELECT relname, pg_total_relation_size(relid) AS size FROM pg_stat_user_tables"
            )
        finally:
            await connection.close()
        sizes = {row["relname"]: int(row["size"]) for row in rows}
        return {**sizes, "(file)": sum(sizes.values())}

    return measure


async def count(runtime: Runtime, table: sa.Table) -> int:
    async with runtime.database.reader.connect() as connection:
        return int((await connection.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def fill(runtime: Runtime, client: httpx.AsyncClient, key: str, first: int, triggers: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    worker = build_worker(runtime)

    async def trigger(n: int) -> None:
        recipient = {"id": f"user-{n}", "name": f"User {n}", "email": f"user-{n}@example.com"}
        body = {"recipients": [recipient], "data": {"product_name": "Clarion"}}
        response = await client.post("/v1/workflows/welcome/trigger", json=body, headers=headers)
        assert response.status_code == 200, response.text

    for start in range(first, first + triggers, TRIGGERS_AT_ONCE):
        await asyncio.gather(
            *(trigger(n) for n in range(start, min(start + TRIGGERS_AT_ONCE, first + triggers)))
        )
        if (start - first + TRIGGERS_AT_ONCE) % DRAIN_EVERY == 0:
            await worker.drain([WORKFLOW_QUEUE])
    await worker.drain([WORKFLOW_QUEUE])
    while await runtime.queue.prune(timedelta(0)):
        pass


async def holding_the_loop(work: Awaitable[T]) -> tuple[T, float]:
    """What `work` returns, and the most CPU time the event loop's thread spent between two turns of the
    loop meanwhile: on SQLite, where statements run on the loop, the longest a request would wait for the
    pass on an otherwise idle machine. CPU time, not wall time, so that other processes on the machine do
    not count."""
    longest = 0.0
    done = False

    async def watch() -> None:
        nonlocal longest
        last = time.thread_time()
        while not done:
            await asyncio.sleep(0)
            now = time.thread_time()
            longest = max(longest, now - last)
            last = now

    watcher = asyncio.create_task(watch())
    try:
        result = await work
    finally:
        done = True
        await watcher
    return result, longest


def grown(before: Sizes, after: Sizes, table: str) -> int:
    return after.get(table, 0) - before.get(table, 0)


async def measure_store(name: str, database_url: str, triggers: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="clarion-disk-"))
    try:
        settings = Settings(data_dir=data_dir, database_url=database_url, rate_limit_mode=RateLimitMode.OFF)
        runtime = await build_runtime(settings)
        sizes: Callable[[], Awaitable[Sizes]]
        if database_url:
            sizes = postgres_sizes(database_url)
        else:
            database_file = data_dir / "clarion.db"

            async def sizes() -> Sizes:
                return sqlite_sizes(database_file)

        try:
            _, key = await workflows_environment(runtime, "disk", ROOT / "workflows")
            transport = httpx.ASGITransport(app=create_app(runtime))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                empty = await sizes()
                await fill(runtime, client, key, 0, triggers)
                full = await sizes()
                made = await count(runtime, messages)
                runs = await count(runtime, workflow_runs)
                per_message = grown(empty, full, "(file)") / made
                print(f"{name:9} {triggers:,} triggers: {made:,} messages, {runs:,} runs")
                print(
                    f"{name:9}   messages table {grown(empty, full, 'messages') / made:8,.0f} bytes/message"
                )
                print(
                    f"{name:9}   runs table     {grown(empty, full, 'workflow_runs') / runs:8,.0f} bytes/run"
                )
                print(
                    f"{name:9}   whole store    {per_message:8,.0f} bytes/message"
                    f" = {per_message * 1e6 / 1e9:5.2f} GB per million messages"
                )

                started = time.perf_counter(), time.process_time()
                pruned, held = await holding_the_loop(
                    prune_older_than(runtime.database, RETENTION, now=utcnow() + RETENTION)
                )
                seconds = time.perf_counter() - started[0]
                cpu = time.process_time() - started[1]
                batches = -(-pruned.messages // BATCH) + -(-pruned.runs // BATCH)
                print(
                    f"{name:9}   retention pass: {pruned.messages:,} messages and {pruned.runs:,} runs,"
                    f" {batches:,} batches of {BATCH}, in {seconds:.1f} s ({cpu:.1f} s of this process's"
                    f" CPU, {cpu / batches * 1000:.1f} ms a batch); the event loop's thread ran"
                    f" {held * 1000:.1f} ms at most between two turns"
                )
                pruned_sizes = await sizes()
                print(
                    f"{name:9}   store after the pass: {pruned_sizes['(file)'] / 1e6:,.1f} MB"
                    " (it does not shrink: what was freed waits to be reused)"
                )
                await fill(runtime, client, key, 0, triggers)
                refilled = await sizes()
                print(
                    f"{name:9}   after pruning all and the same triggers again:"
                    f" {refilled['(file)'] / 1e6:,.1f} MB against {full['(file)'] / 1e6:,.1f} MB before"
                )
        finally:
            await runtime.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=20_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    for store in args.stores.split(","):
        if store == "postgres":
            with postgres_database(args.postgres) as url:
                asyncio.run(measure_store(store, url, args.triggers))
        else:
            asyncio.run(measure_store(store, "", args.triggers))


if __name__ == "__main__":
    main()

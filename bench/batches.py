"""Batched triggers end to end on SQLite and PostgreSQL, as a ratio to plain trigger intake measured in the
same run:

- one-recipient triggers of a workflow whose batch step (a window of an hour) gathers each recipient's
  triggers before an in-app feed step, spread round-robin over 1,000 recipients (identified beforehand)
  whose batches are open, sent by wrk at 64 connections to the README's server: `clarion serve` on SQLite,
  `clarion api` beside `clarion worker` (`--workers`) on PostgreSQL. A turn sends for two seconds, as fast
  as the API accepts them, and lasts until the workers have run every trigger job (the queue holds no
  available, executing or retryable workflow job): triggers/s from its first request until then. The API
  accepts far faster than the workers run, so a turn's time is the backlog's, and its rate the highest
  Clarion sustains end to end (API, queue and worker sharing the machine, as they would at that rate).
- alternated turn by turn with plain trigger intake (`bench.workflows`: triggers/s that `clarion api`
  accepts, without a worker, on a store of its own) at as many connections. Goal >= 50%.

Then the batches' windows are moved to now (their close and their carriers' wake-up jobs, in the store) and
the benchmark fails unless the workers make exactly one message per batch, 1,000, whose rendered
`total_activities` add up to every trigger sent.

Needs `wrk` on the PATH (Debian: `apt-get install wrk`). Run from the repository root:

    .venv/bin/python -m bench.batches [--seconds 4] [--stores sqlite,postgres] [--connections 64[,128,…]]
        [--workers 1]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Final

import httpx
import sqlalchemy as sa

from bench.harness import (
    ClarionServer,
    LoadLevel,
    Rate,
    at_load_levels,
    benchmark_arguments,
    best_ratio,
    clarion_server,
    describe_levels,
    each_store,
    postgres_database,
    wrk,
)
from bench.workflows import INTAKE_CONNECTIONS, trigger_intake, trigger_script
from clarion.config import Settings
from clarion.engine.workflow_jobs import STEP_JOB, TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.jobs.job import JobState
from clarion.store.batches import BatchState
from clarion.store.clock import utcnow
from clarion.store.db import Database, create_database
from clarion.store.tables import batches, environments, jobs, messages

RECIPIENTS: Final = 1_000
WORKFLOW_KEY: Final = "batched"
BATCHED_WORKFLOW: Final = {
    "name": "Batched comments",
    "steps": [
        {"ref": "comments", "type": "batch", "settings": {"batch_window": {"unit": "hours", "value": 1}}},
        {
            "ref": "in_app_feed_1",
            "type": "channel",
            "channel_key": "in-app-feed",
            "template": {
                "markdown_body": "{{ total_activities }} comments, the last from {{ data.actor_name }}"
            },
        },
    ],
}
UNFINISHED: Final = [JobState.AVAILABLE.value, JobState.EXECUTING.value, JobState.RETRYABLE.value]
"""A workflow job in these states still has work to do (a scheduled one waits for its moment)."""
POLL_SECONDS: Final = 0.01
"""How often a turn looks whether the workers are done: its time is rounded up to this."""
WAIT_TIMEOUT: Final = 900.0
"""The longest the workers may take to run what they were given before the benchmark fails."""


@dataclass(frozen=True)
class Outcome:
    levels: list[LoadLevel]
    triggers: int
    messages: int


class WorkedStore:
    """The end-to-end server's store, read (and its batches' time moved) from this process, on a loop of
    its own kept across the benchmark's calls."""

    def __init__(self, runner: asyncio.Runner, database: Database) -> None:
        self.runner = runner
        self.database = database
        development = sa.select(environments.c.id).where(environments.c.name == "development")
        self.environment_id: str = self.scalar(development)

    def scalar(self, statement: sa.Select[Any]) -> Any:
        async def read() -> Any:
            async with self.database.reader.connect() as connection:
                return (await connection.execute(statement)).scalar_one()

        return self.runner.run(read())

    def triggers(self) -> int:
        """Every trigger job the API has enqueued."""
        return int(self.scalar(sa.select(sa.func.count()).where(jobs.c.kind == TRIGGER_JOB)))

    def wait_until_worked(self) -> None:
        """Return once no workflow job has work left; fail if one did not complete."""
        unfinished = sa.select(sa.func.count()).where(
            jobs.c.state.in_(UNFINISHED), jobs.c.queue == WORKFLOW_QUEUE
        )
        _wait_for(lambda: not self.scalar(unfinished), "the workers to run every workflow job")
        failed = self.scalar(
            sa.select(sa.func.count()).where(
                jobs.c.queue == WORKFLOW_QUEUE,
                jobs.c.state.not_in([JobState.COMPLETED.value, JobState.SCHEDULED.value]),
            )
        )
        if failed:
            raise RuntimeError(f"{failed} workflow jobs did not complete")

    def open_batches(self) -> int:
        return int(
            self.scalar(
                sa.select(sa.func.count()).where(
                    batches.c.environment_id == self.environment_id,
                    batches.c.workflow_key == WORKFLOW_KEY,
                    batches.c.state == BatchState.OPEN.value,
                )
            )
        )

    def close_batches(self) -> None:
        """Move the open batches' time to their window's end, as the clock would an hour later: their
        close to now, and the jobs at which their carriers wake up to flush them."""
        now = utcnow()

        async def move() -> None:
            async with self.database.writer.begin() as connection:
                await connection.execute(
                    batches.update()
                    .where(
                        batches.c.environment_id == self.environment_id,
                        batches.c.state == BatchState.OPEN.value,
                    )
                    .values(closes_at=now)
                )
                await connection.execute(
                    jobs.update()
                    .where(
                        jobs.c.queue == WORKFLOW_QUEUE,
                        jobs.c.kind == STEP_JOB,
                        jobs.c.state == JobState.SCHEDULED.value,
                    )
                    .values(scheduled_at=now)
                )

        self.runner.run(move())

    def batched_messages(self) -> list[tuple[str, str | None, Any]]:
        """The workflow's messages: recipient, batch and content."""

        async def read() -> list[tuple[str, str | None, Any]]:
            async with self.database.reader.connect() as connection:
                rows = await connection.execute(
                    sa.select(messages.c.recipient_id, messages.c.batch_id, messages.c.content).where(
                        messages.c.environment_id == self.environment_id,
                        messages.c.workflow_key == WORKFLOW_KEY,
                    )
                )
                return [(row.recipient_id, row.batch_id, row.content) for row in rows]

        return self.runner.run(read())


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {WAIT_TIMEOUT:.0f} s for {what}")
        time.sleep(POLL_SECONDS)


@contextmanager
def worked_store(server: ClarionServer, database_url: str) -> Iterator[WorkedStore]:
    url = Settings(data_dir=server.data_dir, database_url=database_url).resolved_database_url
    with asyncio.Runner() as runner:
        database = create_database(url)
        try:
            yield WorkedStore(runner, database)
        finally:
            runner.run(database.dispose())


def open_the_batches(server: ClarionServer, store: WorkedStore) -> None:
    """Identify the recipients and send each one trigger, which opens its batch."""
    headers = {"Authorization": f"Bearer {server.secret_key}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        for n in range(RECIPIENTS):
            identified = client.put(f"/v1/users/bench-{n}", json={"name": f"Reader {n}"})
            assert identified.status_code == 200, identified.text
        for n in range(RECIPIENTS):
            body = {"recipients": [f"bench-{n}"], "data": {"actor_name": "Ann", "n": n}}
            triggered = client.post(f"/v1/workflows/{WORKFLOW_KEY}/trigger", json=body)
            assert triggered.status_code == 200, triggered.text
    store.wait_until_worked()
    if (opened := store.open_batches()) != RECIPIENTS:
        raise RuntimeError(f"{opened} batches are open, not {RECIPIENTS}")


def end_to_end(server: ClarionServer, store: WorkedStore) -> Rate:
    """The function measuring a turn: triggers/s from its first request until the workers ran them all."""
    script = trigger_script(server.secret_key, WORKFLOW_KEY, RECIPIENTS)

    def measure(seconds: int, connections: int) -> float:
        before = store.triggers()
        started = time.perf_counter()
        wrk(server.base, seconds, connections, script)
        store.wait_until_worked()
        elapsed = time.perf_counter() - started
        return (store.triggers() - before) / elapsed

    return measure


def check_one_message_per_batch(store: WorkedStore) -> tuple[int, int]:
    """Close every batch, wait for the workers to flush them, and fail unless each made one message and
    the messages' `total_activities` count every trigger. Returns (triggers, messages)."""
    triggers = store.triggers()
    store.close_batches()
    # The carriers' jobs come due at the workers' next poll; a message short is a batch not flushed (yet).
    _wait_for(lambda: len(store.batched_messages()) >= RECIPIENTS, f"{RECIPIENTS:,} messages")
    store.wait_until_worked()
    made = store.batched_messages()
    recipients = {recipient for recipient, _, _ in made}
    batch_ids = {batch_id for _, batch_id, _ in made if batch_id is not None}
    rendered = sum(int(content["blocks"][0]["content"].split()[0]) for _, _, content in made)
    if not (len(made) == len(recipients) == len(batch_ids) == RECIPIENTS and rendered == triggers):
        raise RuntimeError(
            f"{len(made):,} messages for {len(recipients):,} recipients from {len(batch_ids):,} batches, "
            f"{rendered:,} activities rendered: expected {RECIPIENTS:,} of each and {triggers:,} activities"
        )
    return triggers, len(made)


def batched_levels(
    database_url: str, postgres: str, seconds: int, levels: list[int], workers: int
) -> Outcome:
    """Open the batches, measure end to end alternated with intake, then check every batch's message."""
    # The intake's store is another database on the same server (SQLite: in its own data directory): its
    # queue fills, and nothing runs it.
    intake_store = postgres_database(postgres) if database_url else nullcontext("")
    with (
        clarion_server(
            database_url,
            "api" if database_url else "serve",
            workflows={WORKFLOW_KEY: BATCHED_WORKFLOW},
            workers=workers if database_url else 0,
        ) as server,
        worked_store(server, database_url) as store,
        intake_store as intake_url,
        trigger_intake(intake_url, levels[0]) as intake,
    ):
        open_the_batches(server, store)
        measured = at_load_levels(end_to_end(server, store), intake, seconds, levels)
        triggers, made = check_one_message_per_batch(store)
    return Outcome(measured, triggers, made)


def main() -> None:
    parser = benchmark_arguments(__doc__, seconds=4)
    parser.set_defaults(connections=INTAKE_CONNECTIONS)
    parser.add_argument("--workers", type=int, default=1, help="`clarion worker` processes on PostgreSQL")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    for store, outcome in each_store(
        args.stores.split(","),
        args.postgres,
        lambda url: batched_levels(url, args.postgres, args.seconds, args.connections, args.workers),
    ):
        rate, ratio = best_ratio(outcome.levels)
        print(f"{store:9} batched, end to end {rate:8,.0f} triggers/s = {ratio:6.1%} of intake (goal 50%)")
        print(f"{store:9}   by connections (end to end/intake): {describe_levels(outcome.levels)}")
        print(
            f"{store:9}   {outcome.triggers:,} triggers into {RECIPIENTS:,} batches: "
            f"{outcome.messages:,} messages, one per batch"
        )


if __name__ == "__main__":
    main()

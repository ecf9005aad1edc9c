"""Workflow runs survive a worker killed with SIGKILL at any moment: every run completes, no message is
lost and none is made twice, on both stores.

A worker process (`run_worker_process.py`, Clarion's own handlers) works through triggers of a
three-message workflow while the test kills it at random moments and starts a new one, several times;
the last one is left to finish. The workflow's first message is made by the trigger's own job, the other
two by the step job that follows a short delay, so kills land in both. Every checkpoint is one
transaction, so whatever instant the kill lands on, a step is either recorded once or redone by the next
worker. Duplicates are looked for where
no unique constraint would hide them: the runs' events, and messages per run and step.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clarion.engine.workflow_jobs import STEP_JOB, TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.jobs.job import JobState
from clarion.store.tables import jobs, messages, workflow_runs
from tests.conftest import EnvFixture, push_workflow

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6
SINGLE_TRIGGERS = 60
FAN_OUT = 150
STEPS = [
    {
        "ref": "in_app_feed_1",
        "type": "channel",
        "channel_key": "in-app-feed",
        "template": {"markdown_body": "one {{ data.n }}"},
    },
    {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "seconds", "value": 1}}},
    {
        "ref": "email_1",
        "type": "channel",
        "channel_key": "email",
        "template": {"subject": "two", "html_body": "<p>{{ recipient.id }}</p>"},
    },
    {
        "ref": "in_app_feed_2",
        "type": "channel",
        "channel_key": "in-app-feed",
        "template": {"markdown_body": "three"},
    },
]


async def start_worker(env: EnvFixture) -> asyncio.subprocess.Process:
    runtime = env.runtime
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.engine.run_worker_process",
        str(runtime.settings.data_dir),
        runtime.database.url,
        cwd=ROOT,
    )


async def count(env: EnvFixture, query: sa.Select[Any]) -> int:
    async with env.runtime.database.reader.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Return once `condition()` holds; a TimeoutError after two minutes."""
    async with asyncio.timeout(120):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.02)


async def test_killed_workers_lose_no_step_and_repeat_none(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "crash", {"steps": STEPS})
    recipients = [{"id": f"fan-{i}", "email": f"fan-{i}@example.com"} for i in range(FAN_OUT)]
    response = await env.post(
        "/v1/workflows/crash/trigger", json={"recipients": recipients, "data": {"n": 0}}
    )
    assert response.status_code == 200, response.text
    for n in range(SINGLE_TRIGGERS):
        body = {"recipients": [{"id": f"one-{n}", "email": f"one-{n}@example.com"}], "data": {"n": n}}
        assert (await env.post("/v1/workflows/crash/trigger", json=body)).status_code == 200

    runs = FAN_OUT + SINGLE_TRIGGERS
    expected = runs * sum(step["type"] == "channel" for step in STEPS)
    chance = random.Random(20261202)

    async def jobs_of(kind: str, states: tuple[JobState, ...], worker_pid: int | None = None) -> int:
        """How many of the environment's jobs of `kind` are in `states` (claimed by the worker process
        `worker_pid`, when given: a killed worker's jobs stay executing until rescued) with an attempt left
        after this one. A job whose worker dies on its last attempt is given up, as a step that keeps
        crashing its worker must be; the kills land only where the queue promises another attempt."""
        async with env.runtime.database.reader.connect() as connection:
            rows = await connection.execute(
                sa.select(jobs.c.args, jobs.c.attempted_by).where(
                    jobs.c.kind == kind,
                    jobs.c.state.in_([state.value for state in states]),
                    jobs.c.attempt < jobs.c.max_attempts,
                )
            )
            return sum(
                row.args["environment_id"] == env.id
                and (worker_pid is None or f":{worker_pid}:" in (row.attempted_by or ""))
                for row in rows
            )

    env_runs = workflow_runs.c.environment_id == env.id
    completed = sa.select(sa.func.count()).where(env_runs, workflow_runs.c.status == "completed")

    async def all_done() -> bool:
        return await count(env, completed) == runs

    async def kill_moment(kind: str, worker_pid: int) -> bool:
        """The worker is executing a job of `kind`, or the work is over."""
        return bool(await jobs_of(kind, (JobState.EXECUTING,), worker_pid)) or await all_done()

    for kill in range(KILLS):
        # Killed while it works: in the middle of a trigger's job the first half of the times, of a step's
        # the second half.
        worker = await start_worker(env)
        try:
            kind = TRIGGER_JOB if kill < KILLS // 2 else STEP_JOB
            await wait_until(functools.partial(kill_moment, kind, worker.pid))
            await asyncio.sleep(chance.uniform(0, 0.005))
        finally:
            worker.kill()
            await worker.wait()
        assert worker.returncode == -signal.SIGKILL
    last = await start_worker(env)
    try:
        await wait_until(all_done)
    finally:
        last.send_signal(signal.SIGTERM)
        await last.wait()

    env_runs = workflow_runs.c.environment_id == env.id
    assert await count(env, sa.select(sa.func.count()).where(env_runs)) == runs
    assert (
        await count(env, sa.select(sa.func.count()).where(env_runs, workflow_runs.c.status == "completed"))
        == runs
    )

    async with env.runtime.database.reader.connect() as connection:
        stored = [
            (row.id, row.run_id, row.step_ref)
            for row in await connection.execute(
                sa.select(messages.c.id, messages.c.run_id, messages.c.step_ref).where(
                    messages.c.environment_id == env.id
                )
            )
        ]
        made = Counter((run_id, step_ref) for _, run_id, step_ref in stored)
        created = Counter(
            row.id
            for row in await connection.execute(
                sa.select(messages.c.id, messages.c.events).where(messages.c.environment_id == env.id)
            )
            for event in row.events
            if event["type"] == "message.created"
        )
        rescued = {
            row.kind
            for row in await connection.execute(
                sa.select(jobs.c.kind, jobs.c.args).where(jobs.c.queue == WORKFLOW_QUEUE, jobs.c.attempt > 1)
            )
            if row.args["environment_id"] == env.id
        }
        run_rows = list(
            await connection.execute(
                sa.select(workflow_runs.c.id, workflow_runs.c.events, workflow_runs.c.step_results).where(
                    env_runs
                )
            )
        )
    events = Counter(
        (row.id, event["event"], event.get("step_ref")) for row in run_rows for event in row.events
    )
    # A step recorded twice from the same read would leave one run row, but name a message that does not
    # exist: the second attempt's message loses to the first's on the unique key.
    message_ids = {message_id for message_id, _, _ in stored}
    named_by_events = {
        event["data"]["message_id"]
        for row in run_rows
        for event in row.events
        if event["event"] == "message_created"
    }
    named_by_results = {
        message_id
        for row in run_rows
        for result in row.step_results.values()
        for message_id in result["message_ids"]
    }
    assert rescued == {TRIGGER_JOB, STEP_JOB}, f"kills landed only in {rescued}: the test proved less"
    assert len(made) == expected, "a step lost its message"
    assert set(made.values()) == {1}
    assert len(created) == expected
    assert set(created.values()) == {1}, "a message was announced twice"
    assert named_by_events == named_by_results == message_ids, "a run names a message that was not kept"
    assert Counter(event for (_, event, _) in events.elements()) == {
        "run_started": runs,
        "message_created": expected,
        "delay_started": runs,
        "run_completed": runs,
    }, "a step was recorded twice or not at all"

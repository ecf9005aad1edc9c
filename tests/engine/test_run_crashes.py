"""Workflow runs survive a worker killed with SIGKILL at any moment: every run completes, no message is
lost and none is made twice, on both stores.

A worker process (`run_worker_process.py`, Clarion's own handlers) works through the test's triggers
while the test kills it at random moments, each time while it executes a job of the kind the test aims
at, and starts a new one, several times; the last one is left to finish. Every checkpoint is one
transaction, so whatever instant the kill lands on, a step is either recorded once or redone by the next
worker. Duplicates are looked for where no unique constraint would hide them: the runs' events, and
messages per run and step. The scenarios: a three-message workflow with a delay (kills in trigger and step
jobs); a throttle deciding for many triggers of the same recipients (exactly its limit passes); runs
woken from a delay (one message each, after it); and an audience whose new members, added by API and by
an update-audience step, run its entry workflow (one run and message per membership); and batches joined
in triggers' jobs and flushed in their carriers' (every activity in exactly one flushed batch).
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clarion.engine.workflow_jobs import STEP_JOB, TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.jobs.job import JobState
from clarion.store.tables import audience_members, jobs, messages, workflow_runs
from tests.conftest import EnvFixture, push_audiences, push_workflow, run_workflow_jobs
from tests.engine.run_worker_process import run_worker

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
SCENARIO_KILLS = 4
"""Kills in each of the throttle, delay and audience scenarios, which aim at one kind of job each."""
WORKERS = multiprocessing.get_context("forkserver")
WORKERS.set_forkserver_preload(["tests.engine.run_worker_process"])


def feed_step(ref: str, body: str) -> dict[str, Any]:
    return {"ref": ref, "type": "channel", "channel_key": "in-app-feed", "template": {"markdown_body": body}}


def start_worker(env: EnvFixture) -> BaseProcess:
    """A worker process, forked from the server that has imported Clarion once."""
    runtime = env.runtime
    worker = WORKERS.Process(target=run_worker, args=(runtime.settings.data_dir, runtime.database.url))
    worker.start()
    return worker


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


async def ended(worker: BaseProcess) -> int | None:
    """The worker's exit code once it has exited (the signal that ended it, negated)."""

    async def exited() -> bool:
        return worker.exitcode is not None

    await wait_until(exited)
    return worker.exitcode


async def jobs_of(
    env: EnvFixture, kind: str, states: tuple[JobState, ...], worker_pid: int | None = None
) -> int:
    """How many of the environment's jobs of `kind` are in `states` (claimed by the worker process
    `worker_pid`, when given: a killed worker's jobs stay executing until rescued) with an attempt left
    after this one. A job whose worker dies on its last attempt is given up, as a step that keeps crashing
    its worker must be; the kills land only where the queue promises another attempt."""
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


def completed_runs(env: EnvFixture, expected: Callable[[], int]) -> Callable[[], Awaitable[bool]]:
    """Whether the environment has `expected()` completed runs: the work is over."""
    query = sa.select(sa.func.count()).where(
        workflow_runs.c.environment_id == env.id, workflow_runs.c.status == "completed"
    )

    async def done() -> bool:
        return await count(env, query) == expected()

    return done


async def kill_workers(
    env: EnvFixture,
    kinds: Sequence[str],
    done: Callable[[], Awaitable[bool]],
    *,
    before_each: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """For each of `kinds` in turn, start a worker and kill it while it executes a job of that kind (or
    once the work is `done`), `before_each` kill's index run first; then start one more worker and let it
    finish the work."""
    chance = random.Random(20261202)

    async def kill_moment(kind: str, worker_pid: int) -> bool:
        return bool(await jobs_of(env, kind, (JobState.EXECUTING,), worker_pid)) or await done()

    for index, kind in enumerate(kinds):
        if before_each is not None:
            await before_each(index)
        worker = start_worker(env)
        try:
            assert worker.pid is not None
            await wait_until(functools.partial(kill_moment, kind, worker.pid))
            await asyncio.sleep(chance.uniform(0, 0.005))
        finally:
            worker.kill()
        assert await ended(worker) == -signal.SIGKILL
    last = start_worker(env)
    try:
        await wait_until(done)
    finally:
        last.terminate()
        await ended(last)


@dataclass(frozen=True)
class Outcome:
    """What the environment's runs and messages came to, once checked for what no workflow may show: a
    message made twice for one run's step, a message announced twice, a run naming a message not kept."""

    runs: list[sa.Row[*tuple[Any, ...]]]
    messages: list[sa.Row[*tuple[Any, ...]]]
    rescued: set[str]
    """The kinds of job a kill landed in: attempted more than once."""

    def events(self, name: str) -> Counter[str]:
        """How many events `name` each run recorded, by run id."""
        return Counter(run.id for run in self.runs for event in run.events if event["event"] == name)

    def messages_by_run(self) -> Counter[str]:
        return Counter(message.run_id for message in self.messages)


async def stored_outcome(env: EnvFixture) -> Outcome:
    async with env.runtime.database.reader.connect() as connection:
        runs = list(
            await connection.execute(
                sa.select(
                    workflow_runs.c.id,
                    workflow_runs.c.workflow_key,
                    workflow_runs.c.recipient_id,
                    workflow_runs.c.tenant,
                    workflow_runs.c.status,
                    workflow_runs.c.events,
                    workflow_runs.c.step_results,
                ).where(workflow_runs.c.environment_id == env.id)
            )
        )
        stored = list(
            await connection.execute(
                sa.select(
                    messages.c.id,
                    messages.c.run_id,
                    messages.c.step_ref,
                    messages.c.inserted_at,
                    messages.c.events,
                ).where(messages.c.environment_id == env.id)
            )
        )
        rescued = {
            row.kind
            for row in await connection.execute(
                sa.select(jobs.c.kind, jobs.c.args).where(jobs.c.queue == WORKFLOW_QUEUE, jobs.c.attempt > 1)
            )
            if row.args["environment_id"] == env.id
        }
    made = Counter((message.run_id, message.step_ref) for message in stored)
    assert set(made.values()) <= {1}, "a step made its message twice"
    created = Counter(
        message.id for message in stored for event in message.events if event["type"] == "message.created"
    )
    assert len(created) == len(stored) and set(created.values()) <= {1}, "a message was announced twice"
    # A step recorded twice from the same read would leave one run row, but name a message that does not
    # exist: the second attempt's message loses to the first's on the unique key.
    named_by_events = {
        event["data"]["message_id"]
        for run in runs
        for event in run.events
        if event["event"] == "message_created"
    }
    named_by_results = {
        message_id
        for run in runs
        for result in run.step_results.values()
        for message_id in result.get("message_ids", [])
    }
    message_ids = {message.id for message in stored}
    assert named_by_events == named_by_results == message_ids, "a run names a message that was not kept"
    return Outcome(runs, stored, rescued)


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
    # Killed while it works: in the middle of a trigger's job the first half of the times, of a step's the
    # second half.
    kinds = [TRIGGER_JOB if kill < KILLS // 2 else STEP_JOB for kill in range(KILLS)]
    await kill_workers(env, kinds, completed_runs(env, lambda: runs))

    outcome = await stored_outcome(env)
    assert len(outcome.runs) == runs
    assert {run.status for run in outcome.runs} == {"completed"}
    assert outcome.rescued == {TRIGGER_JOB, STEP_JOB}, (
        f"kills landed only in {outcome.rescued}: the test proved less"
    )
    assert len(outcome.messages) == expected, "a step lost its message"
    events = Counter(event["event"] for run in outcome.runs for event in run.events)
    assert events == {
        "run_started": runs,
        "message_created": expected,
        "delay_started": runs,
        "run_completed": runs,
    }, "a step was recorded twice or not at all"


THROTTLE_LIMIT = 4
THROTTLED_TRIGGERS = 60
THROTTLED_RECIPIENTS = ("ada", "bob")


async def test_killed_workers_let_exactly_the_throttle_limit_through(env: EnvFixture, tmp_path: Path) -> None:
    throttle = {
        "ref": "gate",
        "type": "throttle",
        "settings": {"throttle_window": {"unit": "hours", "value": 1}, "throttle_limit": THROTTLE_LIMIT},
    }
    await push_workflow(env, tmp_path, "throttled", {"steps": [throttle, feed_step("alert", "alert")]})
    for recipient in THROTTLED_RECIPIENTS:
        assert (await env.put(f"/v1/users/{recipient}", json={})).status_code == 200
    for n in range(THROTTLED_TRIGGERS):
        body = {"recipients": [THROTTLED_RECIPIENTS[n % len(THROTTLED_RECIPIENTS)]]}
        response = await env.post("/v1/workflows/throttled/trigger", json=body)
        assert response.status_code == 200, response.text

    # Each trigger's own job decides at the throttle: the kills land in those decisions.
    await kill_workers(env, [TRIGGER_JOB] * SCENARIO_KILLS, completed_runs(env, lambda: THROTTLED_TRIGGERS))

    outcome = await stored_outcome(env)
    assert TRIGGER_JOB in outcome.rescued, "no kill landed in a trigger's job: the test proved less"
    assert len(outcome.runs) == THROTTLED_TRIGGERS, "a trigger lost its run"
    passed, halted = outcome.events("throttle_passed"), outcome.events("run_throttled")
    assert set(passed.values()) | set(halted.values()) == {1}, "a throttle decided twice for one run"
    assert set(passed) | set(halted) == {run.id for run in outcome.runs}, "a run was never decided"
    messages_by_run = outcome.messages_by_run()
    assert set(messages_by_run) == set(passed), "a run passed without its message, or halted with one"
    for recipient in THROTTLED_RECIPIENTS:
        runs = [run for run in outcome.runs if run.recipient_id == recipient]
        decisions = [
            event["data"] for run in runs for event in run.events if event["event"] == "throttle_passed"
        ]
        # Each passing run was counted once: the counts it saw are 1 to the limit, each once.
        assert sorted(decision["count"] for decision in decisions) == list(range(1, THROTTLE_LIMIT + 1))
        ended = [run.events[-1] for run in runs if run.id in halted]
        assert len(ended) == THROTTLED_TRIGGERS // len(THROTTLED_RECIPIENTS) - THROTTLE_LIMIT
        assert {(event["event"], event["data"]["reason"]) for event in ended} == {("run_ended", "throttled")}
    assert {run.status for run in outcome.runs} == {"completed"}


DELAY_SECONDS = 2
DELAYED_SINGLES = 40
DELAYED_FAN_OUT = 100


async def test_killed_workers_wake_every_delayed_run_once(env: EnvFixture, tmp_path: Path) -> None:
    delay = {
        "ref": "wait",
        "type": "delay",
        "settings": {"delay_for": {"unit": "seconds", "value": DELAY_SECONDS}},
    }
    await push_workflow(env, tmp_path, "delayed", {"steps": [delay, feed_step("woken", "woken")]})
    fan_out = [{"id": f"fan-{n}"} for n in range(DELAYED_FAN_OUT)]
    assert (await env.post("/v1/workflows/delayed/trigger", json={"recipients": fan_out})).status_code == 200
    for n in range(DELAYED_SINGLES):
        body = {"recipients": [{"id": f"one-{n}"}]}
        assert (await env.post("/v1/workflows/delayed/trigger", json=body)).status_code == 200
    # The runs start here and wait at the delay; the workers only wake them: one step job for the fan-out's
    # runs, one for each single trigger's.
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    runs = DELAYED_FAN_OUT + DELAYED_SINGLES
    paused = sa.select(sa.func.count()).where(
        workflow_runs.c.environment_id == env.id, workflow_runs.c.status == "paused"
    )
    assert await count(env, paused) == runs

    await kill_workers(env, [STEP_JOB] * SCENARIO_KILLS, completed_runs(env, lambda: runs))

    outcome = await stored_outcome(env)
    assert STEP_JOB in outcome.rescued, "no kill landed in a step's job: the test proved less"
    assert len(outcome.runs) == runs
    messages_by_run = outcome.messages_by_run()
    assert set(messages_by_run) == {run.id for run in outcome.runs}, "a woken run lost its message"
    for name in ("delay_started", "message_created", "run_completed"):
        assert set(outcome.events(name).values()) == {1}, f"{name} was recorded twice"
    assert {run.status for run in outcome.runs} == {"completed"}
    until = {
        run.id: datetime.fromisoformat(event["data"]["until"])
        for run in outcome.runs
        for event in run.events
        if event["event"] == "delay_started"
    }
    assert all(message.inserted_at >= until[message.run_id] for message in outcome.messages), (
        "a message was made before its delay was over"
    )


ENTRY_BATCH = 30
JOINS = 12


async def test_killed_workers_run_each_new_membership_once(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"beta": {"name": "Beta", "type": "static"}})
    entry = {
        "trigger": {"type": "audience", "audience_key": "beta"},
        "steps": [feed_step("welcome", "welcome {{ recipient.id }}")],
    }
    await push_workflow(env, tmp_path, "welcome", entry)
    joining = {
        "ref": "join",
        "type": "update_audience",
        "settings": {"audience_key": "beta", "action": "add"},
    }
    await push_workflow(env, tmp_path, "joining", {"steps": [joining]})
    memberships: set[tuple[str, str | None]] = set()
    joins = 0

    async def add_members(index: int) -> None:
        """Between kills: members added by API (the previous batch's again, with a tenant this time for
        half of them, and new ones), and by the update-audience step of triggers naming some of them."""
        nonlocal joins
        added = [(f"m{index}-{n}", "acme" if n % 2 else None) for n in range(ENTRY_BATCH)]
        if index:
            added += [(f"m{index - 1}-{n}", "acme") for n in range(ENTRY_BATCH)]
        members = [
            {"user": {"id": user_id}, **({"tenant": tenant} if tenant else {})} for user_id, tenant in added
        ]
        response = await env.post("/v1/audiences/beta/members", json={"members": members})
        assert response.status_code == 204, response.text
        memberships.update(added)
        # Half of them members already (the API's, without a tenant), half new.
        for n in range(JOINS):
            user_id = f"m{index}-{n * 2}" if n % 2 else f"j{index}-{n}"
            body = {"recipients": [{"id": user_id}]}
            response = await env.post("/v1/workflows/joining/trigger", json=body)
            assert response.status_code == 200, response.text
            memberships.add((user_id, None))
        joins += JOINS

    await kill_workers(
        env,
        [TRIGGER_JOB] * SCENARIO_KILLS,
        completed_runs(env, lambda: joins + len(memberships)),
        before_each=add_members,
    )

    outcome = await stored_outcome(env)
    assert TRIGGER_JOB in outcome.rescued, "no kill landed in a trigger's job: the test proved less"
    async with env.runtime.database.reader.connect() as connection:
        stored = {
            (row.user_id, row.tenant or None)
            for row in await connection.execute(
                sa.select(audience_members.c.user_id, audience_members.c.tenant).where(
                    audience_members.c.environment_id == env.id, audience_members.c.audience_key == "beta"
                )
            )
        }
    assert stored == memberships
    entries = [run for run in outcome.runs if run.workflow_key == "welcome"]
    assert Counter((run.recipient_id, run.tenant) for run in entries) == dict.fromkeys(memberships, 1), (
        "a membership ran its entry workflow twice, or never"
    )
    messages_by_run = outcome.messages_by_run()
    assert {run.id for run in entries} == set(messages_by_run), "an entry run lost its message"
    joined = [run for run in outcome.runs if run.workflow_key == "joining"]
    assert len(joined) == joins
    assert set(outcome.events("audience_updated").values()) == {1}
    assert {run.id for run in joined} == set(outcome.events("audience_updated"))
    assert {run.status for run in outcome.runs} == {"completed"}


BATCHED_TRIGGERS = 60
BATCHED_RECIPIENTS = ("ada", "bob", "cy")


async def test_killed_workers_put_every_activity_in_exactly_one_flushed_batch(
    env: EnvFixture, tmp_path: Path
) -> None:
    gather = {"ref": "gather", "type": "batch", "settings": {"batch_window": {"unit": "seconds", "value": 1}}}
    await push_workflow(env, tmp_path, "batched", {"steps": [gather, feed_step("digest", "digest")]})
    for recipient in BATCHED_RECIPIENTS:
        assert (await env.put(f"/v1/users/{recipient}", json={})).status_code == 200
    for n in range(BATCHED_TRIGGERS):
        body = {"recipients": [BATCHED_RECIPIENTS[n % len(BATCHED_RECIPIENTS)]], "data": {"n": n}}
        response = await env.post("/v1/workflows/batched/trigger", json=body)
        assert response.status_code == 200, response.text

    # Joins happen in the triggers' jobs, flushes in the carriers' step jobs once their windows close.
    kinds = [TRIGGER_JOB, TRIGGER_JOB, STEP_JOB, STEP_JOB]
    await kill_workers(env, kinds, completed_runs(env, lambda: BATCHED_TRIGGERS))

    outcome = await stored_outcome(env)
    assert outcome.rescued == {TRIGGER_JOB, STEP_JOB}, f"kills landed only in {outcome.rescued}"
    assert len(outcome.runs) == BATCHED_TRIGGERS and {run.status for run in outcome.runs} == {"completed"}
    joined = outcome.events("batch_joined")
    carried = outcome.events("batch_opened") + outcome.events("batch_carried")
    assert set(joined.values()) | set(carried.values()) == {1}, "a run joined a batch twice"
    assert set(joined) | set(carried) == {run.id for run in outcome.runs} and not set(joined) & set(carried)
    flushed = outcome.events("batch_flushed")
    assert set(flushed) == set(carried) and set(flushed.values()) == {1}, "a batch flushed twice or never"
    assert set(outcome.messages_by_run()) == set(carried), "a carrier lost its message, or a joiner made one"
    async with env.runtime.database.reader.connect() as connection:
        totals = list(
            (
                await connection.execute(
                    sa.select(messages.c.total_activities).where(messages.c.environment_id == env.id)
                )
            ).scalars()
        )
    assert sum(totals) == BATCHED_TRIGGERS, "an activity was lost, or counted in two batches"

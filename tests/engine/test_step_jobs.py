"""Step jobs: the runs of a trigger that wait at the same step until the same moment share one job, which
executes them together; one run's failure or cancellation is its own; a job executed twice from the same
read records its step once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.engine import run_executor
from clarion.engine.run_executor import execute_step
from clarion.engine.workflow_jobs import STEP_JOB, WORKFLOW_QUEUE
from clarion.jobs.job import Acknowledged, JobRecord, JobState, Superseded
from clarion.runtime import build_worker
from clarion.store.clock import utcnow
from clarion.store.tables import jobs, messages
from tests.conftest import EnvFixture, feed_channel_id, push_workflow, run_workflow_jobs

DELAY = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}


def feed_step(body: str) -> dict[str, Any]:
    return {
        "ref": "in_app_feed_1",
        "type": "channel",
        "channel_key": "in-app-feed",
        "template": {"markdown_body": body},
    }


async def step_jobs(env: EnvFixture) -> list[tuple[int, list[str], str]]:
    """(id, run ids, state) of the environment's step jobs, oldest first."""
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(
            sa.select(jobs.c.id, jobs.c.args, jobs.c.state).where(jobs.c.kind == STEP_JOB).order_by(jobs.c.id)
        )
        return [
            (row.id, row.args.get("run_ids") or [row.args["run_id"]], row.state)
            for row in rows
            if row.args["environment_id"] == env.id
        ]


async def runs_by_recipient(env: EnvFixture) -> dict[str, dict[str, Any]]:
    response = await env.get("/v1/workflow_recipient_runs")
    assert response.status_code == 200, response.text
    return {run["recipient"]: run for run in response.json()["items"]}


async def feed_bodies(env: EnvFixture, user_id: str) -> list[str]:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
    assert response.status_code == 200, response.text
    return [entry["blocks"][0]["content"] for entry in response.json()["entries"]]


async def claimed_step_job(
    env: EnvFixture, tmp_path: Path, recipients: list[dict[str, Any]], *, attempts_made: int = 0
) -> tuple[JobRecord, list[str]]:
    """A trigger of a delay then a feed step for `recipients`, its runs waiting at the delay; their step
    job made due at once and claimed (after `attempts_made` earlier attempts), and the job's runs."""
    runtime = env.runtime
    await push_workflow(env, tmp_path, "later", {"steps": [DELAY, feed_step("hi")]})
    assert (await env.post("/v1/workflows/later/trigger", json={"recipients": recipients})).status_code == 200
    await run_workflow_jobs(runtime, with_scheduled=False)
    [(job_id, run_ids, _)] = await step_jobs(env)
    async with runtime.database.writer.begin() as connection:
        await connection.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(state=JobState.AVAILABLE.value, scheduled_at=utcnow(), attempt=attempts_made)
        )
    [job] = await runtime.queue.claim(WORKFLOW_QUEUE, 1, "test-worker", 60)
    assert job.id == job_id
    return job, run_ids


async def test_runs_waiting_until_the_same_moment_share_one_job(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "later", {"steps": [DELAY, feed_step("hi {{ recipient.id }}")]})
    recipients = [{"id": name} for name in ("ada", "bob", "cy")]
    body = {"recipients": recipients, "cancellation_key": "order-1"}
    assert (await env.post("/v1/workflows/later/trigger", json=body)).status_code == 200
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [(_, run_ids, state)] = await step_jobs(env)
    runs = await runs_by_recipient(env)
    assert sorted(run_ids) == sorted(run["id"] for run in runs.values())
    assert state == JobState.SCHEDULED.value

    cancelled = await env.post(
        "/v1/workflows/later/cancel",
        json={"cancellation_key": "order-1", "recipients": ["bob"]},
    )
    assert cancelled.status_code == 204
    await run_workflow_jobs(env.runtime)
    assert [state for _, _, state in await step_jobs(env)] == [JobState.COMPLETED.value]
    assert await feed_bodies(env, "ada") == ["hi ada"]
    assert await feed_bodies(env, "bob") == []
    assert await feed_bodies(env, "cy") == ["hi cy"]
    statuses = {recipient: run["status"] for recipient, run in (await runs_by_recipient(env)).items()}
    assert statuses == {"ada": "completed", "bob": "cancelled", "cy": "completed"}


async def test_a_run_failing_in_a_shared_job_goes_on_alone_and_the_others_do_not_wait(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(
        env, tmp_path, "dividing", {"steps": [DELAY, feed_step("{{ data.n | divided_by: data.d }}")]}
    )
    recipients = [{"id": "ada", "$trigger_data": {"d": 2}}, {"id": "bob", "$trigger_data": {"d": 0}}]
    response = await env.post(
        "/v1/workflows/dividing/trigger", json={"recipients": recipients, "data": {"n": 8}}
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["4"]
    assert await feed_bodies(env, "bob") == []
    runs = await runs_by_recipient(env)
    [(_, shared, shared_state), (_, alone, alone_state)] = await step_jobs(env)
    assert (len(shared), shared_state) == (2, JobState.COMPLETED.value)
    assert (alone, alone_state) == ([runs["bob"]["id"]], JobState.DISCARDED.value)
    assert (runs["bob"]["status"], runs["bob"]["error_count"]) == ("completed", 1)
    detail = (await env.get(f"/v1/workflow_recipient_runs/{runs['bob']['id']}")).json()
    assert [event["event"] for event in detail["events"]][-1] == "step_failed"
    assert "divide by 0" in detail["events"][-1]["data"]["error"]


@pytest.mark.parametrize("recipients", [1, 2], ids=["one run", "shared"])
async def test_a_step_job_executed_twice_records_its_step_once(
    env: EnvFixture, tmp_path: Path, recipients: int
) -> None:
    # The job completes first in the checkpoint's transaction, before its runs are read: a second
    # execution of the same attempt (a worker stalled past its lease) writes nothing.
    runtime = env.runtime
    users = [{"id": f"user-{n}"} for n in range(recipients)]
    job, run_ids = await claimed_step_job(env, tmp_path, users)

    assert isinstance(await execute_step(runtime, job), Acknowledged)
    with pytest.raises(Superseded):
        await execute_step(runtime, job)
    async with runtime.database.reader.connect() as connection:
        made = (
            await connection.execute(sa.select(sa.func.count()).where(messages.c.run_id.in_(run_ids)))
        ).scalar_one()
    assert made == recipients
    for run in await runtime.workflow_runs.get_many(env.id, run_ids):
        assert [record.event.event for record in run.events].count("message_created") == 1


async def test_a_delay_too_long_to_count_is_skipped_for_that_recipient_alone(
    env: EnvFixture, tmp_path: Path
) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_until_field_path": "data.wait"}}
    await push_workflow(env, tmp_path, "waiting", {"steps": [delay, feed_step("done")]})
    recipients = [
        {"id": "ada", "$trigger_data": {"wait": {"unit": "seconds", "value": 30}}},
        {"id": "bob", "$trigger_data": {"wait": {"unit": "seconds", "value": int("9" * 400)}}},
    ]
    response = await env.post("/v1/workflows/waiting/trigger", json={"recipients": recipients})
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    runs = await runs_by_recipient(env)
    assert (runs["ada"]["status"], runs["bob"]["status"]) == ("paused", "completed")
    assert await feed_bodies(env, "bob") == ["done"]
    detail = (await env.get(f"/v1/workflow_recipient_runs/{runs['bob']['id']}")).json()
    assert [e["data"]["reason"] for e in detail["events"] if e["event"] == "step_skipped"] == [
        "invalid_delay"
    ]


async def test_a_large_group_is_split_into_jobs_of_at_most_so_many_runs(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_executor, "RUNS_PER_STEP_JOB", 2)
    await push_workflow(env, tmp_path, "later", {"steps": [DELAY, feed_step("hi")]})
    recipients = [{"id": f"user-{n}"} for n in range(5)]
    assert (await env.post("/v1/workflows/later/trigger", json={"recipients": recipients})).status_code == 200
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    groups = await step_jobs(env)
    assert [len(run_ids) for _, run_ids, _ in groups] == [2, 2, 1]
    assert len({run_id for _, run_ids, _ in groups for run_id in run_ids}) == 5
    await run_workflow_jobs(env.runtime)
    for n in range(5):
        assert await feed_bodies(env, f"user-{n}") == ["hi"]


async def test_a_shared_job_discarded_on_its_last_attempt_gives_each_run_a_job_of_its_own(
    env: EnvFixture, tmp_path: Path
) -> None:
    """A job of many that fails as a whole (its worker crashed on it three times, say) halts no run: each
    goes on alone, so that only a run that keeps failing halts."""
    runtime = env.runtime
    job, run_ids = await claimed_step_job(env, tmp_path, [{"id": "ada"}, {"id": "bob"}], attempts_made=2)
    assert (job.attempt, job.max_attempts) == (3, 3)
    hook = build_worker(runtime).executor.on_discarded[STEP_JOB]
    assert await runtime.queue.retry(job, "the worker died", hook) is JobState.DISCARDED

    statuses = {run["recipient"]: run["status"] for run in (await runs_by_recipient(env)).values()}
    assert statuses == {"ada": "paused", "bob": "paused"}
    alone = [(ids, state) for _, ids, state in await step_jobs(env) if len(ids) == 1]
    assert sorted(alone) == sorted(([run_id], JobState.AVAILABLE.value) for run_id in run_ids)
    await run_workflow_jobs(runtime)
    assert await feed_bodies(env, "ada") == await feed_bodies(env, "bob") == ["hi"]


async def test_a_step_job_queued_by_the_previous_release_names_one_run_as_run_id(
    env: EnvFixture, tmp_path: Path
) -> None:
    runtime = env.runtime
    await push_workflow(env, tmp_path, "later", {"steps": [DELAY, feed_step("hi")]})
    assert (
        await env.post("/v1/workflows/later/trigger", json={"recipients": [{"id": "ada"}]})
    ).status_code == 200
    await run_workflow_jobs(runtime, with_scheduled=False)
    [(job_id, [run_id], _)] = await step_jobs(env)
    legacy = {"environment_id": env.id, "run_id": run_id, "position": "1"}
    async with runtime.database.writer.begin() as connection:
        await connection.execute(jobs.update().where(jobs.c.id == job_id).values(args=legacy))
    await run_workflow_jobs(runtime)
    assert await feed_bodies(env, "ada") == ["hi"]


async def test_a_step_after_a_delay_reads_the_earlier_messages_as_they_are_then(
    env: EnvFixture, tmp_path: Path
) -> None:
    unread = {
        **feed_step("reminder"),
        "ref": "in_app_feed_2",
        "conditions": {
            "all": [
                {
                    "variable": "refs.in_app_feed_1.engagement_status",
                    "operator": "not_contains",
                    "argument": "$message.read",
                }
            ]
        },
    }
    await push_workflow(env, tmp_path, "nudge", {"steps": [feed_step("first"), DELAY, unread]})
    recipients = [{"id": "ada"}, {"id": "bob"}]
    assert (await env.post("/v1/workflows/nudge/trigger", json={"recipients": recipients})).status_code == 200
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [message] = (await env.get("/v1/users/ada/messages")).json()["items"]
    assert (await env.put(f"/v1/messages/{message['id']}/read")).status_code == 200
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["first"]
    assert await feed_bodies(env, "bob") == ["reminder", "first"]

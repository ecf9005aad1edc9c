"""The trigger workflow step: each run triggers the named workflow with Knock's defaults taken from the run
or with the settings rendered, pinned to the target's version current at that moment; a missing or
inactive target skips the step, a trigger the API would refuse fails it; a pass executed again or rolled
back never triggers twice; a chain of triggers stops at its depth limit; bad settings are refused at push."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.engine import run_executor
from clarion.engine.run_executor import execute_runs, record_progress, step_services
from clarion.engine.step_definition import DefinitionError
from clarion.engine.steps.trigger_workflow import MAX_TRIGGER_DEPTH
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import parse_workflow
from clarion.engine.workflow_jobs import TRIGGER_JOB, WORKFLOW_QUEUE, trigger_job
from clarion.jobs.job import JobRecord, JobState
from clarion.runtime import Runtime
from clarion.store.clock import utcnow
from clarion.store.tables import jobs
from clarion.store.workflow_runs import read_runs
from tests.conftest import EnvFixture, push_workflow, run_workflow_jobs
from tests.engine.test_branch_step import feed, feed_bodies, trigger

DELAY = {"ref": "wait", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}
CHILD_BODY = (
    "child of {{ data.topic }} by {{ actor.name | default: 'nobody' }} in {{ tenant.id | default: 'none' }}"
)


def trigger_step(ref: str = "nested", workflow_key: str = "child", **settings: Any) -> dict[str, Any]:
    return {"ref": ref, "type": "trigger_workflow", "settings": {"workflow_key": workflow_key, **settings}}


async def runs_of(env: EnvFixture, workflow_key: str, **params: Any) -> list[dict[str, Any]]:
    response = await env.get("/v1/workflow_recipient_runs", params={"workflow": workflow_key, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def events_of(env: EnvFixture, run_id: str) -> list[dict[str, Any]]:
    response = await env.get(f"/v1/workflow_recipient_runs/{run_id}")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def nested_trigger_jobs(env: EnvFixture) -> list[JobRecord]:
    """The environment's trigger jobs that a step made."""
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(sa.select(jobs.c.id).where(jobs.c.kind == TRIGGER_JOB))
        ids = [row.id for row in rows]
    found = [await env.runtime.queue.get(job_id) for job_id in ids]
    return [
        job
        for job in found
        if job is not None
        and job.args["environment_id"] == env.id
        and job.args["trigger_source"] == "workflow_step"
    ]


async def test_defaults_trigger_the_workflow_for_the_run_with_its_actor_tenant_data_and_key(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "child", {"steps": [feed("child_feed", CHILD_BODY)]})
    update = {"ref": "topic", "type": "update_data", "settings": {"data": '{"topic": "{{ data.topic }}!"}'}}
    parent = {"steps": [update, trigger_step(), feed("parent_feed", "parent")]}
    await push_workflow(env, tmp_path, "parent", parent)
    await trigger(
        env,
        "parent",
        [{"id": "ann"}, {"id": "ben"}],
        actor={"id": "boss", "name": "Boss"},
        tenant="acme",
        data={"topic": "launch"},
        cancellation_key="launch-1",
    )
    await run_workflow_jobs(env.runtime)

    for user_id in ("ann", "ben"):
        assert sorted(await feed_bodies(env, user_id)) == ["child of launch! by Boss in acme", "parent"]
    children = await runs_of(env, "child")
    assert sorted(run["recipient"] for run in children) == ["ann", "ben"]
    for run in children:
        assert (run["actor"], run["tenant"]) == ("boss", "acme")
        assert run["trigger_source"] == {"type": "workflow_step", "cancellation_key": "launch-1"}
    [parent_run] = await runs_of(env, "parent", recipient="ann")
    [triggered] = [e for e in await events_of(env, parent_run["id"]) if e["event"] == "workflow_triggered"]
    assert (triggered["step_ref"], triggered["step_type"]) == ("nested", "trigger_workflow")
    [ann_child] = [run for run in children if run["recipient"] == "ann"]
    assert triggered["data"] == {
        "workflow": "child",
        "workflow_run_id": ann_child["workflow_run_id"],
        "recipients": ["ann"],
    }


async def make_steps_due(env: EnvFixture) -> None:
    """Every step job of the environment waiting for its time, due now."""
    async with env.runtime.database.writer.begin() as connection:
        rows = await connection.execute(
            sa.select(jobs.c.id, jobs.c.args).where(
                jobs.c.kind == "workflow_step", jobs.c.state == JobState.SCHEDULED.value
            )
        )
        ids = [row.id for row in rows if row.args["environment_id"] == env.id]
        await connection.execute(
            jobs.update()
            .where(jobs.c.id.in_(ids))
            .values(state=JobState.AVAILABLE.value, scheduled_at=utcnow())
        )


async def test_cancelling_the_parent_before_the_step_prevents_the_child_and_the_child_has_its_own_key(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "child", {"steps": [DELAY, feed("child_feed", "child")]})
    await push_workflow(env, tmp_path, "parent", {"steps": [DELAY, trigger_step()]})
    await trigger(env, "parent", [{"id": "ann"}], cancellation_key="early")
    await trigger(env, "parent", [{"id": "ben"}], cancellation_key="late")
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    early = {"cancellation_key": "early"}
    assert (await env.post("/v1/workflows/parent/cancel", json=early)).status_code == 204
    await make_steps_due(env)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [child] = await runs_of(env, "child")
    assert (child["recipient"], child["status"]) == ("ben", "paused")

    # Cancelling the parent after the step leaves the child, which its own key cancels.
    late = {"cancellation_key": "late"}
    assert (await env.post("/v1/workflows/parent/cancel", json=late)).status_code == 204
    assert [run["status"] for run in await runs_of(env, "child")] == ["paused"]
    assert (await env.post("/v1/workflows/child/cancel", json=late)).status_code == 204
    assert [run["status"] for run in await runs_of(env, "child")] == ["cancelled"]
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ann") == await feed_bodies(env, "ben") == []


async def test_rendered_settings_build_the_trigger(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(
        env, tmp_path, "child", {"steps": [feed("child_feed", CHILD_BODY + " {{ data.note }}")]}
    )
    step = trigger_step(
        workflow_key="{{ data.target }}",
        recipients="{{ data.watchers | json }}",
        actor="{{ recipient.id }}",
        tenant="",
        data=json.dumps({"note": "about {{ recipient.id }}", "topic": "{{ data.topic }}"}),
        cancellation_key="watch-{{ recipient.id }}",
    )
    await push_workflow(env, tmp_path, "parent", {"steps": [step]})
    watchers = ["wendy", {"id": "walt", "name": "Walt"}, {"id": "room-1", "collection": "rooms", "name": "R"}]
    await trigger(
        env,
        "parent",
        [{"id": "ann", "name": "Ann"}],
        tenant="acme",
        data={"target": "child", "watchers": watchers, "topic": "t"},
    )
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "walt") == ["child of t by Ann in none about ann"]
    children = {json.dumps(run["recipient"]): run for run in await runs_of(env, "child")}
    assert set(children) == {'"wendy"', '"walt"', json.dumps({"collection": "rooms", "id": "room-1"})}
    for run in children.values():
        assert (run["actor"], run["tenant"]) == ("ann", None)
        assert run["trigger_source"]["cancellation_key"] == "watch-ann"
    # wendy was never identified: her run ends as an API trigger's would.
    assert children['"wendy"']["status"] == "completed"
    assert (await env.get("/v1/objects/rooms/room-1")).json()["properties"] == {"name": "R"}


async def test_the_target_version_is_the_one_current_when_the_step_runs_and_its_state_is_checked(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "child", {"steps": [feed("child_feed", "first version")]})
    parent = {
        "steps": [DELAY, trigger_step(), trigger_step("gone", workflow_key="never-pushed")],
    }
    await push_workflow(env, tmp_path, "parent", parent)
    await trigger(env, "parent", [{"id": "ann"}, {"id": "ben"}])
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    await push_workflow(env, tmp_path, "child", {"steps": [feed("child_feed", "second version")]})
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ann") == ["second version"]

    await env.runtime.workflows.store.set_active(env.id, "child", False)
    env.runtime.workflows.forget(env.id, "child")
    await trigger(env, "parent", [{"id": "cy"}])
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "cy") == []
    [run] = await runs_of(env, "parent", recipient="cy")
    skipped = [e for e in await events_of(env, run["id"]) if e["event"] == "step_skipped"]
    assert [(e["step_ref"], e["data"]) for e in skipped] == [
        ("nested", {"reason": "workflow_inactive", "workflow": "child"}),
        ("gone", {"reason": "workflow_missing", "workflow": "never-pushed"}),
    ]
    assert run["status"] == "completed"


async def test_a_trigger_the_api_would_refuse_fails_the_step(env: EnvFixture, tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["count"], "properties": {"count": {"type": "integer"}}}
    child = {"steps": [feed("child_feed", "child")], "trigger_data_json_schema": schema}
    await push_workflow(env, tmp_path, "child", child)
    parent = {
        "steps": [
            trigger_step("bad_data", data='{"count": "{{ data.count }}"}'),
            trigger_step("bad_actor", actor="{{ data.stranger }}", data='{"count": 1}'),
        ]
    }
    await push_workflow(env, tmp_path, "parent", parent)
    await trigger(env, "parent", [{"id": "ann"}, {"id": "ben"}], data={"count": 3, "stranger": "nobody"})
    await run_workflow_jobs(env.runtime)
    assert await runs_of(env, "child") == []
    for run in await runs_of(env, "parent"):
        events = await events_of(env, run["id"])
        assert events[-1]["event"] == "step_failed"
        assert "bad_data" in events[-1]["data"]["error"]
        assert "data.count" in events[-1]["data"]["error"]

    await push_workflow(env, tmp_path, "child", {"steps": [feed("child_feed", "child")]})
    parent["steps"] = parent["steps"][1:]
    await push_workflow(env, tmp_path, "parent", parent)
    await trigger(env, "parent", [{"id": "cy"}], data={"stranger": "nobody"})
    await run_workflow_jobs(env.runtime)
    [run] = await runs_of(env, "parent", recipient="cy")
    events = await events_of(env, run["id"])
    assert events[-1]["event"] == "step_failed"
    assert "'nobody' has not been identified" in events[-1]["data"]["error"]


async def waiting_step_job(env: EnvFixture) -> JobRecord:
    """The one step job of the environment, made due and claimed."""
    runtime = env.runtime
    async with runtime.database.writer.begin() as connection:
        await connection.execute(
            jobs.update()
            .where(jobs.c.kind == "workflow_step", jobs.c.state == JobState.SCHEDULED.value)
            .values(state=JobState.AVAILABLE.value, scheduled_at=utcnow())
        )
    [job] = await runtime.queue.claim(WORKFLOW_QUEUE, 1, "test-worker", 60)
    assert job.args["environment_id"] == env.id
    return job


async def test_a_pass_rolled_back_or_executed_twice_triggers_once_per_run(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = env.runtime
    await push_workflow(env, tmp_path, "child", {"steps": [feed("child_feed", "child")]})
    await push_workflow(env, tmp_path, "parent", {"steps": [DELAY, trigger_step()]})
    await trigger(env, "parent", [{"id": "ann"}, {"id": "ben"}])
    await run_workflow_jobs(runtime, with_scheduled=False)
    job = await waiting_step_job(env)

    # A worker that dies after the step executed, before its transaction commits (the crash is simulated
    # by raising where the checkpoint would commit): nothing of the pass is kept.
    original = run_executor.record_progress

    async def crash(*args: Any, **kwargs: Any) -> Any:
        await original(*args, **kwargs)
        raise ConnectionError("the worker died")

    monkeypatch.setattr(run_executor, "record_progress", crash)
    with pytest.raises(ConnectionError):
        await run_executor.execute_step(runtime, job)
    monkeypatch.undo()
    assert await runtime.queue.retry(job, "the worker died") is JobState.RETRYABLE  # as the executor would
    assert await nested_trigger_jobs(env) == []

    # Two attempts that read the runs at the step before either wrote (as a store without the job's
    # ownership check would let them): the second moves no run, and so enqueues nothing.
    current = await runtime.workflows.current(env.id, "parent")
    assert current is not None
    run_ids = job.args["run_ids"]
    async with runtime.database.reader.connect() as connection:
        read = await read_runs(connection, env.id, run_ids)
    rules = await runtime.audience_catalog.rules(env.id)
    for _ in range(2):
        async with runtime.database.writer.begin() as connection:
            now = utcnow()
            services = step_services(runtime, connection, now, rules)
            progress = await execute_runs(services, read, current.definition, active=True)
            await record_progress(connection, runtime.queue, progress, created=False, now=now)
    made = await nested_trigger_jobs(env)
    assert len(made) == 2
    assert {made_job.unique_key for made_job in made} == {
        f"{TRIGGER_JOB}:{run_id}:nested" for run_id in run_ids
    }
    # Whatever else ran the step again, its trigger's key is held: the queue skips a second one.
    again = [
        trigger_job(
            env.id,
            "another",
            "child",
            "v",
            source="workflow_step",
            request={},
            unique_key=made_job.unique_key,
        )
        for made_job in made
    ]
    async with runtime.database.writer.begin() as connection:
        assert await runtime.queue.insert_all(connection, again) == 0

    await run_workflow_jobs(runtime)
    assert await feed_bodies(env, "ann") == await feed_bodies(env, "ben") == ["child"]
    assert len(await runs_of(env, "child")) == 2


async def test_a_workflow_that_triggers_itself_stops_at_the_depth_limit(
    env: EnvFixture, tmp_path: Path
) -> None:
    looping = {"steps": [feed("say", "again"), trigger_step(workflow_key="looping")]}
    await push_workflow(env, tmp_path, "looping", looping)
    await trigger(env, "looping", [{"id": "ann"}])
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ann") == ["again"] * (MAX_TRIGGER_DEPTH + 1)
    runs = await runs_of(env, "looping")
    assert len(runs) == MAX_TRIGGER_DEPTH + 1
    deepest = runs[0]  # newest first
    skipped = [e for e in await events_of(env, deepest["id"]) if e["event"] == "step_skipped"]
    assert [e["data"] for e in skipped] == [
        {"reason": "trigger_depth_exceeded", "max_depth": MAX_TRIGGER_DEPTH}
    ]


@contextmanager
def counted_job_inserts(runtime: Runtime) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO JOBS"):
            sent.append(statement)

    engine = runtime.database.writer.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


async def test_a_fan_out_enqueues_every_nested_trigger_in_one_insert(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "child", {"steps": [feed("child_feed", "child")]})
    await push_workflow(env, tmp_path, "parent", {"steps": [trigger_step()]})
    users = [{"id": f"user-{n}"} for n in range(300)]
    await trigger(env, "parent", users)
    with counted_job_inserts(env.runtime) as sent:
        await run_workflow_jobs(env.runtime)
    assert len(sent) == 1  # the nested triggers; the child runs wait nowhere
    assert len(await nested_trigger_jobs(env)) == 300
    assert await feed_bodies(env, "user-299") == ["child"]


def pushed(step: dict[str, Any]) -> None:
    parse_workflow({"key": "parent", "steps": [step]}, None, TemplateRenderer())


REFUSED = [
    ({"ref": "t", "type": "trigger_workflow"}, "steps.0.settings", "workflow_key"),
    ({"ref": "t", "type": "trigger_workflow", "settings": {}}, "steps.0.settings.workflow_key", "required"),
    (trigger_step(workflow_key="Not A Key"), "steps.0.settings.workflow_key", "a-z"),
    (trigger_step(workflow_key="{{ data.key "), "steps.0.settings.workflow_key", "Liquid"),
    (trigger_step(recipients="{% for %}"), "steps.0.settings.recipients", "Liquid"),
    (trigger_step(actor=5), "steps.0.settings.actor", "string"),
    (trigger_step(data="[1, 2]"), "steps.0.settings.data", "JSON object"),
    (trigger_step(data="not json"), "steps.0.settings.data", "JSON object"),
    (trigger_step(cancellation_key="{{ }"), "steps.0.settings.cancellation_key", "Liquid"),
    (trigger_step(), None, None),
    (
        trigger_step(
            workflow_key="{{ data.key }}",
            recipients="{{ recipient.id }}",
            actor="{{ actor.id }}",
            tenant="{{ tenant.id }}",
            data="{{ data | json }}",
            cancellation_key="{{ workflow.cancellation_key }}",
        ),
        None,
        None,
    ),
]


@pytest.mark.parametrize(("step", "field", "message"), REFUSED)
def test_a_push_refuses_bad_settings_naming_the_field(
    step: dict[str, Any], field: str | None, message: str | None
) -> None:
    if field is None:
        pushed(step)
        return
    with pytest.raises(DefinitionError) as refused:
        pushed(step)
    assert refused.value.field == field
    assert message is not None and message in refused.value.message

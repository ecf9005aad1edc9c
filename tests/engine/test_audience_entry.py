"""Audience-entry workflows: each new membership runs the audience's workflows once, with the member as
recipient and the membership's tenant as tenant, enqueued in the transaction that adds the membership."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.engine import audience_rules
from clarion.engine import trigger as workflow_trigger
from clarion.engine.audience_entry import entry_jobs
from clarion.engine.run_executor import record_progress
from clarion.engine.workflow_files import WorkflowFilesError
from clarion.engine.workflow_jobs import TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.jobs.job import JobState
from clarion.store.audiences import AudienceMemberInput, MemberKey, NewMembership, add_memberships
from clarion.store.clock import utcnow
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import jobs
from tests.conftest import (
    EnvFixture,
    assert_error,
    feed_channel_id,
    push_audiences,
    push_workflow,
    run_workflow_jobs,
)

WELCOME = {
    "name": "Welcome to beta",
    "trigger": {"type": "audience", "audience_key": "beta"},
    "steps": [
        {
            "ref": "feed",
            "type": "channel",
            "channel_key": "in-app-feed",
            "template": {
                "markdown_body": "Welcome, {{ recipient.name }}{% if tenant %} of {{ tenant.id }}{% endif %}"
            },
        }
    ],
}
PREMIUM = {
    "name": "Premium",
    "type": "dynamic",
    "segments": [
        {"conditions": [{"property": "recipient.plan", "operator": "equal_to", "argument": "premium"}]}
    ],
}


async def add(env: EnvFixture, members: list[dict[str, Any]], key: str = "beta") -> None:
    response = await env.post(
        f"/v1/audiences/{key}/members", params={"create_audience": "true"}, json={"members": members}
    )
    assert response.status_code == 204, response.text


async def feed(env: EnvFixture, user_id: str) -> list[tuple[str, str | None]]:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
    assert response.status_code == 200, response.text
    return sorted((item["blocks"][0]["content"], item["tenant"]) for item in response.json()["entries"])


async def runs(env: EnvFixture, workflow_key: str) -> list[dict[str, Any]]:
    """Every run of the workflow, page after page."""
    items: list[dict[str, Any]] = []
    params = {"workflow": workflow_key}
    while True:
        response = await env.get("/v1/workflow_recipient_runs", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        if body["page_info"]["after"] is None:
            return items
        params = {"workflow": workflow_key, "after": body["page_info"]["after"]}


async def entry_jobs_of(env: EnvFixture) -> list[dict[str, Any]]:
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(sa.select(jobs.c.args).where(jobs.c.kind == TRIGGER_JOB))
        return [row.args for row in rows if row.args["environment_id"] == env.id]


async def test_each_new_member_runs_the_workflow_once_per_tenant(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    await add(
        env,
        [
            {"user": {"id": "ann", "name": "Ann"}},
            {"user": {"id": "ann"}, "tenant": "acme"},
            {"user": {"id": "bob", "name": "Bob"}, "tenant": "acme"},
        ],
    )
    await run_workflow_jobs(env.runtime)
    assert await feed(env, "ann") == [("Welcome, Ann", None), ("Welcome, Ann of acme", "acme")]
    assert await feed(env, "bob") == [("Welcome, Bob of acme", "acme")]
    listed = await runs(env, "welcome")
    assert sorted((run["recipient"], run["tenant"] or "") for run in listed) == [
        ("ann", ""),
        ("ann", "acme"),
        ("bob", "acme"),
    ]
    assert [run["trigger_source"] for run in listed] == [
        {"type": "audience", "audience_key": "beta", "cancellation_key": None}
    ] * 3
    assert {run["status"] for run in listed} == {"completed"}

    # Re-adding existing memberships fires nothing; a new tenant of a known member is a new membership.
    await add(env, [{"user": {"id": "ann"}}, {"user": {"id": "bob"}, "tenant": "acme"}])
    await add(env, [{"user": {"id": "bob"}, "tenant": "globex"}])
    await run_workflow_jobs(env.runtime)
    assert len(await runs(env, "welcome")) == 4
    assert await feed(env, "bob") == [("Welcome, Bob of acme", "acme"), ("Welcome, Bob of globex", "globex")]


async def test_a_member_removed_and_added_again_enters_again(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    await add(env, [{"user": {"id": "ann", "name": "Ann"}}])
    removal = {"members": [{"user": {"id": "ann"}}]}
    assert (await env.delete("/v1/audiences/beta/members", json=removal)).status_code == 204
    await add(env, [{"user": {"id": "ann"}}])
    await run_workflow_jobs(env.runtime)
    assert await feed(env, "ann") == [("Welcome, Ann", None), ("Welcome, Ann", None)]


async def test_an_entry_workflow_can_still_be_triggered_by_api(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    response = await env.post(
        "/v1/workflows/welcome/trigger", json={"recipients": [{"id": "ann", "name": "Ann"}]}
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    assert await feed(env, "ann") == [("Welcome, Ann", None)]
    assert [run["trigger_source"] for run in await runs(env, "welcome")] == [
        {"type": "api", "cancellation_key": None}
    ]


async def test_only_the_named_audience_fires_and_a_missing_one_never(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    await push_workflow(
        env, tmp_path, "orphan", {**WELCOME, "trigger": {"type": "audience", "audience_key": "nowhere"}}
    )
    await add(env, [{"user": {"id": "ann", "name": "Ann"}}], key="other")
    await run_workflow_jobs(env.runtime)
    assert await feed(env, "ann") == []
    assert_error(await env.get("/v1/audiences/nowhere/members"), 404)


async def test_an_inactive_workflow_does_not_fire(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    assert await env.runtime.workflows.store.set_active(env.id, "welcome", False)
    env.runtime.workflows.forget(env.id, "welcome")
    await add(env, [{"user": {"id": "ann", "name": "Ann"}}])
    await run_workflow_jobs(env.runtime)
    assert await feed(env, "ann") == []


async def test_entering_a_dynamic_audience_fires_its_workflows(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    await push_workflow(
        env, tmp_path, "upgraded", {**WELCOME, "trigger": {"type": "audience", "audience_key": "premium"}}
    )
    for properties in (
        {"name": "Ann", "plan": "premium"},
        {"plan": "premium"},
        {"plan": "free"},
        {"plan": "premium"},
    ):
        assert (await env.put("/v1/users/ann", json=properties)).status_code == 200
    await run_workflow_jobs(env.runtime)
    # Entered twice (the second identify changed nothing; leaving fires nothing).
    assert await feed(env, "ann") == [("Welcome, Ann", None), ("Welcome, Ann", None)]


async def test_members_computed_at_push_fire_nothing(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(
        env, tmp_path, "upgraded", {**WELCOME, "trigger": {"type": "audience", "audience_key": "premium"}}
    )
    assert (await env.put("/v1/users/ann", json={"plan": "premium"})).status_code == 200
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    await run_workflow_jobs(env.runtime)
    [member] = (await env.get("/v1/audiences/premium/members")).json()["entries"]
    assert member["user_id"] == "ann"
    assert await runs(env, "upgraded") == []


async def test_adding_a_thousand_members_is_one_membership_insert_and_one_job_insert(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    await add(env, [{"user": {"id": "m0"}}])
    statements: list[int] = []
    job_inserts: list[int] = []
    execute = AsyncConnection.execute
    insert_all = env.runtime.queue.insert_all

    async def counting_execute(connection: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(statement, sa.Insert) and statement.table.name == "audience_members":
            statements.append(1)
        return await execute(connection, statement, *args, **kwargs)

    async def counting_insert_all(connection: Any, new_jobs: Any) -> int:
        job_inserts.append(len(new_jobs))
        return await insert_all(connection, new_jobs)

    monkeypatch.setattr(AsyncConnection, "execute", counting_execute)
    monkeypatch.setattr(env.runtime.queue, "insert_all", counting_insert_all)
    await add(env, [{"user": {"id": f"m{i}"}} for i in range(1000)])
    monkeypatch.undo()
    assert statements == [1]
    assert job_inserts == [1]  # the 999 new members' trigger: "m0" was a member already
    [job] = [args for args in await entry_jobs_of(env) if len(args["request"]["recipients"]) > 1]
    assert sorted(job["request"]["recipients"]) == sorted(f"m{i}" for i in range(1, 1000))
    await run_workflow_jobs(env.runtime)
    listed = await runs(env, "welcome")
    assert len(listed) == len({run["id"] for run in listed}) == 1000
    assert await feed(env, "m999") == [("Welcome, ", None)]


async def test_a_membership_that_rolls_back_enqueues_nothing(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    await push_workflow(env, tmp_path, "welcome", WELCOME)

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the process died before its commit")

    # The last thing the add does in its transaction, after the memberships and their jobs are written.
    monkeypatch.setattr(audience_rules.EnvironmentAudiences, "users_written", crash)
    member = AudienceMemberInput(MemberKey("ann", None), {"name": "Ann"}, InlineRecipientData())
    with pytest.raises(RuntimeError):
        await env.runtime.audiences.add_members(env.id, "beta", [member], create_audience=True)
    monkeypatch.undo()
    assert await entry_jobs_of(env) == []
    assert_error(await env.get("/v1/audiences/beta/members"), 404)
    assert_error(await env.get("/v1/users/ann"), 404)

    # Done again, the add fires once.
    await env.runtime.audiences.add_members(env.id, "beta", [member], create_audience=True)
    [job] = await entry_jobs_of(env)
    assert (job["trigger_source"], job["request"]) == ("audience:beta", {"recipients": ["ann"]})
    await run_workflow_jobs(env.runtime)
    assert await feed(env, "ann") == [("Welcome, Ann", None)]


async def test_one_membership_fires_each_workflow_once_however_often_it_is_enqueued(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    await push_workflow(env, tmp_path, "welcome-too", WELCOME)
    assert (await env.put("/v1/users/ann", json={"name": "Ann"})).status_code == 200
    await env.runtime.audiences.add_members(env.id, "beta", [], create_audience=True)
    rules = await env.runtime.audience_catalog.rules(env.id, adding_members=True)
    async with env.runtime.database.writer.begin() as connection:
        added = await add_memberships(connection, env.id, "beta", [MemberKey("ann", None)])
        # A transaction that enqueued a membership's jobs twice (a retried step, say) fires them once.
        await rules.members_added(connection, "beta", added)
        await rules.members_added(connection, "beta", added)
    assert sorted(job["workflow_key"] for job in await entry_jobs_of(env)) == ["welcome", "welcome-too"]
    await run_workflow_jobs(env.runtime)
    assert await feed(env, "ann") == [("Welcome, Ann", None), ("Welcome, Ann", None)]
    async with env.runtime.database.reader.connect() as connection:
        states = await connection.execute(
            sa.select(jobs.c.state, jobs.c.args).where(jobs.c.kind == TRIGGER_JOB)
        )
        assert {row.state for row in states if row.args["environment_id"] == env.id} == {
            JobState.COMPLETED.value
        }


async def test_one_write_is_one_trigger_per_workflow_and_tenant_each_member_its_own_run(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    await push_workflow(env, tmp_path, "welcome-too", WELCOME)
    await add(
        env,
        [
            {"user": {"id": "ann", "name": "Ann"}},
            {"user": {"id": "bob", "name": "Bob"}},
            {"user": {"id": "ann"}, "tenant": "acme"},
            {"user": {"id": "cid", "name": "Cid"}, "tenant": "acme"},
            {"user": {"id": "dan", "name": "Dan"}, "tenant": "globex"},
        ],
    )
    triggers = await entry_jobs_of(env)
    assert sorted(
        (job["workflow_key"], job["request"].get("tenant", ""), sorted(job["request"]["recipients"]))
        for job in triggers
    ) == [
        (workflow_key, tenant, members)
        for workflow_key in ("welcome", "welcome-too")
        for tenant, members in (("", ["ann", "bob"]), ("acme", ["ann", "cid"]), ("globex", ["dan"]))
    ]
    await run_workflow_jobs(env.runtime)
    assert (
        await feed(env, "ann")
        == [("Welcome, Ann", None), ("Welcome, Ann", None)] + [("Welcome, Ann of acme", "acme")] * 2
    )
    assert await feed(env, "dan") == [("Welcome, Dan of globex", "globex")] * 2
    listed = await runs(env, "welcome")
    assert sorted((run["recipient"], run["tenant"] or "") for run in listed) == [
        ("ann", ""),
        ("ann", "acme"),
        ("bob", ""),
        ("cid", "acme"),
        ("dan", "globex"),
    ]
    assert len({run["id"] for run in listed}) == 5
    # The members a write brings in with one tenant are one trigger's recipients, as if the API had
    # triggered the workflow for them: their runs share its `workflow_run_id`.
    by_trigger: dict[str, set[str]] = {}
    for run in listed:
        by_trigger.setdefault(run["workflow_run_id"], set()).add(f"{run['recipient']}@{run['tenant']}")
    assert sorted(map(sorted, by_trigger.values())) == [
        ["ann@None", "bob@None"],
        ["ann@acme", "cid@acme"],
        ["dan@globex"],
    ]


async def test_a_trigger_names_at_most_a_triggers_worth_of_members(env: EnvFixture, tmp_path: Path) -> None:
    """More members than a trigger takes (a write the API cannot make today, but the rules do not count on
    that): a trigger per thousand, each keyed by its own memberships."""
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    workflow = await env.runtime.workflows.current(env.id, "welcome")
    assert workflow is not None
    now = utcnow()
    added = [NewMembership(pk, now, f"user-{pk}", None) for pk in range(2500)]
    added.append(NewMembership(2500, now, "user-0", "acme"))
    made = entry_jobs(env.id, "beta", [workflow], added)
    assert [(len(job.args["request"]["recipients"]), job.args["request"].get("tenant")) for job in made] == [
        (1000, None),
        (1000, None),
        (500, None),
        (1, "acme"),
    ]
    assert [job.args["request"]["recipients"][0] for job in made] == [
        "user-0",
        "user-1000",
        "user-2000",
        "user-0",
    ]
    keys = [job.unique_key for job in made]
    assert len(set(keys)) == 4
    # The same memberships make the same keys (the queue then skips them); the same pairs added again
    # later are other memberships.
    assert [job.unique_key for job in entry_jobs(env.id, "beta", [workflow], added)] == keys
    again = [membership._replace(pk=membership.pk + 5000) for membership in added]
    assert not {job.unique_key for job in entry_jobs(env.id, "beta", [workflow], again)} & set(keys)


async def test_an_entry_trigger_that_dies_midway_starts_each_run_once(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that dies after the first of an entry trigger's transactions committed: the attempt after it
    starts the members left, and no member gets two messages."""
    monkeypatch.setattr(workflow_trigger, "RUNS_PER_TRANSACTION", 2)
    await push_workflow(env, tmp_path, "welcome", WELCOME)
    await add(env, [{"user": {"id": f"m{i}", "name": f"M{i}"}} for i in range(5)])
    runtime = env.runtime
    [job] = await runtime.queue.claim(WORKFLOW_QUEUE, 1, "dying-worker", 60)
    assert job.args["environment_id"] == env.id
    commits: list[int] = []

    async def die_at_the_second_chunk(*args: Any, **kwargs: Any) -> Any:
        if commits:
            raise ConnectionError("the worker died")
        commits.append(1)
        return await record_progress(*args, **kwargs)

    monkeypatch.setattr(workflow_trigger, "record_progress", die_at_the_second_chunk)
    with pytest.raises(ConnectionError):
        await workflow_trigger.start_runs(runtime, job)
    monkeypatch.setattr(workflow_trigger, "record_progress", record_progress)
    assert len(await runs(env, "welcome")) == 2
    assert await runtime.queue.retry(job, "the worker died") is JobState.RETRYABLE  # as the executor would
    await run_workflow_jobs(runtime)
    assert sorted(run["recipient"] for run in await runs(env, "welcome")) == [f"m{i}" for i in range(5)]
    for i in range(5):
        assert await feed(env, f"m{i}") == [(f"Welcome, M{i}", None)]


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ("beta", "at trigger: must be an object with `type` and `audience_key`"),
        ({"type": "schedule", "audience_key": "beta"}, 'at trigger.type: must be "audience"'),
        ({"audience_key": "beta"}, 'at trigger.type: must be "audience"'),
        ({"type": "audience"}, "at trigger.audience_key: is required"),
        ({"type": "audience", "audience_key": 5}, "at trigger.audience_key: must be a string"),
        ({"type": "audience", "audience_key": ""}, "at trigger.audience_key: must be 1 to 255 characters"),
        (
            {"type": "audience", "audience_key": "a" * 256},
            "at trigger.audience_key: must be 1 to 255 characters",
        ),
        (
            {"type": "audience", "audience_key": "beta", "audience_keys": ["gamma"]},
            "at trigger: takes only `type` and `audience_key`",
        ),
    ],
)
async def test_a_bad_trigger_is_refused_at_push_with_its_field(
    env: EnvFixture, tmp_path: Path, trigger: Any, expected: str
) -> None:
    with pytest.raises(WorkflowFilesError) as raised:
        await push_workflow(env, tmp_path, "welcome", {**WELCOME, "trigger": trigger})
    [problem] = raised.value.problems
    assert f"welcome/workflow.json {expected}" in str(problem), problem
    assert await env.runtime.workflows.store.list(env.id) == []


async def test_trigger_frequency_limits_entries_as_knock_documents(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "welcome", {**WELCOME, "trigger_frequency": "once_per_recipient"})
    await add(
        env,
        [
            {"user": {"id": "ann", "name": "Ann"}, "tenant": "acme"},
            {"user": {"id": "ann"}, "tenant": "globex"},
        ],
    )
    await run_workflow_jobs(env.runtime)
    assert len(await feed(env, "ann")) == 1

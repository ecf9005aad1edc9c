"""The update audience step: the run's recipient added to or removed from a static audience with the run's
tenant, seen by `is_audience_member` conditions of later steps in the same pass; a new membership runs
the audience's entry workflows once, as an add by API does; a constant number of statements per pass;
what each run changed on its run; missing and dynamic audiences skipped; bad settings refused at push
with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import parse_workflow
from clarion.engine.workflow_jobs import TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.jobs.worker import DRAIN_BATCH
from clarion.runtime import Runtime, build_worker
from clarion.store.tables import audience_members, jobs
from tests.conftest import EnvFixture, push_audiences, push_workflow, run_workflow_jobs
from tests.engine.test_audience_entry import add, runs
from tests.engine.test_audience_rules import condition, dynamic
from tests.engine.test_branch_step import branch, default, feed, feed_bodies, trigger
from tests.engine.test_update_entity_steps import counted_statements

STATIC = {"name": "Beta", "type": "static"}
IN_BETA = {"all": [{"variable": "recipient", "operator": "is_audience_member", "argument": "beta"}]}


def update_audience(ref: str, action: str, audience_key: Any = "beta", **extra: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "type": "update_audience",
        "settings": {"audience_key": audience_key, "action": action},
        **extra,
    }


def membership_check(ref: str) -> dict[str, Any]:
    """A branch that says whether the recipient is a member of beta now."""
    return branch(
        ref,
        {"name": "Member", "conditions": IN_BETA, "steps": [feed(f"{ref}_yes", f"{ref}: member")]},
        default(feed(f"{ref}_no", f"{ref}: not a member")),
    )


async def members(env: EnvFixture, key: str) -> list[tuple[str, str]]:
    """The audience's (user, tenant) memberships, "" for none."""
    response = await env.get(f"/v1/audiences/{key}/members")
    assert response.status_code == 200, response.text
    return sorted((entry["user_id"], entry["tenant"] or "") for entry in response.json()["entries"])


async def audience_events(env: EnvFixture, workflow_key: str) -> list[dict[str, Any]]:
    """The `audience_updated` and `step_skipped` events of the workflow's runs."""
    found: list[dict[str, Any]] = []
    for run in await runs(env, workflow_key):
        detail = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
        found.extend(
            event for event in detail["events"] if event["event"] in ("audience_updated", "step_skipped")
        )
    return found


async def test_an_added_recipient_is_a_member_for_the_steps_after_with_the_runs_tenant(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_audiences(env, tmp_path, {"beta": STATIC})
    document = {
        "steps": [membership_check("before"), update_audience("join", "add"), membership_check("after")]
    }
    await push_workflow(env, tmp_path, "joining", document)
    await trigger(env, "joining", [{"id": "ann"}], tenant="acme")
    await trigger(env, "joining", [{"id": "bob"}])
    await run_workflow_jobs(env.runtime)

    for user_id in ("ann", "bob"):
        assert await feed_bodies(env, user_id) == ["before: not a member", "after: member"]
    assert await members(env, "beta") == [("ann", "acme"), ("bob", "")]
    [ann_added, bob_added] = sorted(await audience_events(env, "joining"), key=lambda e: e["data"]["user"])
    assert (ann_added["step_ref"], ann_added["step_type"]) == ("join", "update_audience")
    assert ann_added["data"] == {
        "audience_key": "beta",
        "action": "add",
        "user": "ann",
        "tenant": "acme",
        "changed": True,
    }
    assert (bob_added["data"]["user"], bob_added["data"]["tenant"]) == ("bob", None)

    # A member of beta in acme only is not one without a tenant: the run without one adds that membership.
    await trigger(env, "joining", [{"id": "ann"}])
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ann") == ["before: not a member", "after: member"] * 2
    assert await members(env, "beta") == [("ann", ""), ("ann", "acme"), ("bob", "")]


async def test_a_removed_recipient_is_no_member_for_the_steps_after(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"beta": STATIC})
    await add(env, [{"user": {"id": "ann"}, "tenant": "acme"}, {"user": {"id": "ann"}}])
    document = {
        "steps": [membership_check("before"), update_audience("leave", "remove"), membership_check("after")]
    }
    await push_workflow(env, tmp_path, "leaving", document)
    await trigger(env, "leaving", [{"id": "ann"}], tenant="acme")
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ann") == ["before: member", "after: not a member"]
    # Only the membership with the run's tenant goes.
    assert await members(env, "beta") == [("ann", "")]

    # Removing a recipient that is not a member succeeds with no change, as in Knock.
    await trigger(env, "leaving", [{"id": "bob"}])
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "bob") == ["before: not a member", "after: not a member"]
    [removed, not_a_member] = sorted(await audience_events(env, "leaving"), key=lambda e: e["data"]["user"])
    assert (removed["data"]["user"], removed["data"]["action"], removed["data"]["changed"]) == (
        "ann",
        "remove",
        True,
    )
    assert (not_a_member["data"]["user"], not_a_member["data"]["changed"]) == ("bob", False)


async def test_a_new_membership_runs_the_entry_workflows_once_as_an_add_by_api_does(
    env: EnvFixture, tmp_path: Path
) -> None:
    # `insiders` follows beta's members without a tenant, so the step's add moves users into it too.
    insiders = dynamic([condition("recipient.id", "is_audience_member", "beta")])
    await push_audiences(env, tmp_path, {"beta": STATIC, "insiders": insiders})
    for key, audience in (("welcome", "beta"), ("insider", "insiders")):
        entry = {
            "trigger": {"type": "audience", "audience_key": audience},
            "steps": [feed(f"{key}_feed", f"{key} {{{{ recipient.id }}}}")],
        }
        await push_workflow(env, tmp_path, key, entry)
    await push_workflow(env, tmp_path, "joining", {"steps": [update_audience("join", "add")]})
    await add(env, [{"user": {"id": "cy"}}])
    await run_workflow_jobs(env.runtime)
    assert sorted(await feed_bodies(env, "cy")) == ["insider cy", "welcome cy"]

    # Ann joins twice: the second run finds her a member. Cy was one already.
    await trigger(env, "joining", [{"id": "ann"}, {"id": "cy"}])
    await trigger(env, "joining", [{"id": "ann"}])
    await run_workflow_jobs(env.runtime)

    assert sorted(await feed_bodies(env, "ann")) == ["insider ann", "welcome ann"]
    assert sorted(await feed_bodies(env, "cy")) == ["insider cy", "welcome cy"]
    welcomed = await runs(env, "welcome")
    assert sorted(run["recipient"] for run in welcomed) == ["ann", "cy"]
    assert {run["status"] for run in welcomed} == {"completed"}
    [ann_entry] = [run for run in welcomed if run["recipient"] == "ann"]
    assert ann_entry["trigger_source"]["type"] == "audience"
    assert ann_entry["trigger_source"]["audience_key"] == "beta"
    changes = sorted((e["data"]["user"], e["data"]["changed"]) for e in await audience_events(env, "joining"))
    assert changes == [("ann", False), ("ann", True), ("cy", False)]


async def test_missing_and_dynamic_audiences_and_object_recipients_skip_the_step(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_audiences(
        env, tmp_path, {"beta": STATIC, "premium": dynamic([condition("recipient.plan", "equal_to", "pro")])}
    )
    document = {
        "steps": [
            update_audience("ghost", "add", "nowhere"),
            update_audience("computed", "remove", "premium"),
            update_audience("join", "add"),
            feed("after", "after"),
        ]
    }
    await push_workflow(env, tmp_path, "odd", document)
    room = {"id": "room-1", "collection": "rooms", "name": "Room"}
    await trigger(env, "odd", [{"id": "ann", "plan": "pro"}, room])
    await run_workflow_jobs(env.runtime)

    assert await feed_bodies(env, "ann") == ["after"]
    assert await members(env, "premium") == [("ann", "")]
    assert await members(env, "beta") == [("ann", "")]
    outcomes = sorted(
        (
            event["step_ref"],
            event["data"].get("reason", event["event"]),
            event["data"].get("audience_key", ""),
        )
        for event in await audience_events(env, "odd")
    )
    assert outcomes == [
        ("computed", "audience_dynamic", "premium"),
        ("computed", "recipient_not_a_user", ""),
        ("ghost", "audience_missing", "nowhere"),
        ("ghost", "recipient_not_a_user", ""),
        ("join", "audience_updated", "beta"),
        ("join", "recipient_not_a_user", ""),
    ]


async def run_jobs_available_now(runtime: Runtime) -> None:
    """Run the workflow jobs queued now, and not those they enqueue (the entry runs a step fires)."""
    worker = build_worker(runtime)
    for job in await worker.engine.claim(
        WORKFLOW_QUEUE, DRAIN_BATCH, worker.id, worker.options.lease_seconds
    ):
        await worker.executor.execute(job)


async def entry_jobs(env: EnvFixture) -> int:
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(sa.select(jobs.c.args).where(jobs.c.kind == TRIGGER_JOB))
        return sum(
            row.args["environment_id"] == env.id and row.args["workflow_key"] == "welcome" for row in rows
        )


@pytest.mark.parametrize("action", ["add", "remove"])
async def test_a_fan_out_updates_the_audience_at_a_constant_number_of_statements(
    env: EnvFixture, tmp_path: Path, action: str
) -> None:
    await push_audiences(
        env,
        tmp_path,
        {"beta": STATIC, "insiders": dynamic([condition("recipient.id", "is_audience_member", "beta")])},
    )
    welcome = {"trigger": {"type": "audience", "audience_key": "beta"}, "steps": [feed("hello", "hello")]}
    await push_workflow(env, tmp_path, "welcome", welcome)
    await push_workflow(
        env, tmp_path, "changing", {"steps": [update_audience("change", action), feed("after", "after")]}
    )
    counts = []
    # The first trigger fills the process's caches (the environment's audience rules, say).
    for size in (1, 20, 200):
        users = [{"id": f"u{size}-{n}"} for n in range(size)]
        if action == "remove":
            await add(env, [{"user": user, "tenant": "acme"} for user in users])
            await run_workflow_jobs(env.runtime)
        await trigger(env, "changing", users, tenant="acme")
        entries_before = await entry_jobs(env)
        with counted_statements(env.runtime) as sent:
            await run_jobs_available_now(env.runtime)
        counts.append(len(sent))
        # An entry workflow's one trigger for the pass's new members of a tenant (`audience_entry`).
        assert await entry_jobs(env) - entries_before == (1 if action == "add" else 0)
        await run_workflow_jobs(env.runtime)  # the entry runs
        assert sorted(await feed_bodies(env, users[-1]["id"])) == ["after", "hello"]
    assert counts[1] == counts[2], counts
    async with env.runtime.database.reader.connect() as connection:
        in_beta = await connection.scalar(
            sa.select(sa.func.count()).where(
                audience_members.c.environment_id == env.id, audience_members.c.audience_key == "beta"
            )
        )
    assert in_beta == (221 if action == "add" else 0)
    assert await members(env, "insiders") == []  # beta's members have a tenant, which segments ignore


def pushed(document: dict[str, Any]) -> None:
    parse_workflow({"key": "audiences", **document}, None, TemplateRenderer())


def steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"steps": list(steps)}


ENTERING_BETA = {"trigger": {"type": "audience", "audience_key": "beta"}}

REFUSED = [
    (steps({"ref": "u", "type": "update_audience"}), "steps.0.settings", "audience_key"),
    (
        steps({"ref": "u", "type": "update_audience", "settings": {"action": "add"}}),
        "steps.0.settings.audience_key",
        "required",
    ),
    (steps(update_audience("u", "add", "")), "steps.0.settings.audience_key", "1 to 255"),
    (steps(update_audience("u", "add", "x" * 256)), "steps.0.settings.audience_key", "1 to 255"),
    (steps(update_audience("u", "add", 5)), "steps.0.settings.audience_key", "string"),
    (steps(update_audience("u", "join")), "steps.0.settings.action", "add, remove"),
    (
        steps({"ref": "u", "type": "update_audience", "settings": {"audience_key": "beta"}}),
        "steps.0.settings.action",
        "add, remove",
    ),
    (
        steps(
            {
                "ref": "u",
                "type": "update_audience",
                "settings": {"audience_key": "beta", "action": "add", "recipient_gid": "x"},
            }
        ),
        "steps.0.settings.recipient_gid",
        "not a setting",
    ),
    (
        {**ENTERING_BETA, **steps(update_audience("u", "add"))},
        "steps.0.settings.audience_key",
        "run this workflow",
    ),
    (
        {**ENTERING_BETA, **steps(branch("b", default(update_audience("u", "add"))))},
        "steps.0.branches.0.steps.0.settings.audience_key",
        "run this workflow",
    ),
    ({**ENTERING_BETA, **steps(update_audience("u", "remove"))}, None, None),
    ({**ENTERING_BETA, **steps(update_audience("u", "add", "gamma"))}, None, None),
    (steps(update_audience("u", "add", "Any key: an audience made by API")), None, None),
]


@pytest.mark.parametrize(("document", "field", "message"), REFUSED)
def test_a_push_refuses_bad_settings_naming_the_field(
    document: dict[str, Any], field: str | None, message: str | None
) -> None:
    if field is None:
        pushed(document)
        return
    with pytest.raises(DefinitionError) as refused:
        pushed(document)
    assert refused.value.field == field, refused.value
    assert message is not None and message in refused.value.message

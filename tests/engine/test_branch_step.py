"""The branch step: the first branch whose conditions hold runs, else the default one; a terminating branch
ends the run, another goes on after the branch step; branches nest, and runs wait inside them. And what a
push refuses, as Knock does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import parse_workflow
from clarion.engine.workflow_files import WorkflowFilesError
from tests.conftest import EnvFixture, assert_error, feed_channel_id, push_workflow, run_workflow_jobs


def feed(ref: str, body: str, **extra: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "type": "channel",
        "channel_key": "in-app-feed",
        "channel_type": "in_app_feed",
        "template": {"markdown_body": body},
        **extra,
    }


def plan_is(plan: str) -> dict[str, Any]:
    return {"all": [{"variable": "recipient.plan", "operator": "equal_to", "argument": plan}]}


def branch(ref: str, *branches: dict[str, Any]) -> dict[str, Any]:
    return {"ref": ref, "type": "branch", "branches": list(branches)}


def default(*steps: dict[str, Any], terminates: bool = False) -> dict[str, Any]:
    return {"name": "Default", "conditions": None, "steps": list(steps), "terminates": terminates}


async def feed_bodies(env: EnvFixture, user_id: str) -> list[str]:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
    assert response.status_code == 200, response.text
    return [entry["blocks"][0]["content"] for entry in reversed(response.json()["entries"])]


async def trigger(env: EnvFixture, key: str, recipients: list[dict[str, Any]], **body: Any) -> None:
    response = await env.post(f"/v1/workflows/{key}/trigger", json={"recipients": recipients, **body})
    assert response.status_code == 200, response.text


async def run_events(env: EnvFixture, user_id: str) -> list[dict[str, Any]]:
    listed = await env.get("/v1/workflow_recipient_runs", params={"recipient": user_id})
    [run] = listed.json()["items"]
    detail = await env.get(f"/v1/workflow_recipient_runs/{run['id']}")
    assert detail.status_code == 200, detail.text
    events: list[dict[str, Any]] = detail.json()["events"]
    return events


PLANS = [{"id": "ada", "plan": "pro"}, {"id": "bob", "plan": "team"}, {"id": "cy", "plan": "free"}]


async def test_the_first_branch_whose_conditions_hold_runs_then_the_steps_after_it(
    env: EnvFixture, tmp_path: Path
) -> None:
    plans = branch(
        "plans",
        {"name": "Pro", "conditions": plan_is("pro"), "steps": [feed("pro_1", "pro")]},
        # Holds for ada too, but the pro branch comes first.
        {
            "name": "Paying",
            "conditions": {"any": [plan_is("pro"), plan_is("team")]},
            "steps": [feed("paying_1", "paying"), feed("paying_2", "paying again")],
        },
        default(feed("free_1", "free")),
    )
    await push_workflow(env, tmp_path, "plans", {"steps": [plans, feed("after", "after")]})
    await trigger(env, "plans", PLANS)
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["pro", "after"]
    assert await feed_bodies(env, "bob") == ["paying", "paying again", "after"]
    assert await feed_bodies(env, "cy") == ["free", "after"]

    taken = [event for event in await run_events(env, "bob") if event["event"] == "branch_taken"]
    assert [(e["step_ref"], e["step_type"], e["data"]) for e in taken] == [
        ("plans", "branch", {"branch": "Paying", "branch_index": 1})
    ]
    assert (await run_events(env, "bob"))[-1]["event"] == "run_completed"


async def test_a_terminating_branch_ends_the_run_at_its_end(env: EnvFixture, tmp_path: Path) -> None:
    plans = branch(
        "plans",
        {"name": "Pro", "conditions": plan_is("pro"), "steps": [feed("pro_1", "pro")], "terminates": True},
        # An empty default branch that terminates: the run ends without a message.
        default(terminates=True),
    )
    await push_workflow(env, tmp_path, "ending", {"steps": [plans, feed("after", "after")]})
    await trigger(env, "ending", PLANS)
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["pro"]
    assert await feed_bodies(env, "cy") == []
    events = await run_events(env, "cy")
    assert [event["event"] for event in events] == ["run_started", "branch_taken", "run_completed"]
    runs = (await env.get("/v1/workflow_recipient_runs", params={"workflow": "ending"})).json()["items"]
    assert {run["status"] for run in runs} == {"completed"}


async def test_runs_wait_inside_nested_branches_and_go_on_from_there(env: EnvFixture, tmp_path: Path) -> None:
    delay = {"ref": "wait", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}
    inner = branch(
        "inner",
        {"name": "Pro", "conditions": plan_is("pro"), "steps": [delay, feed("inner_pro", "later, pro")]},
        default(feed("inner_default", "at once")),
    )
    outer = branch(
        "outer",
        {"name": "Paying", "conditions": {"any": [plan_is("pro"), plan_is("team")]}, "steps": [inner]},
        default(),
    )
    await push_workflow(env, tmp_path, "nested", {"steps": [outer, feed("after", "after")]})
    await trigger(env, "nested", PLANS)

    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env, "ada") == []  # waiting at the delay, two branches deep
    assert await feed_bodies(env, "bob") == ["at once", "after"]
    assert await feed_bodies(env, "cy") == ["after"]
    [waiting] = (
        await env.get("/v1/workflow_recipient_runs", params={"recipient": "ada", "status": "paused"})
    ).json()["items"]
    stored = await env.runtime.workflow_runs.get(env.id, waiting["id"])
    assert stored is not None and stored.position == "0.0.0.0.1"

    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["later, pro", "after"]


async def test_later_steps_read_the_messages_of_steps_inside_a_branch(
    env: EnvFixture, tmp_path: Path
) -> None:
    plans = branch(
        "plans",
        {"name": "Pro", "conditions": plan_is("pro"), "steps": [feed("welcome_pro", "welcome")]},
        default(),
    )
    sent = {
        "all": [
            {"variable": "refs.welcome_pro.delivery_status", "operator": "equal_to", "argument": "delivered"}
        ]
    }
    document = {"steps": [plans, feed("follow_up", "follow-up", conditions=sent)]}
    await push_workflow(env, tmp_path, "refs", document)
    await trigger(env, "refs", PLANS)
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["welcome", "follow-up"]
    assert await feed_bodies(env, "cy") == []


async def test_branches_see_audience_membership(env: EnvFixture, tmp_path: Path) -> None:
    response = await env.post(
        "/v1/audiences/beta/members",
        params={"create_audience": "true"},
        json={"members": [{"user": {"id": "bob"}}]},
    )
    assert response.status_code == 204, response.text
    in_beta = {"all": [{"variable": "recipient", "operator": "is_audience_member", "argument": "beta"}]}
    document = {
        "steps": [
            branch(
                "beta",
                {"name": "Beta", "conditions": in_beta, "steps": [feed("beta_1", "beta")]},
                default(feed("ga_1", "everyone")),
            )
        ]
    }
    await push_workflow(env, tmp_path, "beta", document)
    await trigger(env, "beta", PLANS)
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "bob") == ["beta"]
    assert await feed_bodies(env, "ada") == ["everyone"]


def nested(depth: int) -> dict[str, Any]:
    """A branch step with branch steps nested `depth` levels inside its default branch."""
    steps: list[dict[str, Any]] = [feed(f"leaf_{depth}", "leaf")]
    for level in range(depth):
        steps = [branch(f"level_{level}", default(*steps))]
    return steps[0]


REFUSED = [
    (
        {**branch("b", default()), "conditions": plan_is("pro")},
        "steps.0.conditions",
        "no conditions of its own",
    ),
    (branch("b"), "steps.0.branches", "1 to 10 branches"),
    (
        branch(
            "b", *[{"name": f"n{i}", "conditions": plan_is("x"), "steps": []} for i in range(10)], default()
        ),
        "steps.0.branches",
        "1 to 10 branches",
    ),
    (
        branch("b", {"name": "Pro", "conditions": plan_is("pro"), "steps": []}),
        "steps.0.branches.0.conditions",
        "default one",
    ),
    (
        branch("b", {"name": "Pro", "steps": []}, default()),
        "steps.0.branches.0.conditions",
        "needs conditions",
    ),
    (
        branch(
            "b",
            default(feed("x", "x")),
        ),
        None,
        None,
    ),
    (branch("b", default(feed("b", "x"))), "steps.0.branches.0.steps.0.ref", "used by another step"),
    (branch("b", {**default(), "terminates": "yes"}), "steps.0.branches.0.terminates", "boolean"),
    (nested(6), "steps.0" + ".branches.0.steps.0" * 5 + ".branches.0.steps", "at most 5 levels"),
    (nested(5), None, None),
]


@pytest.mark.parametrize(("step", "field", "message"), REFUSED)
def test_a_push_refuses_what_knock_refuses(
    step: dict[str, Any], field: str | None, message: str | None
) -> None:
    document = {"key": "branching", "steps": [step]}
    if field is None:
        assert parse_workflow(document, None, TemplateRenderer()).steps
        return
    with pytest.raises(DefinitionError) as refused:
        parse_workflow(document, None, TemplateRenderer())
    assert refused.value.field == field
    assert message is not None and message in refused.value.message


async def test_a_refused_branch_names_the_field_through_the_api_of_a_trigger(
    env: EnvFixture, tmp_path: Path
) -> None:
    # A workflow that failed its push was never committed: triggering it finds nothing.
    with pytest.raises(WorkflowFilesError, match=r"steps\.0\.branches\.0\.conditions"):
        await push_workflow(
            env, tmp_path, "broken", {"steps": [branch("b", {"name": "x", "steps": []}, default())]}
        )
    assert_error(await env.post("/v1/workflows/broken/trigger", json={"recipients": ["ada"]}), 404)

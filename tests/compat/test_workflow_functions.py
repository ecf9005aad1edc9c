"""Workflow functions through the official Knock SDK against a live `clarion serve`: a branch workflow
routes each recipient by plan, and the runs say which branch each took; a once-per-recipient workflow
runs once however often it is triggered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from knockapi import Knock
from knockapi.types import InlineIdentifyUserRequestParam, MessageInAppFeedContentBlock

from tests.compat.live_server import IN_APP_FEED_CHANNEL_ID, EnvironmentKeys, LiveServer
from tests.compat.test_workflows import wait_until
from tests.conftest import write_workflow


def feed_step(ref: str, body: str) -> dict[str, Any]:
    return {"ref": ref, "type": "channel", "channel_key": "in-app", "template": {"markdown_body": body}}


def plan_is(plan: str) -> dict[str, Any]:
    return {"all": [{"variable": "recipient.plan", "operator": "equal_to", "argument": plan}]}


PLANS_WORKFLOW = {
    "steps": [
        {
            "ref": "by_plan",
            "type": "branch",
            "branches": [
                {"name": "Pro", "conditions": plan_is("pro"), "steps": [feed_step("pro", "Pro tips")]},
                {
                    "name": "Default",
                    "conditions": None,
                    "steps": [feed_step("upgrade", "Try Pro")],
                    "terminates": True,
                },
            ],
        },
        feed_step("digest", "Your digest"),
    ]
}
WELCOME_WORKFLOW = {"trigger_frequency": "once_per_recipient", "steps": [feed_step("hello", "Welcome")]}
DIGEST_WORKFLOW = {
    "steps": [
        {"ref": "gather", "type": "batch", "settings": {"batch_window": {"unit": "seconds", "value": 2}}},
        feed_step(
            "digest",
            "{{ total_activities }} comments by {{ total_actors }}: "
            "{% for activity in activities %}{{ activity.text }} {% endfor %}",
        ),
    ]
}
ALERT_WORKFLOW = {
    "steps": [
        {"ref": "gate", "type": "throttle", "settings": {"throttle_window": {"unit": "hours", "value": 1}}},
        feed_step("alert", "Disk almost full"),
    ]
}


@pytest.fixture
def workflows(live_server: LiveServer, environment: EnvironmentKeys, tmp_path: Path) -> None:
    write_workflow(tmp_path, "plans", PLANS_WORKFLOW)
    write_workflow(tmp_path, "welcome", WELCOME_WORKFLOW)
    write_workflow(tmp_path, "digest", DIGEST_WORKFLOW)
    write_workflow(tmp_path, "alert", ALERT_WORKFLOW)
    live_server.push_workflows(tmp_path, environment.name)


def feed_bodies(knock: Knock, user_id: str) -> list[str]:
    page = knock.users.feeds.list_items(user_id, IN_APP_FEED_CHANNEL_ID)
    bodies = [entry.blocks[0] for entry in reversed(page.entries)]
    assert all(isinstance(body, MessageInAppFeedContentBlock) for body in bodies)
    return [body.content for body in bodies if isinstance(body, MessageInAppFeedContentBlock)]


def test_a_branch_routes_each_recipient_and_the_run_says_where(knock: Knock, workflows: None) -> None:
    recipients: list[InlineIdentifyUserRequestParam] = [
        {"id": "ada", "plan": "pro"},  # type: ignore[typeddict-unknown-key]  # custom properties are allowed
        {"id": "bob", "plan": "free"},  # type: ignore[typeddict-unknown-key]
    ]
    knock.workflows.trigger("plans", recipients=recipients, data={})
    runs = wait_until(
        lambda: (
            len(r := list(knock.workflow_recipient_runs.list(workflow="plans", status=["completed"]))) == 2
            and r
        )
    )
    assert feed_bodies(knock, "ada") == ["Pro tips", "Your digest"]
    assert feed_bodies(knock, "bob") == ["Try Pro"]  # the default branch terminates
    for run in runs:
        detail = knock.workflow_recipient_runs.get(run.id)
        [taken] = [event for event in detail.events if event.event == "branch_taken"]
        expected = "Pro" if run.recipient == "ada" else "Default"
        assert (taken.step_ref, taken.data) == (
            "by_plan",
            {"branch": expected, "branch_index": int(expected != "Pro")},
        )


def test_a_once_per_recipient_workflow_runs_once(knock: Knock, workflows: None) -> None:
    for _ in range(3):
        knock.workflows.trigger("welcome", recipients=[{"id": "cy"}], data={})
    knock.workflows.trigger("welcome", recipients=[{"id": "cy"}, {"id": "dee"}], data={})
    wait_until(lambda: feed_bodies(knock, "dee"))
    # The worker takes the four triggers in order, some at once: give the last of them time to commit.
    time.sleep(0.5)
    assert feed_bodies(knock, "cy") == ["Welcome"]
    assert len(list(knock.workflow_recipient_runs.list(workflow="welcome", recipient="cy"))) == 1


def test_a_batch_makes_one_message_of_its_window(knock: Knock, workflows: None) -> None:
    for actor, text in [("bob", "one"), ("cy", "two"), ("bob", "three")]:
        knock.workflows.trigger(
            "digest", recipients=[{"id": "eve"}], actor={"id": actor}, data={"text": text}
        )
    wait_until(lambda: feed_bodies(knock, "eve"))
    # Triggers a moment apart join in the order their jobs run, which Knock does not promise either.
    [body] = feed_bodies(knock, "eve")
    heading, texts = body.split(": ")
    assert heading == "3 comments by 2" and sorted(texts.split()) == ["one", "three", "two"]
    [message] = list(knock.users.list_messages("eve"))
    activities = list(knock.messages.list_activities(message.id))
    assert sorted(str((activity.data or {})["text"]) for activity in activities) == ["one", "three", "two"]
    runs = list(knock.workflow_recipient_runs.list(workflow="digest"))
    ended = [knock.workflow_recipient_runs.get(run.id).events[-1] for run in runs]
    reasons = [str((event.data or {}).get("reason")) for event in ended if event.event == "run_ended"]
    assert reasons == ["batched", "batched"]


def test_a_throttle_lets_one_alert_through_an_hour(knock: Knock, workflows: None) -> None:
    for _ in range(3):
        knock.workflows.trigger("alert", recipients=[{"id": "fay"}], data={})
    runs = wait_until(
        lambda: (
            len(r := list(knock.workflow_recipient_runs.list(workflow="alert", status=["completed"]))) == 3
            and r
        )
    )
    assert feed_bodies(knock, "fay") == ["Disk almost full"]
    events = [event.event for run in runs for event in knock.workflow_recipient_runs.get(run.id).events]
    assert events.count("throttle_passed") == 1 and events.count("run_throttled") == 2

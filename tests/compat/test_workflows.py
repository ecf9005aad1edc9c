"""Workflows through the official Knock SDK: trigger for inline users, read the messages and the feed,
mark items seen, read and archived and watch the counts change; cancel; runs; refused triggers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import knockapi
import pytest
from knockapi import Knock
from knockapi.types import MessageInAppFeedContentBlock
from knockapi.types.message_contents import DataMessageInAppFeedContent

from tests.compat.conftest import client_error_or
from tests.compat.live_server import IN_APP_FEED_CHANNEL_ID, EnvironmentKeys, LiveServer
from tests.conftest import write_workflow

RUN_TIMEOUT_SECONDS = 30.0

COMMENT_WORKFLOW = {
    "name": "New comment",
    "categories": ["collaboration"],
    "steps": [
        {
            "ref": "in_app_feed_1",
            "type": "channel",
            "channel_key": "in-app",
            "template": {"markdown_body@": "in_app_feed_1/markdown_body.md", "action_url": "{{ data.url }}"},
        }
    ],
}
DELAYED_WORKFLOW = {
    "steps": [
        {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}},
        COMMENT_WORKFLOW["steps"][0],
    ]
}


def wait_until(condition: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("the workflow's runs did not finish in time")


@pytest.fixture
def workflows(live_server: LiveServer, environment: EnvironmentKeys, tmp_path: Path) -> None:
    body = {"in_app_feed_1/markdown_body.md": "**{{ actor.name }}** commented: {{ data.text }}"}
    write_workflow(tmp_path, "new-comment", COMMENT_WORKFLOW, body)
    write_workflow(tmp_path, "delayed-comment", DELAYED_WORKFLOW, body)
    output = live_server.push_workflows(tmp_path, environment.name)
    assert f"{environment.name}\tnew-comment\tversion 1\tnew version" in output


def feed(knock: Knock, user_id: str, **params: Any) -> Any:
    return knock.users.feeds.list_items(user_id, IN_APP_FEED_CHANNEL_ID, **params)


def test_trigger_then_read_and_engage_with_the_feed(
    knock: Knock, public_knock: Knock, workflows: None
) -> None:
    response = knock.workflows.trigger(
        "new-comment",
        recipients=[{"id": "ada", "name": "Ada", "email": "ada@example.com"}, {"id": "bob", "name": "Bob"}],
        actor={"id": "carol", "name": "Carol"},
        data={"text": "Looks good", "url": "https://example.com/c/1"},
    )
    assert response.workflow_run_id

    page = wait_until(lambda: (p := feed(knock, "ada")).entries and p)
    [item] = page.entries
    assert item.blocks[0].content == "**Carol** commented: Looks good"
    assert item.blocks[0].rendered == "<p><strong>Carol</strong> commented: Looks good</p>"
    assert item.data == {"text": "Looks good", "url": "https://example.com/c/1"}
    assert item.source.key == "new-comment"
    assert item.source.categories == ["collaboration"]
    meta = page.model_extra["meta"]
    assert (meta["total_count"], meta["unread_count"], meta["unseen_count"]) == (1, 1, 1)

    messages = list(knock.users.list_messages("ada"))
    assert [m.id for m in messages] == [item.id]
    assert messages[0].status == "delivered"
    content = knock.messages.get_content(item.id).data
    assert isinstance(content, DataMessageInAppFeedContent)
    body = content.blocks[0]
    assert isinstance(body, MessageInAppFeedContentBlock)
    assert body.content == "**Carol** commented: Looks good"

    seen = public_knock.messages.mark_as_seen(item.id)
    assert seen.engagement_statuses == ["seen"]
    meta = feed(knock, "ada").model_extra["meta"]
    assert (meta["unread_count"], meta["unseen_count"]) == (1, 0)

    read = knock.messages.mark_as_read(item.id)
    assert sorted(read.engagement_statuses) == ["read", "seen"]
    assert feed(knock, "ada").model_extra["meta"]["unread_count"] == 0
    assert [e.id for e in feed(knock, "ada", status="read").entries] == [item.id]

    knock.messages.archive(item.id)
    assert feed(knock, "ada").entries == []
    assert [e.id for e in feed(knock, "ada", archived="only").entries] == [item.id]
    assert feed(knock, "ada").model_extra["meta"]["total_count"] == 0
    knock.messages.unarchive(item.id)
    assert [e.id for e in feed(knock, "ada").entries] == [item.id]

    events = [event.type for event in knock.messages.list_events(item.id)]
    assert events[:4] == ["message.unarchived", "message.archived", "message.read", "message.seen"]

    batch = knock.messages.batch.mark_as_unread(message_ids=[item.id])
    assert batch[0].read_at is None
    assert len(feed(knock, "bob").entries) == 1


def test_runs_are_listed_with_their_events(knock: Knock, workflows: None) -> None:
    knock.workflows.trigger("new-comment", recipients=[{"id": "ada"}], data={"text": "hi", "url": "/"})
    runs = wait_until(
        lambda: (
            (r := list(knock.workflow_recipient_runs.list(workflow="new-comment")))
            and r[0].status == "completed"
            and r
        )
    )
    [run] = runs
    assert run.recipient == "ada"
    detail = knock.workflow_recipient_runs.get(run.id)
    assert [event.event for event in detail.events][-1] == "run_completed"


def test_cancel_stops_a_delayed_run(knock: Knock, workflows: None) -> None:
    knock.workflows.trigger(
        "delayed-comment",
        recipients=[{"id": "ada"}],
        cancellation_key="comment-9",
        data={"text": "x", "url": "/"},
    )
    wait_until(
        lambda: [
            r for r in knock.workflow_recipient_runs.list(workflow="delayed-comment") if r.status == "paused"
        ]
    )
    knock.workflows.cancel("delayed-comment", cancellation_key="comment-9", recipients=["ada"])
    [run] = list(knock.workflow_recipient_runs.list(workflow="delayed-comment"))
    assert run.status == "cancelled"


def test_refused_triggers(knock: Knock, other_knock: Knock, workflows: None) -> None:
    missing = client_error_or(lambda: knock.workflows.trigger("no-such-workflow", recipients=["ada"]))
    assert isinstance(missing, knockapi.NotFoundError)
    assert isinstance(missing.body, dict)
    assert missing.body["code"] == "workflow_missing"
    actor = client_error_or(lambda: knock.workflows.trigger("new-comment", recipients=["ada"], actor="ghost"))
    assert isinstance(actor, knockapi.UnprocessableEntityError)
    assert isinstance(actor.body, dict)
    assert actor.body["code"] == "actor_missing"
    elsewhere = client_error_or(lambda: other_knock.workflows.trigger("new-comment", recipients=["ada"]))
    assert isinstance(elsewhere, knockapi.NotFoundError)
    too_many = client_error_or(lambda: knock.workflows.trigger("new-comment", recipients=["u"] * 1001))
    assert isinstance(too_many, knockapi.UnprocessableEntityError)

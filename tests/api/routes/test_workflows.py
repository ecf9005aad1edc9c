"""Triggering and cancelling workflows (`/v1/workflows/{key}/trigger|cancel`, `/v1/notify`), through to
the runs and messages the worker makes of them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.engine import trigger
from clarion.engine.workflow_jobs import STEP_JOB, TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.jobs.job import Job, JobState, Superseded
from clarion.store.clock import utcnow
from clarion.store.environments import KeyKind
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import jobs, messages
from clarion.store.workflow_runs import RunRecord, RunStatus, insert_runs
from clarion.store.workflows import WorkflowRecord
from tests.conftest import EnvFixture, assert_error, feed_channel_id, push_workflow, run_workflow_jobs

FEED_STEP = {
    "ref": "in_app_feed_1",
    "type": "channel",
    "channel_key": "in-app-feed",
    "template": {
        "markdown_body": "Hi **{{ recipient.name }}**, {{ actor.name | default: 'someone' }} said "
        "{{ data.text }}"
    },
}


def workflow(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "Test", "steps": list(steps) or [FEED_STEP], **fields}


async def feed(env: EnvFixture, user_id: str, **params: Any) -> dict[str, Any]:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def runs_of(env: EnvFixture, workflow_key: str) -> list[dict[str, Any]]:
    response = await env.get("/v1/workflow_recipient_runs", params={"workflow": workflow_key})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_trigger_identifies_inline_recipients_and_puts_a_message_in_each_feed(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    response = await env.post(
        "/v1/workflows/greeting/trigger",
        json={
            "recipients": [
                {"id": "ada", "name": "Ada", "email": "ada@example.com"},
                {"id": "bob", "name": "Bob"},
            ],
            "actor": {"id": "carol", "name": "Carol"},
            "data": {"text": "hello"},
        },
    )
    assert response.status_code == 200, response.text
    workflow_run_id = response.json()["workflow_run_id"]
    assert uuid.UUID(workflow_run_id).version == 4

    await run_workflow_jobs(env.runtime)

    assert (await env.get("/v1/users/ada")).json()["email"] == "ada@example.com"
    assert (await env.get("/v1/users/carol")).json()["name"] == "Carol"
    ada = await feed(env, "ada")
    [item] = ada["entries"]
    assert item["blocks"][0] == {
        "name": "body",
        "type": "markdown",
        "content": "Hi **Ada**, Carol said hello",
        "rendered": "<p>Hi <strong>Ada</strong>, Carol said hello</p>",
    }
    assert item["data"] == {"text": "hello"}
    assert [actor["id"] for actor in item["actors"]] == ["carol"]
    assert item["source"]["key"] == "greeting"
    assert ada["meta"] == {
        "__typename": "FeedMetadata",
        "total_count": 1,
        "unread_count": 1,
        "unseen_count": 1,
    }
    assert (await feed(env, "bob"))["entries"][0]["blocks"][0]["content"] == "Hi **Bob**, Carol said hello"

    runs = await runs_of(env, "greeting")
    assert sorted(run["recipient"] for run in runs) == ["ada", "bob"]
    assert {run["workflow_run_id"] for run in runs} == {workflow_run_id}
    assert {run["status"] for run in runs} == {"completed"}
    assert {run["actor"] for run in runs} == {"carol"}


async def test_html_in_trigger_data_reaches_the_feed_as_text_never_as_markup(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    attack = "<img src=x onerror=alert(1)> [link](javascript:alert(2))"
    response = await env.post(
        "/v1/workflows/greeting/trigger",
        json={"recipients": [{"id": "ada", "name": "<b>Ada</b>"}], "data": {"text": attack}},
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    [item] = (await feed(env, "ada"))["entries"]
    assert item["blocks"][0]["rendered"] == (
        "<p>Hi <strong>&lt;b&gt;Ada&lt;/b&gt;</strong>, someone said "
        "&lt;img src=x onerror=alert(1)&gt; [link](javascript:alert(2))</p>"
    )
    assert item["data"] == {"text": attack}, "the data itself is kept as sent"


async def test_recipient_trigger_data_is_merged_over_the_data_for_that_recipient_only(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    await env.post(
        "/v1/workflows/greeting/trigger",
        json={
            "recipients": [{"id": "ada", "$trigger_data": {"text": "just for Ada"}}, {"id": "bob"}],
            "data": {"text": "for everyone"},
        },
    )
    await run_workflow_jobs(env.runtime)
    assert (await feed(env, "ada"))["entries"][0]["data"] == {"text": "just for Ada"}
    assert (await feed(env, "bob"))["entries"][0]["data"] == {"text": "for everyone"}
    assert "$trigger_data" not in (await env.get("/v1/users/ada")).json()


async def test_the_trigger_data_reaches_the_messages_exactly_as_sent(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    data = {"text": "über", "order": 123456789012345678901234567890, "ratio": 0.1, "tags": [None, True, {}]}
    await env.put("/v1/users/ada", json={"name": "Ada"})
    response = await env.post("/v1/workflows/greeting/trigger", json={"recipients": ["ada"], "data": data})
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    assert (await feed(env, "ada"))["entries"][0]["data"] == data


async def test_object_recipients_fan_out_to_their_subscribers_once_and_never_to_the_actor(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    await env.put("/v1/objects/projects/apollo", json={"name": "Apollo"})
    await env.put("/v1/objects/teams/core", json={"name": "Core"})
    added = await env.post(
        "/v1/objects/projects/apollo/subscriptions",
        json={
            "recipients": [{"id": "ada"}, {"id": "carol"}, {"id": "core", "collection": "teams"}],
            "properties": {"role": "owner"},
        },
    )
    assert added.status_code == 200, added.text
    await env.post("/v1/objects/teams/core/subscriptions", json={"recipients": [{"id": "bob"}, "ada"]})

    response = await env.post(
        "/v1/workflows/greeting/trigger",
        json={
            "recipients": [{"id": "apollo", "collection": "projects"}],
            "actor": "carol",
            "data": {"text": "x"},
        },
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)

    runs = await runs_of(env, "greeting")
    recipients = sorted(str(run["recipient"]) for run in runs)
    assert recipients == sorted(
        [
            "ada",
            "bob",
            str({"collection": "projects", "id": "apollo"}),
            str({"collection": "teams", "id": "core"}),
        ]
    )
    assert (await feed(env, "carol"))["entries"] == []
    assert len((await feed(env, "ada"))["entries"]) == 1


async def test_a_subscriber_sees_its_subscription_in_the_template(env: EnvFixture, tmp_path: Path) -> None:
    step = {
        **FEED_STEP,
        "template": {
            "markdown_body": "{{ recipient.subscription.properties.role }} of "
            "{{ recipient.subscription.object.id }}"
        },
    }
    await push_workflow(env, tmp_path, "roles", workflow(step))
    await env.put("/v1/objects/projects/apollo", json={})
    await env.post(
        "/v1/objects/projects/apollo/subscriptions",
        json={"recipients": [{"id": "ada"}], "properties": {"role": "owner"}},
    )
    await env.post(
        "/v1/workflows/roles/trigger", json={"recipients": [{"id": "apollo", "collection": "projects"}]}
    )
    await run_workflow_jobs(env.runtime)
    assert (await feed(env, "ada"))["entries"][0]["blocks"][0]["content"] == "owner of apollo"


async def test_a_tenant_given_inline_is_set_and_tags_the_messages(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    await env.post(
        "/v1/workflows/greeting/trigger",
        json={"recipients": [{"id": "ada"}], "tenant": {"id": "acme", "name": "Acme"}, "data": {"text": "x"}},
    )
    await env.post("/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}], "tenant": "globex"})
    await run_workflow_jobs(env.runtime)
    assert (await env.get("/v1/tenants/acme")).json()["name"] == "Acme"
    assert (await env.get("/v1/tenants/globex")).status_code == 200
    entries = (await feed(env, "ada"))["entries"]
    assert sorted(entry["tenant"] for entry in entries) == ["acme", "globex"]


async def test_trigger_conditions_and_step_conditions(env: EnvFixture, tmp_path: Path) -> None:
    gated = {
        **FEED_STEP,
        "conditions": {"all": [{"variable": "recipient.plan", "operator": "equal_to", "argument": "pro"}]},
    }
    await push_workflow(
        env,
        tmp_path,
        "gated",
        workflow(
            gated, conditions={"all": [{"variable": "data.send", "operator": "equal_to", "argument": "true"}]}
        ),
    )
    await env.post(
        "/v1/workflows/gated/trigger",
        json={
            "recipients": [{"id": "ada", "plan": "pro"}, {"id": "bob", "plan": "free"}],
            "data": {"send": True},
        },
    )
    await env.post(
        "/v1/workflows/gated/trigger", json={"recipients": [{"id": "ada"}], "data": {"send": False}}
    )
    await run_workflow_jobs(env.runtime)
    assert len((await feed(env, "ada"))["entries"]) == 1
    assert (await feed(env, "bob"))["entries"] == []
    details = [
        (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
        for run in await runs_of(env, "gated")
    ]
    reasons = sorted(
        event["data"].get("reason", "")
        for detail in details
        for event in detail["events"]
        if event["event"] in ("step_skipped", "run_ended")
    )
    assert reasons == ["conditions_not_met", "trigger_conditions_not_met"]


async def test_preferences_opting_out_skip_the_step(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow(categories=["social"]))
    await env.put("/v1/users/ada/preferences/default", json={"categories": {"social": False}})
    await env.put("/v1/users/bob/preferences/default", json={"channel_types": {"in_app_feed": False}})
    await env.put("/v1/users/cy/preferences/default", json={"workflows": {"greeting": True}})
    await env.post("/v1/workflows/greeting/trigger", json={"recipients": ["ada", "bob", "cy"]})
    await run_workflow_jobs(env.runtime)
    assert (await feed(env, "ada"))["entries"] == []
    assert (await feed(env, "bob"))["entries"] == []
    assert len((await feed(env, "cy"))["entries"]) == 1


async def test_an_email_step_needs_an_address_and_renders_the_email(env: EnvFixture, tmp_path: Path) -> None:
    email = {
        "ref": "email_1",
        "type": "channel",
        "channel_key": "email",
        "template": {"subject": "Hello {{ recipient.name }}", "html_body": "<p>{{ data.text }}</p>"},
    }
    await push_workflow(env, tmp_path, "mail", workflow(email))
    await env.post(
        "/v1/workflows/mail/trigger",
        json={
            "recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"}, {"id": "bob"}],
            "data": {"text": "hi"},
        },
    )
    await run_workflow_jobs(env.runtime)
    messages = (await env.get("/v1/messages", params={"source": "mail"})).json()["items"]
    [message] = messages
    assert message["recipient"] == "ada"
    assert message["status"] == "queued"
    content = (await env.get(f"/v1/messages/{message['id']}/content")).json()
    assert content["data"]["subject_line"] == "Hello Ada"
    assert content["data"]["html_body"] == "<p>hi</p>"
    assert content["data"]["to"] == "ada@example.com"
    [bob] = [run for run in await runs_of(env, "mail") if run["recipient"] == "bob"]
    detail = (await env.get(f"/v1/workflow_recipient_runs/{bob['id']}")).json()
    assert [e["data"]["reason"] for e in detail["events"] if e["event"] == "step_skipped"] == [
        "missing_channel_data"
    ]


async def test_a_delay_pauses_the_run_until_its_job_is_due(env: EnvFixture, tmp_path: Path) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}
    await push_workflow(env, tmp_path, "later", workflow(delay, FEED_STEP))
    await env.post("/v1/workflows/later/trigger", json={"recipients": [{"id": "ada"}], "data": {"text": "x"}})
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [run] = await runs_of(env, "later")
    assert run["status"] == "paused"
    assert (await feed(env, "ada"))["entries"] == []
    await run_workflow_jobs(env.runtime)
    assert (await runs_of(env, "later"))[0]["status"] == "completed"
    assert len((await feed(env, "ada"))["entries"]) == 1


async def test_skip_delay_and_sandbox_mode(env: EnvFixture, tmp_path: Path) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "days", "value": 3}}}
    await push_workflow(env, tmp_path, "later", workflow(delay, FEED_STEP))
    await env.post(
        "/v1/workflows/later/trigger",
        json={"recipients": [{"id": "ada"}], "settings": {"skip_delay": True, "sandbox_mode": True}},
    )
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [message] = (await env.get("/v1/users/ada/messages")).json()["items"]
    assert message["status"] == "not_sent"


async def test_cancel_stops_runs_waiting_at_a_later_step(env: EnvFixture, tmp_path: Path) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "minutes", "value": 5}}}
    await push_workflow(env, tmp_path, "later", workflow(delay, FEED_STEP))
    for recipients, key in (([{"id": "ada"}, {"id": "bob"}], "order-1"), ([{"id": "ada"}], "order-2")):
        response = await env.post(
            "/v1/workflows/later/trigger", json={"recipients": recipients, "cancellation_key": key}
        )
        assert response.status_code == 200
    await run_workflow_jobs(env.runtime, with_scheduled=False)

    cancelled = await env.post(
        "/v1/workflows/later/cancel", json={"cancellation_key": "order-1", "recipients": ["ada"]}
    )
    assert cancelled.status_code == 204, cancelled.text
    assert cancelled.content == b""
    await run_workflow_jobs(env.runtime)

    runs = await runs_of(env, "later")
    states = sorted(
        (run["trigger_source"]["cancellation_key"], run["recipient"], run["status"]) for run in runs
    )
    assert states == [
        ("order-1", "ada", "cancelled"),
        ("order-1", "bob", "completed"),
        ("order-2", "ada", "completed"),
    ]
    assert len((await feed(env, "ada"))["entries"]) == 1


async def test_legacy_notify_and_its_cancel(env: EnvFixture, tmp_path: Path) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "minutes", "value": 5}}}
    await push_workflow(env, tmp_path, "later", workflow(delay, FEED_STEP))
    await env.put("/v1/users/carol", json={"name": "Carol"})
    response = await env.post(
        "/v1/notify",
        json={"name": "later", "actor": "carol", "recipients": ["carol"], "cancellation_key": "k"},
    )
    assert response.status_code == 200, response.text
    assert uuid.UUID(response.json()["result_id"])
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    cancelled = await env.post("/v1/notify/cancel", json={"name": "later", "cancellation_key": "k"})
    assert cancelled.status_code == 204
    await run_workflow_jobs(env.runtime)
    assert [run["status"] for run in await runs_of(env, "later")] == ["cancelled"]


async def test_an_idempotency_key_replays_the_first_response_and_runs_once(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    body = {"recipients": [{"id": "ada"}], "data": {"text": "once"}}
    headers = {"Idempotency-Key": "order-42"}
    first = await env.post("/v1/workflows/greeting/trigger", json=body, headers=headers)
    second = await env.post("/v1/workflows/greeting/trigger", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    # The same request written otherwise (keys reordered, spaced out) is the same request.
    rewritten = b'{ "data": {"text": "once"},\n  "recipients": [ {"id": "ada"} ] }'
    third = await env.post(
        "/v1/workflows/greeting/trigger",
        content=rewritten,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert third.status_code == 200, third.text
    assert third.json() == first.json()
    assert third.headers["idempotent-replayed"] == "true"
    other = await env.post(
        "/v1/workflows/greeting/trigger", json={**body, "data": {"text": "twice"}}, headers=headers
    )
    assert_error(other, 422, "invalid_params")
    too_long = await env.post(
        "/v1/workflows/greeting/trigger", json=body, headers={"Idempotency-Key": "k" * 256}
    )
    assert_error(too_long, 422, "invalid_params")
    await run_workflow_jobs(env.runtime)
    assert len((await feed(env, "ada"))["entries"]) == 1


async def test_unknown_and_inactive_workflows_and_unknown_actors(env: EnvFixture, tmp_path: Path) -> None:
    missing = await env.post("/v1/workflows/nope/trigger", json={"recipients": [{"id": "ada"}]})
    assert_error(missing, 404, "workflow_missing")
    await push_workflow(env, tmp_path, "greeting", workflow())
    unknown_actor = await env.post(
        "/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}], "actor": "ghost"}
    )
    assert_error(unknown_actor, 422, "actor_missing")
    assert await env.runtime.workflows.store.set_active(env.id, "greeting", False)
    env.runtime.workflows.forget(env.id, "greeting")
    inactive = await env.post("/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}]})
    assert_error(inactive, 422, "workflow_inactive")
    await run_workflow_jobs(env.runtime)
    assert await runs_of(env, "greeting") == []


async def test_triggers_arriving_together_share_one_lookup_of_their_workflow(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    store = env.runtime.workflows.store
    looked_up = 0
    get = store.get

    async def counted_get(environment_id: str, key: str) -> WorkflowRecord | None:
        nonlocal looked_up
        looked_up += 1
        return await get(environment_id, key)

    monkeypatch.setattr(store, "get", counted_get)
    env.runtime.workflows.forget(env.id, "greeting")
    responses = await asyncio.gather(
        *(env.post("/v1/workflows/greeting/trigger", json={"recipients": [f"u{n}"]}) for n in range(10))
    )
    assert [response.status_code for response in responses] == [200] * 10
    assert looked_up == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "recipients"),
        ({"recipients": "ada"}, "recipients"),
        ({"recipients": ["ada"] * 1001}, "recipients"),
        ({"recipients": [42]}, "recipients.0"),
        ({"recipients": [{"name": "no id"}]}, "recipients.0.user.id"),
        ({"recipients": [{"id": "p", "collection": "bad/collection"}]}, "recipients.0.object.collection"),
        ({"recipients": [{"id": "ada", "$trigger_data": [1]}]}, "recipients.0.$trigger_data"),
        ({"recipients": [{"id": "ada"}], "data": "text"}, "data"),
        ({"recipients": [{"id": "ada"}], "cancellation_key": ""}, "cancellation_key"),
        ({"recipients": [{"id": "ada"}], "settings": {"sandbox_mode": "yes"}}, "settings.sandbox_mode"),
        ({"recipients": [{"id": "ada"}], "tenant": 7}, "tenant"),
    ],
)
async def test_bad_triggers_are_refused_and_nothing_runs(
    env: EnvFixture, tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    response = await env.post("/v1/workflows/greeting/trigger", json=body)
    error = assert_error(response, 422, "invalid_params")
    assert any(e["field"].startswith(field) for e in error["errors"]), error
    await run_workflow_jobs(env.runtime)
    assert await runs_of(env, "greeting") == []
    assert (await env.get("/v1/users/ada")).status_code == 404


async def test_trigger_data_is_checked_against_the_workflow_schema(env: EnvFixture, tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
    await push_workflow(env, tmp_path, "typed", workflow(trigger_data_json_schema=schema))
    refused = await env.post(
        "/v1/workflows/typed/trigger", json={"recipients": [{"id": "ada"}], "data": {"text": 5}}
    )
    error = assert_error(refused, 422, "invalid_params")
    assert error["errors"][0]["field"] == "data.text"
    accepted = await env.post(
        "/v1/workflows/typed/trigger", json={"recipients": [{"id": "ada"}], "data": {"text": "ok"}}
    )
    assert accepted.status_code == 200


async def test_a_template_error_is_retried_then_halts_the_run_with_the_error(
    env: EnvFixture, tmp_path: Path
) -> None:
    broken = {**FEED_STEP, "template": {"markdown_body": "{{ data.when | date: 5, 6, 7 }}"}}
    await push_workflow(env, tmp_path, "broken", workflow(broken))
    await env.post(
        "/v1/workflows/broken/trigger", json={"recipients": [{"id": "ada"}], "data": {"when": "2024-01-01"}}
    )
    await run_workflow_jobs(env.runtime)
    [run] = await runs_of(env, "broken")
    assert run["status"] == "completed"
    assert run["error_count"] == 1
    detail = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
    [failure] = [event for event in detail["events"] if event["status"] == "error"]
    assert failure["event"] == "step_failed"
    assert failure["attempt"] == 3
    assert "in_app_feed_1.markdown_body" in failure["data"]["error"]
    assert (await feed(env, "ada"))["entries"] == []


async def test_triggering_needs_a_secret_key_and_sees_only_its_environment(
    env: EnvFixture, other_env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    publishable = await env.post(
        "/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}]}, kind=KeyKind.PUBLISHABLE
    )
    assert_error(publishable, 403, "incorrect_token_type")
    elsewhere = await other_env.post("/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}]})
    assert_error(elsewhere, 404, "workflow_missing")
    await env.post("/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}]})
    await run_workflow_jobs(env.runtime)
    assert len(await runs_of(env, "greeting")) == 1
    assert await runs_of(other_env, "greeting") == []
    assert (await other_env.get("/v1/messages")).json()["items"] == []
    assert (await feed(other_env, "ada"))["entries"] == []


async def test_a_run_for_a_user_never_identified_ends_without_a_message(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    response = await env.post("/v1/workflows/greeting/trigger", json={"recipients": ["ghost"]})
    assert response.status_code == 200
    await run_workflow_jobs(env.runtime)
    [run] = await runs_of(env, "greeting")
    assert run["status"] == "completed"
    detail = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
    assert [e["data"] for e in detail["events"] if e["event"] == "run_ended"] == [
        {"reason": "recipient_missing"}
    ]
    assert (await env.get("/v1/users/ghost/messages")).json()["items"] == []


async def test_a_run_keeps_the_version_it_was_triggered_with(env: EnvFixture, tmp_path: Path) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "minutes", "value": 5}}}

    def version(text: str) -> dict[str, Any]:
        return workflow(delay, {**FEED_STEP, "template": {"markdown_body": text}})

    await push_workflow(env, tmp_path, "versioned", version("first version"))
    await env.post("/v1/workflows/versioned/trigger", json={"recipients": [{"id": "ada"}]})
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    await push_workflow(env, tmp_path, "versioned", version("second version"))
    await env.post("/v1/workflows/versioned/trigger", json={"recipients": [{"id": "bob"}]})
    await run_workflow_jobs(env.runtime)
    assert (await feed(env, "ada"))["entries"][0]["blocks"][0]["content"] == "first version"
    assert (await feed(env, "bob"))["entries"][0]["blocks"][0]["content"] == "second version"
    versions = {
        entry["source"]["version_id"] for u in ("ada", "bob") for entry in (await feed(env, u))["entries"]
    }
    assert len(versions) == 2


async def test_a_schema_that_cannot_be_applied_refuses_the_trigger_with_a_4xx(
    env: EnvFixture, tmp_path: Path
) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/definitions/nowhere"}}}
    await push_workflow(env, tmp_path, "refs", workflow(trigger_data_json_schema=schema))
    response = await env.post(
        "/v1/workflows/refs/trigger", json={"recipients": [{"id": "ada"}], "data": {"a": 1}}
    )
    error = assert_error(response, 422, "invalid_params")
    assert "cannot be applied" in error["message"]


async def test_a_step_whose_conditions_fail_is_skipped_whatever_its_type(
    env: EnvFixture, tmp_path: Path
) -> None:
    never = {"all": [{"variable": "data.wait", "operator": "equal_to", "argument": "true"}]}
    delay = {
        "ref": "delay_1",
        "type": "delay",
        "conditions": never,
        "settings": {"delay_for": {"unit": "days", "value": 1}},
    }
    await push_workflow(env, tmp_path, "maybe-later", workflow(delay, FEED_STEP))
    await env.post(
        "/v1/workflows/maybe-later/trigger", json={"recipients": [{"id": "ada"}], "data": {"wait": False}}
    )
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [run] = await runs_of(env, "maybe-later")
    assert run["status"] == "completed"
    assert len((await feed(env, "ada"))["entries"]) == 1
    detail = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
    skipped = [(e["step_ref"], e["data"]["reason"]) for e in detail["events"] if e["event"] == "step_skipped"]
    assert skipped == [("delay_1", "conditions_not_met")]


async def test_runs_are_filtered_by_an_object_recipient_as_the_sdks_encode_it(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    await env.post(
        "/v1/workflows/greeting/trigger",
        json={"recipients": [{"id": "ada"}, {"id": "apollo", "collection": "projects", "name": "Apollo"}]},
    )
    await run_workflow_jobs(env.runtime)
    by_object = await env.get(
        "/v1/workflow_recipient_runs", params={"recipient[id]": "apollo", "recipient[collection]": "projects"}
    )
    assert [run["recipient"] for run in by_object.json()["items"]] == [
        {"collection": "projects", "id": "apollo"}
    ]
    by_user = await env.get("/v1/workflow_recipient_runs", params={"recipient": "ada"})
    assert [run["recipient"] for run in by_user.json()["items"]] == ["ada"]
    half = await env.get("/v1/workflow_recipient_runs", params={"recipient[id]": "apollo"})
    assert_error(half, 422, "invalid_params")


async def test_a_chat_message_keeps_its_rendered_body(env: EnvFixture, tmp_path: Path) -> None:
    chat = {
        "ref": "chat_1",
        "type": "channel",
        "channel_key": "slack",
        "template": {
            "markdown_body": "*{{ data.text }}*",
            "summary": "New: {{ data.text }}",
            "json_body": '{"text": "{{ data.text }}"}',
        },
    }
    await push_workflow(env, tmp_path, "chat", workflow(chat))
    connection = {"incoming_webhook": {"url": "https://hooks.example.com/T/B/x"}}
    slack = env.runtime.channels.by_key("slack")
    assert slack is not None
    await env.put("/v1/users/ada", json={})
    put = await env.put(
        f"/v1/users/ada/channel_data/{slack.id}", json={"data": {"connections": [connection]}}
    )
    assert put.status_code == 200, put.text
    await env.post("/v1/workflows/chat/trigger", json={"recipients": ["ada"], "data": {"text": "hello"}})
    await run_workflow_jobs(env.runtime)
    [message] = (await env.get("/v1/users/ada/messages")).json()["items"]
    content = (await env.get(f"/v1/messages/{message['id']}/content")).json()["data"]
    assert content["__typename"] == "MessageChatContent"
    assert content["connection"] == connection
    assert content["template"]["summary"] == "New: hello"
    assert content["template"]["json_content"] == {"text": "hello"}
    assert content["template"]["blocks"][0]["content"] == "*hello*"


async def test_a_queued_trigger_that_no_longer_passes_its_checks_is_cancelled_not_retried(
    env: EnvFixture, tmp_path: Path
) -> None:
    # As if the channels file had lost the channel after the trigger was accepted.
    await push_workflow(env, tmp_path, "greeting", workflow())
    current = await env.runtime.workflows.current(env.id, "greeting")
    assert current is not None
    gone = "00000000-0000-4000-8000-00000000dead"
    request = {"recipients": [{"id": "ada", "channel_data": {gone: {"tokens": ["t"]}}}]}
    queued = await env.runtime.queue.enqueue(
        Job(
            kind=TRIGGER_JOB,
            queue=WORKFLOW_QUEUE,
            args={
                "environment_id": env.id,
                "workflow_run_id": str(uuid.uuid4()),
                "workflow_key": "greeting",
                "version_id": current.version_id,
                "trigger_source": "api",
                "request": request,
            },
        )
    )
    await run_workflow_jobs(env.runtime)
    finished = await env.runtime.queue.get(queued.id)
    assert finished is not None
    assert finished.state is JobState.CANCELLED
    assert finished.attempt == 1
    assert "no longer passes its checks" in finished.errors[-1]["error"]
    assert await runs_of(env, "greeting") == []


@pytest.mark.parametrize(
    ("until", "skipped"),
    [
        ("2099-01-01T00:00:00Z", True),
        ("2000-01-01T00:00:00Z", True),
        ({"unit": "hours", "value": 2}, False),
        ({"frequency": "daily", "hours": 9}, False),  # a window rule: the next 9:00
        ({"frequency": "fortnightly"}, True),
    ],
)
async def test_a_dynamic_delay_waits_only_for_a_time_within_a_year(
    env: EnvFixture, tmp_path: Path, until: Any, skipped: bool
) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_until_field_path": "data.until"}}
    await push_workflow(env, tmp_path, "dynamic", workflow(delay, FEED_STEP))
    await env.post(
        "/v1/workflows/dynamic/trigger", json={"recipients": [{"id": "ada"}], "data": {"until": until}}
    )
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [run] = await runs_of(env, "dynamic")
    assert run["status"] == ("completed" if skipped else "paused")
    detail = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
    reasons = [e["data"]["reason"] for e in detail["events"] if e["event"] == "step_skipped"]
    assert reasons == (["invalid_delay"] if skipped else [])


async def test_a_fan_out_larger_than_a_transaction_starts_every_run_once(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trigger, "RUNS_PER_TRANSACTION", 2)
    await push_workflow(env, tmp_path, "greeting", workflow())
    await env.put("/v1/objects/projects/apollo", json={})
    subscribers = [{"id": f"sub-{n}"} for n in range(5)]
    await env.post("/v1/objects/projects/apollo/subscriptions", json={"recipients": subscribers})
    response = await env.post(
        "/v1/workflows/greeting/trigger",
        json={
            "recipients": [{"id": "ada"}, {"id": "apollo", "collection": "projects"}],
            "data": {"text": "x"},
        },
    )
    assert response.status_code == 200
    await run_workflow_jobs(env.runtime)
    runs = await runs_of(env, "greeting")
    assert len(runs) == 7
    assert {run["status"] for run in runs} == {"completed"}
    for n in range(5):
        assert len((await feed(env, f"sub-{n}"))["entries"]) == 1


async def test_a_fan_out_attempt_that_lost_its_job_commits_no_chunk(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker stalled past its lease while another took the job over: its next chunk's transaction finds
    the job no longer its attempt's and writes nothing; the attempt that holds the job starts every run."""
    monkeypatch.setattr(trigger, "RUNS_PER_TRANSACTION", 2)
    await push_workflow(env, tmp_path, "greeting", workflow())
    recipients = [{"id": f"user-{n}"} for n in range(5)]
    response = await env.post("/v1/workflows/greeting/trigger", json={"recipients": recipients, "data": {}})
    assert response.status_code == 200, response.text
    runtime = env.runtime
    [stale] = await runtime.queue.claim(WORKFLOW_QUEUE, 1, "stalled-worker", 60)
    async with runtime.database.writer.begin() as connection:  # as a rescue leaves it
        await connection.execute(
            jobs.update().where(jobs.c.id == stale.id).values(state=JobState.AVAILABLE.value)
        )
    with pytest.raises(Superseded):
        await trigger.start_runs(runtime, stale)
    assert await runs_of(env, "greeting") == []

    await run_workflow_jobs(runtime)
    runs = await runs_of(env, "greeting")
    assert sorted(run["recipient"] for run in runs) == [f"user-{n}" for n in range(5)]


async def test_a_trigger_job_run_again_starts_only_the_recipients_without_a_run(
    env: EnvFixture, tmp_path: Path
) -> None:
    """As after a crash between a large fan-out's transactions: one recipient already has its run (here
    written beforehand, without messages), so the job inserts the other's run and messages alone."""
    await push_workflow(env, tmp_path, "greeting", workflow())
    response = await env.post(
        "/v1/workflows/greeting/trigger",
        json={"recipients": [{"id": "ada"}, {"id": "bob"}], "data": {"text": "x"}},
    )
    workflow_run_id = response.json()["workflow_run_id"]
    current = await env.runtime.workflows.current(env.id, "greeting")
    assert current is not None
    now = utcnow()
    started = RunRecord(
        id=str(uuid.uuid4()),
        environment_id=env.id,
        workflow_run_id=workflow_run_id,
        workflow_key="greeting",
        version_id=current.version_id,
        recipient=RecipientKey.user("bob"),
        actor=None,
        tenant=None,
        cancellation_key=None,
        data={"text": "x"},
        settings={},
        trigger_source="api",
        status=RunStatus.COMPLETED,
        position=None,
        step_results={},
        events=(),
        error_count=0,
        inserted_at=now,
        updated_at=now,
    )
    async with env.runtime.database.writer.begin() as connection:
        assert await insert_runs(connection, env.id, [started]) == [started.id]
    await run_workflow_jobs(env.runtime)
    runs = {run["recipient"]: run for run in await runs_of(env, "greeting")}
    assert runs["bob"]["id"] == started.id
    assert len((await feed(env, "ada"))["entries"]) == 1
    assert (await feed(env, "bob"))["entries"] == []
    async with env.runtime.database.reader.connect() as connection:
        made = (
            await connection.execute(sa.select(messages.c.run_id).where(messages.c.environment_id == env.id))
        ).all()
    assert [run_id for (run_id,) in made] == [runs["ada"]["id"]]


async def step_jobs(env: EnvFixture) -> list[tuple[str, str]]:
    """(position, state) of each step job of the environment's runs."""
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(sa.select(jobs.c.args, jobs.c.state).where(jobs.c.kind == STEP_JOB))
        return sorted(
            (row.args["position"], row.state) for row in rows if row.args["environment_id"] == env.id
        )


async def test_steps_that_take_no_time_run_in_the_trigger_job_and_a_waiting_step_gets_one_job(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    await env.post(
        "/v1/workflows/greeting/trigger",
        json={"recipients": [{"id": "ada"}, {"id": "bob"}], "data": {"text": "x"}},
    )
    await run_workflow_jobs(env.runtime)
    assert {run["status"] for run in await runs_of(env, "greeting")} == {"completed"}
    assert await step_jobs(env) == []

    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}
    await push_workflow(env, tmp_path, "later", workflow(FEED_STEP, delay, {**FEED_STEP, "ref": "feed_2"}))
    await env.post("/v1/workflows/later/trigger", json={"recipients": [{"id": "ada"}], "data": {"text": "x"}})
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await step_jobs(env) == [("2", "scheduled")]
    await run_workflow_jobs(env.runtime)
    assert await step_jobs(env) == [("2", "completed")]
    assert len((await feed(env, "ada"))["entries"]) == 3


async def test_a_delay_as_the_last_step_holds_the_run_open_until_it_is_over(
    env: EnvFixture, tmp_path: Path
) -> None:
    delay = {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}
    await push_workflow(env, tmp_path, "cooling", workflow(FEED_STEP, delay))
    await env.post(
        "/v1/workflows/cooling/trigger", json={"recipients": [{"id": "ada"}], "data": {"text": "x"}}
    )
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    [run] = await runs_of(env, "cooling")
    assert run["status"] == "paused"
    await run_workflow_jobs(env.runtime)
    [run] = await runs_of(env, "cooling")
    assert run["status"] == "completed"
    detail = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
    assert [event["event"] for event in detail["events"]] == [
        "run_started",
        "message_created",
        "delay_started",
        "run_completed",
    ]
    [delay_event] = [event for event in detail["events"] if event["event"] == "delay_started"]
    waited_until = datetime.fromisoformat(delay_event["data"]["until"].replace("Z", "+00:00"))
    started = datetime.fromisoformat(run["inserted_at"].replace("Z", "+00:00"))
    assert delay_event["data"]["seconds"] == 3600
    assert timedelta(minutes=59) < waited_until - started < timedelta(minutes=61)


async def test_one_recipient_whose_template_fails_holds_back_no_other(
    env: EnvFixture, tmp_path: Path
) -> None:
    dividing = {**FEED_STEP, "template": {"markdown_body": "{{ data.n | divided_by: data.d }}"}}
    await push_workflow(env, tmp_path, "dividing", workflow(dividing))
    recipients = [{"id": "ada", "$trigger_data": {"d": 2}}, {"id": "bob", "$trigger_data": {"d": 0}}]
    response = await env.post(
        "/v1/workflows/dividing/trigger", json={"recipients": recipients, "data": {"n": 8}}
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    [entry] = (await feed(env, "ada"))["entries"]
    assert entry["blocks"][0]["content"] == "4"
    assert (await feed(env, "bob"))["entries"] == []
    runs = {run["recipient"]: run for run in await runs_of(env, "dividing")}
    assert (runs["ada"]["status"], runs["ada"]["error_count"]) == ("completed", 0)
    assert (runs["bob"]["status"], runs["bob"]["error_count"]) == ("completed", 1)
    detail = (await env.get(f"/v1/workflow_recipient_runs/{runs['bob']['id']}")).json()
    assert [event["event"] for event in detail["events"]] == ["run_started", "step_failed"]
    assert "divide by 0" in detail["events"][-1]["data"]["error"]


async def test_a_later_step_reads_the_status_of_a_message_made_in_the_same_pass(
    env: EnvFixture, tmp_path: Path
) -> None:
    follow_up = {
        **FEED_STEP,
        "ref": "feed_2",
        "template": {"markdown_body": "second"},
        "conditions": {
            "all": [
                {
                    "variable": "refs.in_app_feed_1.delivery_status",
                    "operator": "equal_to",
                    "argument": "$message.delivered",
                }
            ]
        },
    }
    unseen = {
        **FEED_STEP,
        "ref": "feed_3",
        "template": {"markdown_body": "third"},
        "conditions": {
            "all": [
                {
                    "variable": "refs.in_app_feed_1.engagement_status",
                    "operator": "equal_to",
                    "argument": "$message.seen",
                }
            ]
        },
    }
    first = {**FEED_STEP, "template": {"markdown_body": "first"}}
    await push_workflow(env, tmp_path, "chained", workflow(first, follow_up, unseen))
    await env.post(
        "/v1/workflows/chained/trigger", json={"recipients": [{"id": "ada"}], "data": {"text": "x"}}
    )
    await run_workflow_jobs(env.runtime)
    entries = (await feed(env, "ada"))["entries"]
    assert [entry["blocks"][0]["content"] for entry in entries] == ["second", "first"]


async def test_run_event_ids_are_distinct_and_the_same_on_every_read(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "greeting", workflow())
    body = {"recipients": [{"id": "ada"}, {"id": "bob"}], "data": {"text": "x"}}
    assert (await env.post("/v1/workflows/greeting/trigger", json=body)).status_code == 200
    await run_workflow_jobs(env.runtime)
    reads = [
        [
            event["id"]
            for run in await runs_of(env, "greeting")
            for event in (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()["events"]
        ]
        for _ in range(2)
    ]
    assert reads[0] == reads[1]
    assert len(set(reads[0])) == len(reads[0]) == 6
    assert all(len(event_id) == 27 and event_id.isalnum() for event_id in reads[0])

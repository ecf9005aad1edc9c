"""Bulk updates of a channel's messages (`POST /v1/channels/{channel_id}/messages/bulk/{action}`): each
action changes exactly the messages its filters select, through a bulk operation polled to `completed`, with
one event per message changed; bad requests queue nothing; other environments and channels are untouched."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from clarion.engine.bulk import (
    BULK_HANDLERS,
    BulkKind,
    ChunkResult,
    update_channel_messages,
)
from clarion.jobs.job import JobState
from clarion.runtime import Runtime
from clarion.store.environments import KeyKind
from clarion.store.pagination import PageRequest
from tests.api.routes.test_bulk_operations import completed, run_bulk_jobs
from tests.conftest import EnvFixture, assert_error, feed_channel_id, push_workflow, run_workflow_jobs

ALL = {0, 1, 2, 3, 4}
EVENTS = {
    "seen": "message.seen",
    "unseen": "message.unseen",
    "read": "message.read",
    "unread": "message.unread",
    "archived": "message.archived",
    "archive": "message.archived",
    "unarchived": "message.unarchived",
    "unarchive": "message.unarchived",
    "interacted": "message.interacted",
}
"""Each engagement action and the event it records."""
UNDOES = {"unseen": "seen", "unread": "read", "unarchived": "archived", "unarchive": "archived"}
"""The actions that take a status back, and the status they take back."""


def workflow(*, email: bool) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {
            "ref": "in_app_feed_1",
            "type": "channel",
            "channel_key": "in-app-feed",
            "template": {"markdown_body": "Item {{ data.n }}"},
        }
    ]
    if email:
        steps.append(
            {
                "ref": "email_1",
                "type": "channel",
                "channel_key": "email",
                "template": {"subject": "Item {{ data.n }}", "html_body": "<p>{{ data.n }}</p>"},
            }
        )
    return {"steps": steps}


TRIGGERS = [
    # (n, workflow, recipient, tenant)
    (0, "alpha", "ada", None),
    (1, "alpha", "ada", "acme"),
    (2, "beta", "ada", "globex"),
    (3, "alpha", "bob", None),
    (4, "beta", "bob", "acme"),
]


async def make_messages(env: EnvFixture, tmp_path: Path) -> dict[int, str]:
    """The in-app messages of TRIGGERS, made in order, by `n`. `alpha` also emails its recipient."""
    await push_workflow(env, tmp_path, "alpha", workflow(email=True))
    await push_workflow(env, tmp_path, "beta", workflow(email=False))
    for user_id in ("ada", "bob"):
        await env.put(f"/v1/users/{user_id}", json={"email": f"{user_id}@example.com"})
    for n, key, user_id, tenant in TRIGGERS:
        body: dict[str, Any] = {"recipients": [user_id], "data": {"n": n}}
        if tenant:
            body["tenant"] = tenant
        response = await env.post(f"/v1/workflows/{key}/trigger", json=body)
        assert response.status_code == 200, response.text
        await run_workflow_jobs(env.runtime)
    ids = {m["data"]["n"]: m["id"] for m in await channel_messages(env, feed_channel_id(env.runtime))}
    assert set(ids) == ALL
    return ids


@pytest.fixture
async def messages(env: EnvFixture, tmp_path: Path) -> dict[int, str]:
    return await make_messages(env, tmp_path)


def email_channel_id(env: EnvFixture) -> str:
    channel = env.runtime.channels.by_key("email")
    assert channel is not None
    return channel.id


async def channel_messages(env: EnvFixture, channel_id: str) -> list[dict[str, Any]]:
    response = await env.get("/v1/messages", params={"channel_id": channel_id, "page_size": 50})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def statuses(env: EnvFixture, channel_id: str | None = None) -> dict[int, set[str]]:
    """The engagement statuses of a channel's messages (the feed's by default), by `n`."""
    listed = await channel_messages(env, channel_id or feed_channel_id(env.runtime))
    return {m["data"]["n"]: set(m["engagement_statuses"]) for m in listed}


async def event_types(env: EnvFixture, message_id: str) -> list[str]:
    response = await env.get(f"/v1/messages/{message_id}/events")
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["items"]]


async def feed_meta(env: EnvFixture, user_id: str, **params: Any) -> dict[str, int]:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}", params=params)
    assert response.status_code == 200, response.text
    meta = response.json()["meta"]
    return {key: meta[key] for key in ("total_count", "unread_count", "unseen_count")}


def bulk_path(env: EnvFixture, action: str, channel_id: str | None = None) -> str:
    return f"/v1/channels/{channel_id or feed_channel_id(env.runtime)}/messages/bulk/{action}"


async def start(
    env: EnvFixture,
    action: str,
    body: dict[str, Any] | None = None,
    *,
    channel_id: str | None = None,
    kind: KeyKind = KeyKind.SECRET,
) -> dict[str, Any]:
    response = await env.post(bulk_path(env, action, channel_id), json=body or {}, kind=kind)
    assert response.status_code == 200, response.text
    operation: dict[str, Any] = response.json()
    assert (operation["name"], operation["status"]) == ("channels.update_message_status", "queued")
    return operation


run_bulk = functools.partial(run_bulk_jobs, chunk_rows=2)
"""The bulk queue run in chunks of two messages, so that every operation spans chunks."""


async def finished(env: EnvFixture, operation_id: str) -> dict[str, Any]:
    assert await run_bulk(env.runtime) == {JobState.COMPLETED: 1}
    response = await env.get(f"/v1/bulk_operations/{operation_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "completed", body
    return body


def counts(operation: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        operation["estimated_total_rows"],
        operation["processed_rows"],
        operation["success_count"],
        operation["error_count"],
    )


async def test_bulk_read_marks_the_users_messages_on_the_channel(
    env: EnvFixture, messages: dict[int, str]
) -> None:
    emails_before = await channel_messages(env, email_channel_id(env))
    operation = await start(env, "read", {"user_ids": ["ada"]})
    assert counts(operation) == (3, 0, 0, 0)
    assert operation["progress_path"] == f"http://clarion.test/v1/bulk_operations/{operation['id']}"
    assert await statuses(env) == {n: set() for n in ALL}, "nothing changes before the job runs"

    done = await completed(env, operation["id"])
    assert counts(done) == (3, 3, 3, 0)
    assert done["error_items"] == []
    assert await statuses(env) == {0: {"read"}, 1: {"read"}, 2: {"read"}, 3: set(), 4: set()}
    assert await feed_meta(env, "ada") == {"total_count": 3, "unread_count": 0, "unseen_count": 3}
    assert await feed_meta(env, "bob") == {"total_count": 2, "unread_count": 2, "unseen_count": 2}
    for n in (0, 1, 2):
        assert (await event_types(env, messages[n])).count("message.read") == 1
    assert "message.read" not in await event_types(env, messages[3])
    assert await channel_messages(env, email_channel_id(env)) == emails_before, "other channels untouched"


@pytest.mark.parametrize("action", list(EVENTS))
async def test_each_action_changes_the_selected_messages(
    env: EnvFixture, messages: dict[int, str], action: str
) -> None:
    undone = UNDOES.get(action)
    if undone is not None:
        ids = list(messages.values())
        response = await env.post(f"/v1/messages/batch/{undone}", json={"message_ids": ids})
        assert response.status_code == 200, response.text
    before = await statuses(env)
    done = await finished(env, (await start(env, action, {"user_ids": ["bob"]}))["id"])
    assert counts(done) == (2, 2, 2, 0)
    after = await statuses(env)
    status = undone or EVENTS[action].removeprefix("message.")
    for n in ALL:
        if n in (3, 4):
            assert after[n] == (before[n] - {status} if undone else before[n] | {status}), n
            assert (await event_types(env, messages[n])).count(EVENTS[action]) == 1
        else:
            assert after[n] == before[n], n
            assert EVENTS[action] not in await event_types(env, messages[n])


async def test_user_ids_and_recipient_ids_both_select_users(
    env: EnvFixture, messages: dict[int, str]
) -> None:
    done = await finished(env, (await start(env, "seen", {"recipient_ids": ["bob"]}))["id"])
    assert counts(done) == (2, 2, 2, 0)
    assert {n for n, s in (await statuses(env)).items() if "seen" in s} == {3, 4}

    done = await finished(env, (await start(env, "read", {"user_ids": ["ada"]}))["id"])
    assert counts(done) == (3, 3, 3, 0)
    assert {n for n, s in (await statuses(env)).items() if "read" in s} == {0, 1, 2}

    both = {"user_ids": ["ada"], "recipient_ids": ["bob"]}
    done = await finished(env, (await start(env, "archive", both))["id"])
    assert counts(done) == (5, 5, 5, 0)
    assert all("archived" in s for s in (await statuses(env)).values())


@pytest.mark.parametrize(
    ("body", "selected"),
    [
        ({}, ALL),
        ({"user_ids": []}, ALL),
        ({"user_ids": ["nobody"]}, set()),
        ({"workflows": ["beta"]}, {2, 4}),
        ({"workflows": ["alpha", "beta"]}, ALL),
        ({"tenants": ["acme"]}, {0, 1, 3, 4}),
        ({"tenants": ["acme"], "has_tenant": True}, {1, 4}),
        ({"tenants": ["acme", "globex"], "has_tenant": True}, {1, 2, 4}),
        ({"has_tenant": True}, {1, 2, 4}),
        ({"has_tenant": False}, {0, 3}),
        ({"trigger_data": json.dumps({"n": 2})}, {2}),
        ({"trigger_data": json.dumps({"n": "2"})}, set()),
        ({"delivery_status": "delivered"}, ALL),
        ({"delivery_status": "queued"}, set()),
        ({"engagement_status": "seen"}, {0, 3}),
        ({"engagement_status": "unseen"}, {1, 2, 4}),
        ({"archived": "exclude"}, {0, 2, 3, 4}),
        ({"archived": "only"}, {1}),
        ({"archived": "include"}, ALL),
        ({"user_ids": ["bob"], "engagement_status": "seen", "archived": "exclude"}, {3}),
        ({"user_ids": ["ada"], "workflows": ["alpha"], "tenants": ["acme"], "has_tenant": True}, {1}),
    ],
)
async def test_filters_narrow_the_messages(
    env: EnvFixture, messages: dict[int, str], body: dict[str, Any], selected: set[int]
) -> None:
    for n in (0, 3):
        assert (await env.put(f"/v1/messages/{messages[n]}/seen")).status_code == 200
    assert (await env.put(f"/v1/messages/{messages[1]}/archived")).status_code == 200
    done = await finished(env, (await start(env, "read", body))["id"])
    assert counts(done) == (len(selected),) * 3 + (0,)
    assert {n for n, s in (await statuses(env)).items() if "read" in s} == selected


async def test_inserted_at_bounds(env: EnvFixture, messages: dict[int, str]) -> None:
    middle = (await env.get(f"/v1/messages/{messages[2]}")).json()["inserted_at"]
    done = await finished(env, (await start(env, "read", {"newer_than": middle}))["id"])
    assert counts(done) == (2, 2, 2, 0)
    done = await finished(env, (await start(env, "seen", {"older_than": middle}))["id"])
    assert counts(done) == (2, 2, 2, 0)
    assert await statuses(env) == {0: {"seen"}, 1: {"seen"}, 2: set(), 3: {"read"}, 4: {"read"}}


async def test_messages_already_standing_so_are_not_counted_or_recorded_again(
    env: EnvFixture, messages: dict[int, str]
) -> None:
    first = (await env.put(f"/v1/messages/{messages[0]}/read")).json()
    done = await finished(env, (await start(env, "read", {"user_ids": ["ada"]}))["id"])
    assert counts(done) == (2, 2, 2, 0)
    assert (await env.get(f"/v1/messages/{messages[0]}")).json()["read_at"] == first["read_at"]
    assert (await event_types(env, messages[0])).count("message.read") == 1

    again = await start(env, "read", {"user_ids": ["ada"]})
    assert again["estimated_total_rows"] == 0
    assert counts(await finished(env, again["id"])) == (0, 0, 0, 0)
    for n in (0, 1, 2):
        assert (await event_types(env, messages[n])).count("message.read") == 1


async def test_a_chunk_written_twice_records_its_events_once(
    env: EnvFixture, messages: dict[int, str]
) -> None:
    params = {"action": "seen"}
    ids = [messages[0], messages[1]]
    assert await update_channel_messages(env.runtime, env.id, params, ids) == ChunkResult(2)
    assert await update_channel_messages(env.runtime, env.id, params, ids) == ChunkResult(2)
    for message_id in ids:
        assert (await event_types(env, message_id)).count("message.seen") == 1
    deleted = {"action": "delete"}
    assert await update_channel_messages(env.runtime, env.id, deleted, ids) == ChunkResult(2)
    assert await update_channel_messages(env.runtime, env.id, deleted, ids) == ChunkResult(2)
    assert_error(await env.get(f"/v1/messages/{messages[0]}"), 404, "resource_missing")


@pytest.mark.parametrize("after_write", [False, True])
async def test_an_interrupted_operation_resumes_with_what_is_left(
    env: EnvFixture, messages: dict[int, str], after_write: bool
) -> None:
    real = BULK_HANDLERS[BulkKind.CHANNELS_UPDATE_MESSAGE_STATUS]
    chunks: list[list[str]] = []

    async def crashes_on_the_second_chunk(
        runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
    ) -> ChunkResult:
        chunks.append(list(rows))
        if len(chunks) == 2:
            if after_write:
                await real(runtime, environment_id, params, rows)
            raise ConnectionError("the store went away")
        return await real(runtime, environment_id, params, rows)

    handlers = {**BULK_HANDLERS, BulkKind.CHANNELS_UPDATE_MESSAGE_STATUS: crashes_on_the_second_chunk}
    operation = await start(env, "read")
    assert await run_bulk(env.runtime, handlers) == {JobState.RETRYABLE: 1}
    halfway = (await env.get(f"/v1/bulk_operations/{operation['id']}")).json()
    assert (halfway["status"], halfway["processed_rows"]) == ("processing", 2)

    assert await run_bulk(env.runtime, handlers, with_scheduled=True) == {JobState.COMPLETED: 1}
    done = (await env.get(f"/v1/bulk_operations/{operation['id']}")).json()
    assert done["status"] == "completed"
    # A chunk written before the crash is not selected again, so it is never counted.
    assert done["processed_rows"] == (3 if after_write else 5)
    assert all(s == {"read"} for s in (await statuses(env)).values())
    for message_id in messages.values():
        assert (await event_types(env, message_id)).count("message.read") == 1
    assert len(chunks) == (3 if after_write else 4)


async def test_bulk_delete_removes_the_messages_and_their_events(
    env: EnvFixture, messages: dict[int, str]
) -> None:
    emails_before = await channel_messages(env, email_channel_id(env))
    done = await finished(env, (await start(env, "delete", {"user_ids": ["ada"]}))["id"])
    assert counts(done) == (3, 3, 3, 0)
    for n in (0, 1, 2):
        assert_error(await env.get(f"/v1/messages/{messages[n]}"), 404, "resource_missing")
        events, _ = await env.runtime.messages.events(env.id, messages[n], PageRequest())
        assert events == []
    assert set(await statuses(env)) == {3, 4}
    assert (await event_types(env, messages[3]))[-1] == "message.created"
    assert await feed_meta(env, "ada") == {"total_count": 0, "unread_count": 0, "unseen_count": 0}
    assert (await feed_meta(env, "bob"))["total_count"] == 2
    assert await channel_messages(env, email_channel_id(env)) == emails_before


async def test_any_configured_channel_may_be_updated(env: EnvFixture, messages: dict[int, str]) -> None:
    email = email_channel_id(env)
    operation = await start(env, "archive", {"delivery_status": "queued"}, channel_id=email)
    assert counts(await finished(env, operation["id"])) == (3, 3, 3, 0)
    assert await statuses(env, email) == {0: {"archived"}, 1: {"archived"}, 3: {"archived"}}
    assert await statuses(env) == {n: set() for n in ALL}


async def test_a_request_without_a_body_selects_every_message(
    env: EnvFixture, messages: dict[int, str]
) -> None:
    # Knock's Node SDK posts no body at all.
    response = await env.post(bulk_path(env, "unarchived"))
    assert response.status_code == 200, response.text
    assert counts(await finished(env, response.json()["id"])) == (0, 0, 0, 0)
    response = await env.post(bulk_path(env, "archived"))
    assert response.status_code == 200, response.text
    assert counts(await finished(env, response.json()["id"])) == (5, 5, 5, 0)
    assert all(s == {"archived"} for s in (await statuses(env)).values())


async def test_messages_made_after_the_request_are_left_alone(
    env: EnvFixture, messages: dict[int, str]
) -> None:
    operation = await start(env, "read", {"user_ids": ["ada"]})
    await env.post("/v1/workflows/beta/trigger", json={"recipients": ["ada"], "data": {"n": 5}})
    await run_workflow_jobs(env.runtime)
    assert counts(await finished(env, operation["id"])) == (3, 3, 3, 0)
    assert (await statuses(env))[5] == set()


async def test_a_publishable_key_may_run_it(env: EnvFixture, messages: dict[int, str]) -> None:
    operation = await start(env, "seen", {"user_ids": ["ada"]}, kind=KeyKind.PUBLISHABLE)
    assert counts(await finished(env, operation["id"])) == (3, 3, 3, 0)
    assert (await feed_meta(env, "ada"))["unseen_count"] == 0


async def test_other_environments_messages_are_never_touched(
    env: EnvFixture, other_env: EnvFixture, messages: dict[int, str], tmp_path: Path
) -> None:
    other = await make_messages(other_env, tmp_path / "other")
    done = await finished(env, (await start(env, "delete"))["id"])
    assert counts(done) == (5, 5, 5, 0)
    assert await statuses(env) == {}
    assert await statuses(other_env) == {n: set() for n in ALL}
    for message_id in other.values():
        assert (await other_env.get(f"/v1/messages/{message_id}")).status_code == 200

    done = await finished(other_env, (await start(other_env, "read", {"user_ids": ["ada"]}))["id"])
    assert counts(done) == (3, 3, 3, 0)
    assert_error(await other_env.get(f"/v1/messages/{messages[0]}"), 404, "resource_missing")


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("explode", {}, "action"),
        ("link_clicked", {}, "action"),
        ("read", {"user_ids": "ada"}, "user_ids"),
        ("read", {"recipient_ids": [{"id": "ada"}]}, "recipient_ids.0"),
        ("read", {"user_ids": [f"u{i}" for i in range(1001)]}, "user_ids"),
        ("read", {"tenants": [""]}, "tenants.0"),
        ("read", {"workflows": "alpha"}, "workflows"),
        ("read", {"has_tenant": "yes"}, "has_tenant"),
        ("read", {"archived": "sometimes"}, "archived"),
        ("read", {"engagement_status": "loved"}, "engagement_status"),
        ("read", {"delivery_status": "lost"}, "delivery_status"),
        ("read", {"newer_than": "yesterday"}, "newer_than"),
        ("read", {"older_than": 1704067200}, "older_than"),
        ("read", {"trigger_data": "not json"}, "trigger_data"),
        ("read", {"trigger_data": json.dumps({"a": {"b": 1}})}, "trigger_data"),
        ("read", {"trigger_data": {"n": 1}}, "trigger_data"),
        ("read", {"status": "read"}, "status"),
    ],
)
async def test_bad_requests_queue_nothing(
    env: EnvFixture, action: str, body: dict[str, Any], field: str
) -> None:
    error = assert_error(await env.post(bulk_path(env, action), json=body), 422, "invalid_params")
    assert [e["field"] for e in error["errors"]] == [field]
    assert await run_bulk(env.runtime) == {}


async def test_unknown_channels_and_malformed_bodies_queue_nothing(env: EnvFixture) -> None:
    unknown = bulk_path(env, "read", "00000000-0000-4000-8000-000000000000")
    assert_error(await env.post(unknown, json={}), 404, "channel_invalid")
    assert_error(await env.post(bulk_path(env, "read"), content=b"{oops"), 400, "invalid_json")
    assert_error(await env.post(bulk_path(env, "read"), json=["ada"]), 422, "invalid_params")
    assert await run_bulk(env.runtime) == {}


async def test_a_bad_request_changes_no_message(env: EnvFixture, messages: dict[int, str]) -> None:
    before = await channel_messages(env, feed_channel_id(env.runtime))
    assert_error(await env.post(bulk_path(env, "delete"), json={"user_ids": "ada"}), 422)
    assert_error(await env.post(bulk_path(env, "delete", "no-such-channel")), 404, "channel_invalid")
    assert await run_bulk(env.runtime) == {}
    assert await channel_messages(env, feed_channel_id(env.runtime)) == before

"""Messages and the in-app feed: lists with their filters, one message with its events, activities and
content, engagement statuses one by one and in batches, and the feed's counts following them."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from clarion.engine.bulk import BULK_QUEUE
from clarion.runtime import build_worker
from clarion.store.batches import BatchIdentity, BatchJoin, join_batches
from clarion.store.clock import utcnow
from clarion.store.environments import KeyKind
from clarion.store.ids import new_ksuid
from clarion.store.messages import NewMessage, insert_messages
from clarion.store.recipient_resolution import RecipientKey
from tests.api.test_user_tokens import sign, token_header, with_signing_key
from tests.conftest import EnvFixture, assert_error, feed_channel_id, push_workflow, run_workflow_jobs


def feed_workflow(categories: list[str]) -> dict[str, Any]:
    return {
        "categories": categories,
        "steps": [
            {
                "ref": "in_app_feed_1",
                "type": "channel",
                "channel_key": "in-app-feed",
                "template": {
                    "markdown_body": "{{ data.title }}",
                    "action_url": "https://example.com/{{ data.n }}",
                    "action_buttons": [{"label": "Open", "action": "/open/{{ data.n }}"}],
                },
            }
        ],
    }


@pytest.fixture
async def messages(env: EnvFixture, tmp_path: Path) -> list[dict[str, Any]]:
    """Four in-app messages for ada, newest first: n=3 (tenant acme, workflow beta), then n=2, 1, 0."""
    await push_workflow(env, tmp_path, "alpha", feed_workflow(["social"]))
    await push_workflow(env, tmp_path, "beta", feed_workflow(["billing"]))
    await env.put("/v1/users/carol", json={"name": "Carol"})
    for n, key, tenant in ((0, "alpha", None), (1, "alpha", None), (2, "alpha", "acme"), (3, "beta", "acme")):
        body: dict[str, Any] = {
            "recipients": [{"id": "ada", "name": "Ada"}],
            "actor": "carol",
            "data": {"title": f"Item {n}", "n": n, "nested": {"deep": True}},
        }
        if tenant:
            body["tenant"] = tenant
        response = await env.post(f"/v1/workflows/{key}/trigger", json=body)
        assert response.status_code == 200, response.text
        # One at a time, so the messages are made in trigger order.
        await run_workflow_jobs(env.runtime)
    listed = (await env.get("/v1/users/ada/messages")).json()["items"]
    assert [m["data"]["n"] for m in listed] == [3, 2, 1, 0]
    items: list[dict[str, Any]] = listed
    return items


def feed_path(env: EnvFixture, user_id: str = "ada") -> str:
    return f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}"


async def feed(env: EnvFixture, **params: Any) -> dict[str, Any]:
    response = await env.get(feed_path(env), params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ns(body: dict[str, Any]) -> list[int]:
    return [entry["data"]["n"] for entry in body["entries"]]


async def test_a_message_has_knocks_shape(env: EnvFixture, messages: list[dict[str, Any]]) -> None:
    message = messages[0]
    channel = env.runtime.channels.by_key("in-app-feed")
    assert channel is not None
    assert message["__typename"] == "Message"
    assert len(message["id"]) == 27
    assert message["channel_id"] == channel.id
    assert message["channel"]["key"] == "in-app-feed"
    assert message["channel"]["type"] == "in_app_feed"
    assert message["recipient"] == "ada"
    assert message["actors"] == ["carol"]
    assert message["workflow"] == "beta"
    assert message["tenant"] == "acme"
    assert message["status"] == "delivered"
    assert message["engagement_statuses"] == []
    assert message["source"]["key"] == "beta"
    assert message["source"]["categories"] == ["billing"]
    assert message["source"]["step_ref"] == "in_app_feed_1"
    assert (await env.get(f"/v1/messages/{message['id']}")).json() == message


async def test_the_feed_renders_blocks_actors_and_activities(
    env: EnvFixture, messages: list[dict[str, Any]]
) -> None:
    body = await feed(env)
    assert ns(body) == [3, 2, 1, 0]
    item = body["entries"][0]
    assert item["__typename"] == "FeedItem"
    assert item["id"] == messages[0]["id"]
    assert item["blocks"] == [
        {"name": "body", "type": "markdown", "content": "Item 3", "rendered": "<p>Item 3</p>"},
        {
            "name": "action_url",
            "type": "text",
            "content": "https://example.com/3",
            "rendered": "https://example.com/3",
        },
        {
            "name": "actions",
            "type": "button_set",
            "buttons": [{"name": "primary", "label": "Open", "action": "/open/3"}],
        },
    ]
    assert [actor["id"] for actor in item["actors"]] == ["carol"]
    assert item["actors"][0]["__typename"] == "User"
    [activity] = item["activities"]
    assert activity["__typename"] == "Activity"
    assert activity["actor"]["name"] == "Carol"
    assert activity["recipient"]["id"] == "ada"
    assert activity["data"]["n"] == 3
    assert item["total_activities"] == 1
    assert item["total_actors"] == 1
    assert item["data"]["nested"] == {"deep": True}
    assert body["meta"] == {
        "__typename": "FeedMetadata",
        "total_count": 4,
        "unread_count": 4,
        "unseen_count": 4,
    }
    assert body["vars"] == {}

    compact = (await feed(env, mode="compact"))["entries"][0]
    assert "activities" not in compact
    assert "total_activities" not in compact
    assert compact["data"] == {"title": "Item 3", "n": 3}


async def test_engagement_changes_the_feed_and_its_counts(
    env: EnvFixture, messages: list[dict[str, Any]]
) -> None:
    first, second = messages[0]["id"], messages[1]["id"]
    seen = await env.put(f"/v1/messages/{first}/seen", kind=KeyKind.PUBLISHABLE)
    assert seen.status_code == 200, seen.text
    assert seen.json()["engagement_statuses"] == ["seen"]
    assert seen.json()["seen_at"] is not None
    read = await env.put(f"/v1/messages/{second}/read")
    assert read.json()["engagement_statuses"] == ["read"]

    body = await feed(env)
    assert body["meta"] == {
        "__typename": "FeedMetadata",
        "total_count": 4,
        "unread_count": 3,
        "unseen_count": 3,
    }
    assert ns(await feed(env, status="unread")) == [3, 1, 0]
    assert ns(await feed(env, status="read")) == [2]
    assert ns(await feed(env, status="unseen")) == [2, 1, 0]
    assert ns(await feed(env, status="seen")) == [3]

    archived = await env.put(f"/v1/messages/{first}/archived")
    assert set(archived.json()["engagement_statuses"]) == {"seen", "archived"}
    assert ns(await feed(env)) == [2, 1, 0]
    assert ns(await feed(env, archived="only")) == [3]
    assert ns(await feed(env, archived="include")) == [3, 2, 1, 0]
    assert (await feed(env))["meta"]["total_count"] == 3

    unarchived = await env.delete(f"/v1/messages/{first}/unarchived")
    assert unarchived.json()["archived_at"] is None
    unseen = await env.delete(f"/v1/messages/{first}/seen")
    assert unseen.json()["engagement_statuses"] == []

    interacted = await env.put(f"/v1/messages/{first}/interacted", json={"metadata": {"button": "open"}})
    assert interacted.json()["engagement_statuses"] == ["interacted"]
    assert interacted.json()["metadata"] == {"button": "open"}

    events = (await env.get(f"/v1/messages/{first}/events")).json()["items"]
    assert [event["type"] for event in events] == [
        "message.interacted",
        "message.unseen",
        "message.unarchived",
        "message.archived",
        "message.seen",
        "message.delivered",
        "message.created",
    ]
    assert events[0]["data"] == {"button": "open"}
    assert {event["recipient"] for event in events} == {"ada"}


async def test_message_events_page_newest_first_both_ways(
    env: EnvFixture, messages: list[dict[str, Any]]
) -> None:
    message_id = messages[0]["id"]
    changes = [(env.put, "seen"), (env.put, "read"), (env.put, "archived"), (env.delete, "archived")]
    for send, status in [*changes, (env.delete, "read")]:
        assert (await send(f"/v1/messages/{message_id}/{status}")).status_code == 200
    path = f"/v1/messages/{message_id}/events"
    newest_first = [
        "message.unread",
        "message.unarchived",
        "message.archived",
        "message.read",
        "message.seen",
        "message.delivered",
        "message.created",
    ]
    assert [e["type"] for e in (await env.get(path)).json()["items"]] == newest_first

    pages, params = [], {"page_size": 3}
    while True:
        body = (await env.get(path, params=params)).json()
        pages.append([e["type"] for e in body["items"]])
        if body["page_info"]["after"] is None:
            break
        params = {"page_size": 3, "after": body["page_info"]["after"]}
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:]]

    back = (await env.get(path, params={"page_size": 3, "before": body["page_info"]["before"]})).json()
    assert [e["type"] for e in back["items"]] == newest_first[3:6]
    assert back["page_info"]["before"] is not None
    first = (await env.get(path, params={"page_size": 3, "before": back["page_info"]["before"]})).json()
    assert [e["type"] for e in first["items"]] == newest_first[0:3]
    assert first["page_info"]["before"] is None

    ids = [e["id"] for e in (await env.get(path)).json()["items"]]
    assert len(set(ids)) == len(ids)
    assert ids == [e["id"] for e in (await env.get(path)).json()["items"]], "event ids are stable"


async def test_setting_a_status_twice_records_it_once(
    env: EnvFixture, messages: list[dict[str, Any]]
) -> None:
    message_id = messages[0]["id"]
    first = await env.put(f"/v1/messages/{message_id}/read")
    second = await env.put(f"/v1/messages/{message_id}/read")
    assert first.json()["read_at"] == second.json()["read_at"]
    types = [e["type"] for e in (await env.get(f"/v1/messages/{message_id}/events")).json()["items"]]
    assert types.count("message.read") == 1


async def test_batch_status_updates(env: EnvFixture, messages: list[dict[str, Any]]) -> None:
    ids = [m["id"] for m in messages[:3]]
    response = await env.post("/v1/messages/batch/read", json={"message_ids": ids}, kind=KeyKind.PUBLISHABLE)
    assert response.status_code == 200, response.text
    assert sorted(m["id"] for m in response.json()) == sorted(ids)
    assert all(m["engagement_statuses"] == ["read"] for m in response.json())
    assert (await feed(env))["meta"]["unread_count"] == 1
    undone = await env.post("/v1/messages/batch/unread", json={"message_ids": ids[:1]})
    assert undone.json()[0]["read_at"] is None
    interacted = await env.post(
        "/v1/messages/batch/interacted", json={"message_ids": ids[:1], "metadata": {"via": "batch"}}
    )
    assert interacted.json()[0]["metadata"] == {"via": "batch"}
    assert_error(await env.post("/v1/messages/batch/read", json={"message_ids": []}), 422, "invalid_params")
    assert_error(await env.post("/v1/messages/batch/seen", json={}), 422, "invalid_params")
    too_many = {"metadata": {str(i): i for i in range(6)}, "message_ids": ids}
    assert_error(await env.post("/v1/messages/batch/interacted", json=too_many), 422, "invalid_params")
    nested = {"metadata": {"a": {"b": 1}}}
    assert_error(await env.put(f"/v1/messages/{ids[0]}/interacted", json=nested), 422, "invalid_params")


async def test_feed_filters(env: EnvFixture, messages: list[dict[str, Any]]) -> None:
    assert ns(await feed(env, tenant="acme")) == [3, 2, 1, 0]
    assert ns(await feed(env, tenant="acme", has_tenant="true")) == [3, 2]
    assert ns(await feed(env, tenant="globex")) == [1, 0]
    assert ns(await feed(env, has_tenant="false")) == [1, 0]
    assert ns(await feed(env, source="beta")) == [3]
    assert ns(await feed(env, **{"workflow_categories[]": "social"})) == [2, 1, 0]
    assert ns(await feed(env, trigger_data=json.dumps({"n": 1}))) == [1]
    assert ns(await feed(env, trigger_data=json.dumps({"title": "Item 2"}))) == [2]
    assert ns(await feed(env, trigger_data=json.dumps({"n": "1"}))) == []
    first = await feed(env, page_size=3)
    assert ns(first) == [3, 2, 1]
    assert ns(await feed(env, page_size=3, after=first["page_info"]["after"])) == [0]
    assert ns(await feed(env, before=first["entries"][1]["__cursor"])) == [3]
    excluded = await feed(env, exclude="entries.activities,entries.data.nested,meta")
    assert "meta" not in excluded
    assert "activities" not in excluded["entries"][0]
    assert "nested" not in excluded["entries"][0]["data"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": "201"}, "page_size"),
        ({"status": "unknown"}, "status"),
        ({"archived": "sometimes"}, "archived"),
        ({"mode": "tiny"}, "mode"),
        ({"trigger_data": "not json"}, "trigger_data"),
        ({"trigger_data": json.dumps({"a": {"b": 1}})}, "trigger_data"),
        ({"has_tenant": "maybe"}, "has_tenant"),
        ({"inserted_at.gt": "yesterday"}, "inserted_at.gt"),
        ({"exclude": "entries.a.b.c"}, "exclude"),
        ({"trigger_data": json.dumps({"n": 2**70})}, "trigger_data"),
    ],
)
async def test_bad_feed_parameters(env: EnvFixture, params: dict[str, str], field: str) -> None:
    error = assert_error(await env.get(feed_path(env), params=params), 422, "invalid_params")
    assert error["errors"][0]["field"] == field


async def test_a_feed_page_may_hold_200_items(env: EnvFixture) -> None:
    assert (await env.get(feed_path(env), params={"page_size": 200})).json()["page_info"]["page_size"] == 200


async def test_the_feed_of_an_unknown_or_non_feed_channel(env: EnvFixture) -> None:
    email = env.runtime.channels.by_key("email")
    assert email is not None
    assert_error(await env.get(f"/v1/users/ada/feeds/{email.id}"), 404, "channel_invalid")
    assert_error(
        await env.get("/v1/users/ada/feeds/00000000-0000-4000-8000-000000000000"), 404, "channel_invalid"
    )
    settings = await env.get(f"{feed_path(env)}/settings", kind=KeyKind.PUBLISHABLE)
    assert settings.json() == {"features": {"branding_required": False}}


async def test_message_list_filters(env: EnvFixture, messages: list[dict[str, Any]]) -> None:
    def listed(response: Any) -> list[int]:
        assert response.status_code == 200, response.text
        return [m["data"]["n"] for m in response.json()["items"]]

    assert listed(await env.get("/v1/messages")) == [3, 2, 1, 0]
    assert listed(await env.get("/v1/messages", params={"source": "alpha"})) == [2, 1, 0]
    assert listed(await env.get("/v1/messages", params={"tenant": "acme"})) == [3, 2]
    assert listed(await env.get("/v1/messages", params={"status[]": "delivered"})) == [3, 2, 1, 0]
    assert listed(await env.get("/v1/messages", params={"status[]": "queued"})) == []
    await env.put(f"/v1/messages/{messages[1]['id']}/seen")
    assert listed(await env.get("/v1/messages", params={"engagement_status[]": "seen"})) == [2]
    assert listed(await env.get("/v1/messages", params={"engagement_status[]": "unseen"})) == [3, 1, 0]
    ids = [messages[0]["id"], messages[3]["id"]]
    assert listed(await env.get("/v1/messages", params={"message_ids[]": ids})) == [3, 0]
    assert listed(await env.get("/v1/messages", params={"workflow_categories[]": "billing"})) == [3]
    assert listed(await env.get("/v1/messages", params={"trigger_data": json.dumps({"n": 2})})) == [2]
    channel = messages[0]["channel_id"]
    assert listed(await env.get("/v1/messages", params={"channel_id": channel, "page_size": 2})) == [3, 2]
    run_id = messages[0]["source"]["workflow_recipient_run_id"]
    assert listed(await env.get("/v1/messages", params={"workflow_recipient_run_id": run_id})) == [3]
    trigger_id = messages[1]["source"]["workflow_run_id"]
    assert listed(await env.get("/v1/messages", params={"workflow_run_id": trigger_id})) == [2]
    stamp = messages[1]["inserted_at"]
    assert listed(await env.get("/v1/messages", params={"inserted_at.gte": stamp})) == [3, 2]
    assert listed(await env.get("/v1/messages", params={"inserted_at.lt": stamp})) == [1, 0]
    assert listed(await env.get("/v1/users/carol/messages")) == []
    assert_error(await env.get("/v1/messages", params={"status[]": "lost"}), 422, "invalid_params")
    assert_error(
        await env.get("/v1/messages", params={"engagement_status[]": "loved"}), 422, "invalid_params"
    )


async def test_object_message_lists(env: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(env, tmp_path, "alpha", feed_workflow([]))
    await env.post(
        "/v1/workflows/alpha/trigger",
        json={"recipients": [{"id": "apollo", "collection": "projects", "name": "Apollo"}], "data": {"n": 1}},
    )
    await run_workflow_jobs(env.runtime)
    [message] = (await env.get("/v1/objects/projects/apollo/messages")).json()["items"]
    assert message["recipient"] == {"collection": "projects", "id": "apollo"}
    assert_error(await env.get("/v1/objects/$bad/apollo/messages"), 422, "invalid_params")


async def test_content_activities_and_delivery_logs(env: EnvFixture, messages: list[dict[str, Any]]) -> None:
    message_id = messages[0]["id"]
    content = (await env.get(f"/v1/messages/{message_id}/content")).json()
    assert content["__typename"] == "MessageContent"
    assert content["message_id"] == message_id
    assert content["data"]["__typename"] == "MessageInAppFeedContent"
    assert content["data"]["blocks"][0]["content"] == "Item 3"
    batch = await env.get(
        "/v1/messages/batch/content", params={"message_ids[]": [message_id, messages[1]["id"]]}
    )
    assert sorted(c["message_id"] for c in batch.json()) == sorted([message_id, messages[1]["id"]])
    assert_error(await env.get("/v1/messages/batch/content"), 422, "invalid_params")
    activities = (await env.get(f"/v1/messages/{message_id}/activities")).json()
    [activity] = activities["items"]
    assert activity["actor"]["id"] == "carol"
    assert activity["data"]["n"] == 3
    [in_feed] = (await feed(env))["entries"][0]["activities"]
    assert len(activity["id"]) == 27 and activity["id"] == in_feed["id"], "one stable KSUID per activity"
    [other] = (await env.get(f"/v1/messages/{messages[1]['id']}/activities")).json()["items"]
    assert other["id"] != activity["id"]
    logs = (await env.get(f"/v1/messages/{message_id}/delivery_logs")).json()
    assert logs["items"] == []


async def test_unknown_messages_and_other_environments(
    env: EnvFixture, other_env: EnvFixture, messages: list[dict[str, Any]]
) -> None:
    message_id = messages[0]["id"]
    for path in ("", "/events", "/content", "/activities", "/delivery_logs"):
        assert_error(await env.get(f"/v1/messages/nope{path}"), 404, "resource_missing")
        assert_error(await other_env.get(f"/v1/messages/{message_id}{path}"), 404, "resource_missing")
    assert_error(await other_env.put(f"/v1/messages/{message_id}/read"), 404, "resource_missing")
    assert (await other_env.post("/v1/messages/batch/read", json={"message_ids": [message_id]})).json() == []
    assert (await env.get(f"/v1/messages/{message_id}")).json()["read_at"] is None
    assert (await other_env.get("/v1/messages")).json()["items"] == []
    other_feed = (await other_env.get(feed_path(other_env))).json()
    assert other_feed["entries"] == []
    assert other_feed["meta"]["total_count"] == 0


async def test_message_lists_need_a_secret_key(env: EnvFixture) -> None:
    assert_error(await env.get("/v1/messages", kind=KeyKind.PUBLISHABLE), 403, "incorrect_token_type")
    assert (await env.get(feed_path(env), kind=KeyKind.PUBLISHABLE)).status_code == 200


async def test_a_signed_user_acts_on_its_own_messages_only(env: EnvFixture, tmp_path: Path) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await with_signing_key(env, private_key)
    await push_workflow(env, tmp_path, "alpha", feed_workflow([]))
    await env.post(
        "/v1/workflows/alpha/trigger", json={"recipients": [{"id": "ada"}, {"id": "bob"}], "data": {"n": 1}}
    )
    await run_workflow_jobs(env.runtime)
    [ada_message] = (await env.get("/v1/users/ada/messages")).json()["items"]
    [bob_message] = (await env.get("/v1/users/bob/messages")).json()["items"]
    as_ada = {**token_header(sign(private_key, "ada"))}

    own = await env.put(f"/v1/messages/{ada_message['id']}/read", kind=KeyKind.PUBLISHABLE, headers=as_ada)
    assert own.status_code == 200, own.text
    other = await env.put(f"/v1/messages/{bob_message['id']}/read", kind=KeyKind.PUBLISHABLE, headers=as_ada)
    assert_error(other, 404, "resource_missing")
    batch = await env.post(
        "/v1/messages/batch/seen",
        json={"message_ids": [ada_message["id"], bob_message["id"]]},
        kind=KeyKind.PUBLISHABLE,
        headers=as_ada,
    )
    assert [m["id"] for m in batch.json()] == [ada_message["id"]]
    bulk = await env.post(
        f"/v1/channels/{feed_channel_id(env.runtime)}/messages/bulk/archive",
        json={"user_ids": ["bob"]},
        kind=KeyKind.PUBLISHABLE,
        headers=as_ada,
    )
    assert bulk.status_code == 200, bulk.text
    await build_worker(env.runtime).drain([BULK_QUEUE])
    bob_now = (await env.get(f"/v1/messages/{bob_message['id']}")).json()
    assert (bob_now["read_at"], bob_now["seen_at"], bob_now["archived_at"]) == (None, None, None)
    assert (await env.get(f"/v1/messages/{ada_message['id']}")).json()["archived_at"] is not None
    # Without a token the publishable key is not tied to a user, as in Knock without enhanced security.
    untied = await env.put(f"/v1/messages/{bob_message['id']}/read", kind=KeyKind.PUBLISHABLE)
    assert untied.status_code == 200


async def test_an_activity_without_an_actor_says_null_as_knocks_example_does(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_workflow(env, tmp_path, "alpha", feed_workflow(["social"]))
    await env.put("/v1/users/ada", json={"name": "Ada"})
    response = await env.post("/v1/workflows/alpha/trigger", json={"recipients": ["ada"], "data": {"n": 0}})
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    [message] = (await env.get("/v1/users/ada/messages")).json()["items"]
    [activity] = (await env.get(f"/v1/messages/{message['id']}/activities")).json()["items"]
    assert "actor" in activity and activity["actor"] is None


async def test_a_message_made_after_a_batch_pages_through_all_its_activities(env: EnvFixture) -> None:
    # The batch step that makes such messages is the engine's; here the store makes the batch and the message.
    await env.put("/v1/users/ada", json={"name": "Ada"})
    await env.put("/v1/users/carol", json={"name": "Carol"})
    identity = BatchIdentity(env.id, "digest", RecipientKey.user("ada"), "batch_1", "", "")
    now = utcnow()
    entries = [
        BatchJoin(str(uuid.uuid4()), identity, RecipientKey.user("carol") if n % 2 else None, {"n": n}, now)
        for n in range(120)
    ]
    async with env.runtime.database.writer.begin() as connection:
        results = await join_batches(connection, entries, now - timedelta(seconds=1))
        message = NewMessage(
            id=new_ksuid(),
            channel_id=feed_channel_id(env.runtime),
            recipient=RecipientKey.user("ada"),
            workflow_key="digest",
            run_id=entries[0].run_id,
            workflow_run_id=str(uuid.uuid4()),
            step_ref="in_app_feed_1",
            source={"key": "digest", "version_id": str(uuid.uuid4()), "categories": []},
            tenant=None,
            actors=[],
            activities=[],
            data={},
            content={},
            status="delivered",
            batch_id=results[0].batch_id,
        )
        await insert_messages(connection, env.id, [message])

    path = f"/v1/messages/{message.id}/activities"
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"page_size": 50}
    while True:
        response = await env.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["items"])
        assert body["page_info"]["page_size"] == 50
        if body["page_info"]["after"] is None:
            break
        params = {"page_size": 50, "after": body["page_info"]["after"]}
    assert [activity["data"]["n"] for activity in seen] == list(range(120))
    assert len({activity["id"] for activity in seen}) == 120
    assert seen[0]["actor"] is None and seen[1]["actor"]["id"] == "carol"
    assert seen[0]["recipient"]["id"] == "ada" and seen[0]["__typename"] == "Activity"
    back = (await env.get(path, params={"page_size": 2, "before": body["page_info"]["before"]})).json()
    assert [activity["data"]["n"] for activity in back["items"]] == [98, 99]
    assert_error(await env.get(path, params={"page_size": 51}), 422)

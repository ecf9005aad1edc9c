from __future__ import annotations

from typing import Any

from knockapi.types.list_subscriptions_response import ListSubscriptionsResponse
from knockapi.types.recipients.subscription import Subscription

from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error

SUBS = "/v1/objects/projects/p1/subscriptions"


async def make_object(env: EnvFixture, collection: str, object_id: str, **properties: Any) -> None:
    response = await env.put(f"/v1/objects/{collection}/{object_id}", json=properties)
    assert response.status_code == 200, response.text


async def make_users(env: EnvFixture, *user_ids: str) -> None:
    for user_id in user_ids:
        response = await env.put(f"/v1/users/{user_id}", json={"name": user_id.upper()})
        assert response.status_code == 200, response.text


async def subscriber_ids(env: EnvFixture, path: str = SUBS, **params: Any) -> list[str]:
    response = await env.get(path, params=params)
    assert response.status_code == 200, response.text
    return [entry["recipient"]["id"] for entry in response.json()["entries"]]


async def test_add_subscriptions_returns_full_entities(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1", name="Project one", config={"a": 1})
    await make_users(env, "u1", "u2")
    response = await env.post(SUBS, json={"recipients": ["u1", "u2"], "properties": {"role": "admin"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [entry["recipient"]["id"] for entry in body] == ["u1", "u2"]
    first = body[0]
    assert first["__typename"] == "Subscription"
    assert first["properties"] == {"role": "admin"}
    assert first["inserted_at"].endswith("Z")
    assert first["updated_at"].endswith("Z")
    assert first["object"] == (await env.get("/v1/objects/projects/p1")).json()
    assert first["object"]["__typename"] == "Object"
    assert first["object"]["properties"] == {"name": "Project one", "config": {"a": 1}}
    assert first["recipient"] == (await env.get("/v1/users/u1")).json()
    # The official SDK parses what it gets back.
    parsed = [Subscription.model_validate(entry) for entry in body]
    assert parsed[1].recipient.id == "u2"
    assert parsed[0].object.collection == "projects"


async def test_adding_again_replaces_properties(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_users(env, "u1")
    first = (await env.post(SUBS, json={"recipients": ["u1"], "properties": {"role": "a"}})).json()[0]
    second = (await env.post(SUBS, json={"recipients": ["u1"], "properties": {"level": 2}})).json()[0]
    assert second["properties"] == {"level": 2}
    assert second["inserted_at"] == first["inserted_at"]
    assert second["updated_at"] >= first["updated_at"]
    third = (await env.post(SUBS, json={"recipients": ["u1", "u1"]})).json()
    assert len(third) == 1
    assert third[0]["properties"] is None
    assert await subscriber_ids(env) == ["u1"]


async def test_inline_identify_users_and_objects_while_subscribing(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_users(env, "known")
    response = await env.post(
        SUBS,
        json={
            "recipients": [
                {"id": "known", "email": "known@example.com"},
                {"id": "fresh", "name": "Fresh", "plan": {"tier": "pro"}},
                {"collection": "teams", "id": "t1", "name": "Team one", "size": 3},
                "known",
            ]
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(e["recipient"]["__typename"], e["recipient"]["id"]) for e in body] == [
        ("User", "known"),
        ("User", "fresh"),
        ("Object", "t1"),
    ]
    known = (await env.get("/v1/users/known")).json()
    assert known["name"] == "KNOWN"
    assert known["email"] == "known@example.com"
    fresh = (await env.get("/v1/users/fresh")).json()
    assert fresh["plan"] == {"tier": "pro"}
    team = (await env.get("/v1/objects/teams/t1")).json()
    assert team["properties"] == {"name": "Team one", "size": 3}
    assert body[2]["recipient"] == team


async def test_objects_subscribe_to_objects(env: EnvFixture) -> None:
    await make_object(env, "organizations", "org-1")
    await make_object(env, "teams", "team-1")
    await make_users(env, "u1")
    added = await env.post(
        "/v1/objects/organizations/org-1/subscriptions",
        json={"recipients": [{"collection": "teams", "id": "team-1"}]},
    )
    assert added.status_code == 200, added.text
    await env.post("/v1/objects/teams/team-1/subscriptions", json={"recipients": ["u1"]})

    subscribers = (await env.get("/v1/objects/organizations/org-1/subscriptions")).json()["entries"]
    assert [(s["recipient"]["collection"], s["recipient"]["id"]) for s in subscribers] == [
        ("teams", "team-1")
    ]

    as_recipient = await env.get("/v1/objects/teams/team-1/subscriptions", params={"mode": "recipient"})
    assert as_recipient.status_code == 200, as_recipient.text
    entries = as_recipient.json()["entries"]
    assert [(e["object"]["collection"], e["object"]["id"]) for e in entries] == [("organizations", "org-1")]
    assert entries[0]["recipient"]["id"] == "team-1"
    assert await subscriber_ids(env, "/v1/objects/teams/team-1/subscriptions", mode="object") == ["u1"]


async def test_unknown_object_is_404_and_writes_nothing(env: EnvFixture) -> None:
    body = {"recipients": [{"id": "inline-user", "name": "X"}]}
    assert_error(
        await env.post("/v1/objects/projects/ghost/subscriptions", json=body), 404, "resource_missing"
    )
    assert_error(await env.get("/v1/users/inline-user"), 404)
    assert_error(await env.get("/v1/objects/projects/ghost/subscriptions"), 404, "resource_missing")
    assert_error(
        await env.delete("/v1/objects/projects/ghost/subscriptions", json={"recipients": ["u1"]}),
        404,
        "resource_missing",
    )


async def test_unknown_recipients_are_422_and_write_nothing(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_users(env, "u1")
    response = await env.post(
        SUBS,
        json={
            "recipients": [
                "u1",
                {"id": "inline-user"},
                "nobody",
                {"collection": "teams", "id": "missing-team"},
                {"collection": "teams", "id": "new-team", "name": "New"},
                "nobody-either",
            ]
        },
    )
    body = assert_error(response, 422, "invalid_params")
    # `{collection, id}` alone references an existing object; with more fields it would be set inline.
    assert [error["field"] for error in body["errors"]] == ["recipients.2", "recipients.3", "recipients.5"]
    # The inline recipients of the refused request were not identified either.
    assert_error(await env.get("/v1/users/inline-user"), 404)
    assert_error(await env.get("/v1/objects/teams/new-team"), 404)
    assert await subscriber_ids(env) == []


async def test_an_object_cannot_subscribe_to_itself(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    response = await env.post(SUBS, json={"recipients": [{"collection": "projects", "id": "p1"}]})
    body = assert_error(response, 422, "invalid_params")
    assert body["errors"][0]["field"] == "recipients.0"


async def test_at_most_100_recipients_per_request(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    too_many = [{"id": f"u{i}"} for i in range(101)]
    body = assert_error(await env.post(SUBS, json={"recipients": too_many}), 422, "invalid_params")
    assert body["errors"][0]["field"] == "recipients"
    assert_error(await env.get("/v1/users/u0"), 404)
    assert await subscriber_ids(env) == []
    assert_error(
        await env.delete(SUBS, json={"recipients": [f"u{i}" for i in range(101)]}), 422, "invalid_params"
    )

    response = await env.post(SUBS, json={"recipients": too_many[:100]})
    assert response.status_code == 200, response.text
    assert len(response.json()) == 100


async def test_bad_recipient_references_are_422(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    cases: list[tuple[Any, str]] = [
        ({}, "recipients"),
        ({"recipients": "u1"}, "recipients"),
        ({"recipients": [5]}, "recipients.0"),
        ({"recipients": [None]}, "recipients.0"),
        ({"recipients": [""]}, "recipients.0.user_id"),
        ({"recipients": [{"name": "no id"}]}, "recipients.0.user.id"),
        ({"recipients": [{"collection": "teams"}]}, "recipients.0.object.id"),
        ({"recipients": [{"collection": "$users", "id": "u1"}]}, "recipients.0.object.collection"),
        ({"recipients": [{"collection": "bad collection!", "id": "x"}]}, "recipients.0.object.collection"),
        ({"recipients": ["u1"], "properties": "nope"}, "properties"),
        ({"recipients": ["u1"], "extra": 1}, "extra"),
    ]
    for payload, field in cases:
        body = assert_error(await env.post(SUBS, json=payload), 422, "invalid_params")
        assert body["errors"][0]["field"] == field, (payload, body)
    for payload, field in [
        ({"recipients": [{"id": "u1"}]}, "recipients.0.object.collection"),
        ({"recipients": [{"id": "t", "collection": "teams", "name": "x"}]}, "recipients.0.object.name"),
        ({"recipients": [7]}, "recipients.0"),
    ]:
        body = assert_error(await env.delete(SUBS, json=payload), 422, "invalid_params")
        assert body["errors"][0]["field"] == field, (payload, body)
    unknown_channel = {"recipients": [{"id": "u9", "channel_data": {"not-a-channel": {"tokens": ["x"]}}}]}
    body = assert_error(await env.post(SUBS, json=unknown_channel), 422, "invalid_params")
    assert body["errors"][0]["field"] == "recipients.0.channel_data.not-a-channel"
    assert_error(await env.get("/v1/users/u9"), 404)
    assert_error(await env.get("/v1/objects/bad%20name!/p1/subscriptions"), 422, "invalid_params")
    assert_error(await env.get(SUBS, params={"mode": "sideways"}), 422, "invalid_params")


async def test_delete_returns_the_deleted_subscriptions(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_object(env, "teams", "t1")
    await make_users(env, "u1", "u2", "u3")
    await env.post(SUBS, json={"recipients": ["u1", "u2", {"collection": "teams", "id": "t1"}]})
    response = await env.delete(
        SUBS, json={"recipients": ["u2", "u3", "never-existed", {"collection": "teams", "id": "t1"}]}
    )
    assert response.status_code == 200, response.text
    deleted = response.json()
    assert [(e["__typename"], e["recipient"]["id"]) for e in deleted] == [
        ("Subscription", "u2"),
        ("Subscription", "t1"),
    ]
    assert deleted[0]["object"]["id"] == "p1"
    assert await subscriber_ids(env) == ["u1"]
    assert (await env.delete(SUBS, json={"recipients": ["u2"]})).json() == []
    # The recipients themselves are untouched.
    assert (await env.get("/v1/users/u2")).status_code == 200


async def test_list_pages_with_cursors(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_users(env, *(f"u{i}" for i in range(5)))
    await env.post(SUBS, json={"recipients": [f"u{i}" for i in range(5)]})
    first = (await env.get(SUBS, params={"page_size": 2})).json()
    ListSubscriptionsResponse.model_validate(first)
    assert [e["recipient"]["id"] for e in first["entries"]] == ["u0", "u1"]
    assert first["page_info"]["__typename"] == "PageInfo"
    assert first["page_info"]["before"] is None
    second = (await env.get(SUBS, params={"page_size": 2, "after": first["page_info"]["after"]})).json()
    assert [e["recipient"]["id"] for e in second["entries"]] == ["u2", "u3"]
    third = (await env.get(SUBS, params={"page_size": 2, "after": second["page_info"]["after"]})).json()
    assert [e["recipient"]["id"] for e in third["entries"]] == ["u4"]
    assert third["page_info"]["after"] is None
    back = (await env.get(SUBS, params={"page_size": 2, "before": third["page_info"]["before"]})).json()
    assert [e["recipient"]["id"] for e in back["entries"]] == ["u2", "u3"]
    assert_error(await env.get(SUBS, params={"page_size": 0}), 422, "invalid_params")


async def test_list_filters_by_recipients_and_objects(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_object(env, "projects", "p2")
    await make_object(env, "teams", "t1")
    await make_users(env, "u1", "u2")
    await env.post(SUBS, json={"recipients": ["u1", "u2", {"collection": "teams", "id": "t1"}]})
    await env.post(
        "/v1/objects/projects/p2/subscriptions",
        json={"recipients": ["u1", {"collection": "teams", "id": "t1"}]},
    )

    # Encoded as the Python SDK encodes arrays of references (brackets, nested objects).
    filtered = await env.get(
        SUBS,
        params=[
            ("recipients[]", "u2"),
            ("recipients[][id]", "t1"),
            ("recipients[][collection]", "teams"),
        ],
    )
    assert filtered.status_code == 200, filtered.text
    assert [e["recipient"]["id"] for e in filtered.json()["entries"]] == ["u2", "t1"]

    by_object = await env.get(
        "/v1/users/u1/subscriptions",
        params=[("objects[][id]", "p2"), ("objects[][collection]", "projects")],
    )
    assert [e["object"]["id"] for e in by_object.json()["entries"]] == ["p2"]

    as_recipient = await env.get(
        "/v1/objects/teams/t1/subscriptions",
        params=[("mode", "recipient"), ("objects[0][id]", "p1"), ("objects[0][collection]", "projects")],
    )
    assert [e["object"]["id"] for e in as_recipient.json()["entries"]] == ["p1"]

    bad = await env.get(SUBS, params=[("recipients[][id]", "t1")])
    body = assert_error(bad, 422, "invalid_params")
    assert body["errors"][0]["field"] == "recipients.0.object.collection"
    bad_objects = await env.get(
        "/v1/objects/teams/t1/subscriptions", params={"mode": "recipient", "objects[]": "p1"}
    )
    assert_error(bad_objects, 422, "invalid_params")


async def test_user_subscriptions(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1", name="One")
    await make_object(env, "projects", "p2")
    await make_users(env, "u1", "u2")
    await env.post(SUBS, json={"recipients": ["u1"], "properties": {"role": "owner"}})
    await env.post("/v1/objects/projects/p2/subscriptions", json={"recipients": ["u1", "u2"]})
    response = await env.get("/v1/users/u1/subscriptions")
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    # Newest first, as Knock lists a user's subscriptions.
    assert [(e["object"]["id"], e["properties"]) for e in entries] == [
        ("p2", None),
        ("p1", {"role": "owner"}),
    ]
    assert entries[1]["object"] == (await env.get("/v1/objects/projects/p1")).json()
    assert entries[1]["recipient"] == (await env.get("/v1/users/u1")).json()
    first = (await env.get("/v1/users/u1/subscriptions", params={"page_size": 1})).json()
    assert [e["object"]["id"] for e in first["entries"]] == ["p2"]
    assert first["page_info"]["before"] is None
    after = {"page_size": 1, "after": first["page_info"]["after"]}
    second = (await env.get("/v1/users/u1/subscriptions", params=after)).json()
    assert [e["object"]["id"] for e in second["entries"]] == ["p1"]
    assert second["page_info"]["after"] is None
    before = {"page_size": 1, "before": second["page_info"]["before"]}
    back = (await env.get("/v1/users/u1/subscriptions", params=before)).json()
    assert [e["object"]["id"] for e in back["entries"]] == ["p2"]
    assert_error(await env.get("/v1/users/nobody/subscriptions"), 404, "resource_missing")


async def test_deleting_a_recipient_or_object_removes_its_subscriptions(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_users(env, "u1", "u2")
    await env.post(SUBS, json={"recipients": ["u1", "u2"]})
    assert (await env.delete("/v1/users/u1")).status_code == 204
    assert await subscriber_ids(env) == ["u2"]
    assert (await env.delete("/v1/objects/projects/p1")).status_code == 204
    await make_object(env, "projects", "p1")
    assert await subscriber_ids(env) == []
    assert (await env.get("/v1/users/u2/subscriptions")).json()["entries"] == []


async def test_environments_are_isolated(env: EnvFixture, other_env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_users(env, "u1")
    await env.post(SUBS, json={"recipients": ["u1"]})

    assert_error(await other_env.get(SUBS), 404)
    assert_error(await other_env.post(SUBS, json={"recipients": ["u1"]}), 404)
    assert_error(await other_env.delete(SUBS, json={"recipients": ["u1"]}), 404)
    assert_error(await other_env.get("/v1/users/u1/subscriptions"), 404)

    # The same names in the other environment are other things.
    await make_object(other_env, "projects", "p1")
    assert_error(await other_env.post(SUBS, json={"recipients": ["u1"]}), 422)
    await make_users(other_env, "u2")
    await other_env.post(SUBS, json={"recipients": ["u2"]})
    assert await subscriber_ids(other_env) == ["u2"]
    assert (await other_env.delete(SUBS, json={"recipients": ["u1"]})).json() == []
    assert await subscriber_ids(env) == ["u1"]


async def test_publishable_key_is_refused(env: EnvFixture) -> None:
    await make_object(env, "projects", "p1")
    await make_users(env, "u1")
    pk = KeyKind.PUBLISHABLE
    assert_error(await env.get(SUBS, kind=pk), 403, "incorrect_token_type")
    assert_error(await env.post(SUBS, json={"recipients": ["u1"]}, kind=pk), 403, "incorrect_token_type")
    assert_error(await env.delete(SUBS, json={"recipients": ["u1"]}, kind=pk), 403, "incorrect_token_type")
    assert_error(await env.get("/v1/users/u1/subscriptions", kind=pk), 403, "incorrect_token_type")
    assert await subscriber_ids(env) == []

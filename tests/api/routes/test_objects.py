from __future__ import annotations

import asyncio

import pytest

from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error


def push_channel_id(env: EnvFixture) -> str:
    channel = env.runtime.channels.by_key("push-fcm")
    assert channel is not None
    return channel.id


async def test_set_creates_then_deep_merges_properties(env: EnvFixture) -> None:
    first = await env.put(
        "/v1/objects/projects/p1",
        json={"name": "Apollo", "locale": "en-US", "config": {"a": 1, "b": {"c": 2}}},
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body == {
        "__typename": "Object",
        "id": "p1",
        "collection": "projects",
        "created_at": None,
        "updated_at": body["updated_at"],
        "properties": {"name": "Apollo", "locale": "en-US", "config": {"a": 1, "b": {"c": 2}}},
    }
    assert body["updated_at"].endswith("Z")

    second = await env.put("/v1/objects/projects/p1", json={"config": {"b": {"d": 3}}, "name": None})
    assert second.status_code == 200, second.text
    merged = second.json()
    assert merged["properties"] == {
        "name": None,
        "locale": "en-US",
        "config": {"a": 1, "b": {"c": 2, "d": 3}},
    }
    assert merged["updated_at"] >= body["updated_at"]
    assert (await env.get("/v1/objects/projects/p1")).json() == merged


async def test_caller_created_at_is_the_objects_created_at(env: EnvFixture) -> None:
    response = await env.put("/v1/objects/projects/p1", json={"created_at": "2024-01-02T03:04:05Z"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["created_at"] == "2024-01-02T03:04:05Z"
    assert body["properties"] == {}


async def test_concurrent_sets_lose_no_property(env: EnvFixture) -> None:
    await asyncio.gather(*(env.put("/v1/objects/teams/racer", json={f"p{i}": i}) for i in range(20)))
    properties = (await env.get("/v1/objects/teams/racer")).json()["properties"]
    assert properties == {f"p{i}": i for i in range(20)}


async def test_set_rejects_bad_input_and_writes_nothing(env: EnvFixture) -> None:
    body = assert_error(await env.put("/v1/objects/projects/p1", json={"name": 5}), 422, "invalid_params")
    assert body["errors"][0]["field"] == "name"
    assert_error(await env.put("/v1/objects/projects/p1", content=b"{nope"), 400, "invalid_json")
    assert_error(await env.put("/v1/objects/projects/p1", content=b"[]"), 422, "invalid_params")
    assert_error(await env.put("/v1/objects/projects/" + "x" * 256, json={}), 422, "invalid_params")
    assert_error(await env.get("/v1/objects/projects/p1"), 404, "resource_missing")


async def test_inline_channel_data_is_validated_and_stored(env: EnvFixture) -> None:
    channel_id = push_channel_id(env)
    response = await env.put(
        "/v1/objects/projects/p1", json={"name": "P", "channel_data": {channel_id: {"tokens": ["t1"]}}}
    )
    assert response.status_code == 200, response.text
    assert "channel_data" not in response.json()["properties"]
    stored = await env.get(f"/v1/objects/projects/p1/channel_data/{channel_id}")
    assert stored.json()["data"] == {
        "tokens": ["t1"],
        "devices": [{"token": "t1", "locale": None, "timezone": None}],
    }


async def test_inline_channel_data_for_unknown_or_bad_channels_is_refused(env: EnvFixture) -> None:
    channel_id = push_channel_id(env)
    unknown = "0b3e1c8e-1111-4222-8333-944455556666"
    body = assert_error(
        await env.put(
            "/v1/objects/projects/p1",
            json={"channel_data": {unknown: {"tokens": ["t"]}, channel_id: {"tokens": [1]}}},
        ),
        422,
        "invalid_params",
    )
    assert {e["field"] for e in body["errors"]} == {
        f"channel_data.{unknown}",
        f"channel_data.{channel_id}.tokens.0",
    }
    assert_error(await env.get("/v1/objects/projects/p1"), 404)


async def test_get_unknown_object_is_404(env: EnvFixture) -> None:
    await env.put("/v1/objects/projects/p1", json={})
    assert_error(await env.get("/v1/objects/projects/p2"), 404, "resource_missing")
    assert_error(await env.get("/v1/objects/other/p1"), 404, "resource_missing")


async def test_list_pages_through_one_collection(env: EnvFixture) -> None:
    for i in range(5):
        await env.put(f"/v1/objects/projects/p{i}", json={"n": i})
    await env.put("/v1/objects/teams/t0", json={})
    first = (await env.get("/v1/objects/projects", params={"page_size": 2})).json()
    assert [o["id"] for o in first["entries"]] == ["p0", "p1"]
    assert first["entries"][0]["__typename"] == "Object"
    assert first["entries"][0]["collection"] == "projects"
    assert first["entries"][0]["properties"] == {"n": 0}
    assert first["page_info"] == {
        "__typename": "PageInfo",
        "after": first["page_info"]["after"],
        "before": None,
        "page_size": 2,
    }
    second = (
        await env.get("/v1/objects/projects", params={"page_size": 2, "after": first["page_info"]["after"]})
    ).json()
    assert [o["id"] for o in second["entries"]] == ["p2", "p3"]
    third = (
        await env.get("/v1/objects/projects", params={"page_size": 2, "after": second["page_info"]["after"]})
    ).json()
    assert [o["id"] for o in third["entries"]] == ["p4"]
    assert third["page_info"]["after"] is None
    assert [o["id"] for o in (await env.get("/v1/objects/teams")).json()["entries"]] == ["t0"]
    assert (await env.get("/v1/objects/empty")).json()["entries"] == []
    assert_error(await env.get("/v1/objects/projects", params={"page_size": "51"}), 422, "invalid_params")


async def test_delete_object(env: EnvFixture) -> None:
    channel_id = push_channel_id(env)
    await env.put("/v1/objects/projects/p1", json={"channel_data": {channel_id: {"tokens": ["t"]}}})
    response = await env.delete("/v1/objects/projects/p1")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await env.get("/v1/objects/projects/p1"), 404)
    assert_error(await env.delete("/v1/objects/projects/p1"), 404, "resource_missing")
    await env.put("/v1/objects/projects/p1", json={})
    assert_error(await env.get(f"/v1/objects/projects/p1/channel_data/{channel_id}"), 404)


@pytest.mark.parametrize(
    ("collection", "message"),
    [
        ("$users", "reserved"),
        ("$secret", "reserved"),
        ("has%20space", "letters, digits"),
        ("emoji%F0%9F%98%80", "letters, digits"),
        ("c" * 256, "letters, digits"),
    ],
)
async def test_bad_collections_are_refused(env: EnvFixture, collection: str, message: str) -> None:
    for response in (
        await env.put(f"/v1/objects/{collection}/o1", json={}),
        await env.get(f"/v1/objects/{collection}/o1"),
        await env.get(f"/v1/objects/{collection}"),
        await env.delete(f"/v1/objects/{collection}/o1"),
    ):
        body = assert_error(response, 422, "invalid_params")
        assert body["errors"][0]["field"] == "collection"
        assert message in body["errors"][0]["message"]


async def test_safe_collection_names_and_tenants_are_accepted(env: EnvFixture) -> None:
    for collection in ("projects", "Team_2", "org.units-v1", "$tenants"):
        response = await env.put(f"/v1/objects/{collection}/o1", json={"name": collection})
        assert response.status_code == 200, response.text
        assert response.json()["collection"] == collection
        assert (await env.get(f"/v1/objects/{collection}/o1")).status_code == 200


async def test_publishable_keys_are_refused(env: EnvFixture) -> None:
    await env.put("/v1/objects/projects/p1", json={})
    for method, path in (
        ("PUT", "/v1/objects/projects/p1"),
        ("GET", "/v1/objects/projects/p1"),
        ("GET", "/v1/objects/projects"),
        ("DELETE", "/v1/objects/projects/p1"),
    ):
        response = await env.request(method, path, json={}, kind=KeyKind.PUBLISHABLE)
        assert_error(response, 403, "incorrect_token_type")
    assert (await env.get("/v1/objects/projects/p1")).json()["properties"] == {}


async def test_environments_are_isolated(env: EnvFixture, other_env: EnvFixture) -> None:
    await env.put("/v1/objects/projects/shared", json={"owner": "env-one"})
    assert_error(await other_env.get("/v1/objects/projects/shared"), 404)
    assert (await other_env.get("/v1/objects/projects")).json()["entries"] == []
    assert_error(await other_env.delete("/v1/objects/projects/shared"), 404)
    await other_env.put("/v1/objects/projects/shared", json={"owner": "env-two"})
    assert (await env.get("/v1/objects/projects/shared")).json()["properties"] == {"owner": "env-one"}
    assert [o["id"] for o in (await env.get("/v1/objects/projects")).json()["entries"]] == ["shared"]

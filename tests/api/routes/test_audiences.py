from __future__ import annotations

from typing import Any

from knockapi.types.audience_list_members_response import AudienceListMembersResponse

from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error

MEMBERS = "/v1/audiences/beta/members"
CREATE = {"create_audience": "true"}


async def member_pairs(env: EnvFixture, path: str = MEMBERS) -> list[tuple[str, str | None]]:
    response = await env.get(path)
    assert response.status_code == 200, response.text
    return [(entry["user_id"], entry["tenant"]) for entry in response.json()["entries"]]


async def add(env: EnvFixture, members: list[dict[str, Any]], path: str = MEMBERS, **params: str) -> None:
    response = await env.post(path, json={"members": members}, params=params)
    assert response.status_code == 204, response.text


async def test_add_and_list_members(env: EnvFixture) -> None:
    await env.put("/v1/users/u1", json={"name": "Ann"})
    response = await env.post(
        MEMBERS,
        params=CREATE,
        json={
            "members": [{"user": {"id": "u1"}}, {"user": {"id": "u2", "email": "b@x.io"}, "tenant": "acme"}]
        },
    )
    assert response.status_code == 204, response.text
    assert response.content == b""

    listed = await env.get(MEMBERS)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    AudienceListMembersResponse.model_validate(body)
    first, second = body["entries"]
    assert first["__typename"] == "AudienceMember"
    assert first["user_id"] == "u1"
    assert first["tenant"] is None
    assert first["added_at"].endswith("Z")
    assert first["user"] == (await env.get("/v1/users/u1")).json()
    assert first["user"]["name"] == "Ann"
    assert (second["user_id"], second["tenant"]) == ("u2", "acme")
    assert second["user"]["email"] == "b@x.io"
    assert body["page_info"]["__typename"] == "PageInfo"


async def test_adding_identifies_users_inline(env: EnvFixture) -> None:
    await env.put("/v1/users/u1", json={"name": "Ann", "plan": {"tier": "free", "seats": 1}})
    await add(env, [{"user": {"id": "u1", "plan": {"tier": "pro"}, "locale": "fr"}}], **CREATE)
    user = (await env.get("/v1/users/u1")).json()
    assert user["name"] == "Ann"
    assert user["plan"] == {"tier": "pro", "seats": 1}
    assert user["locale"] == "fr"


async def test_unknown_audience_is_404_unless_created(env: EnvFixture) -> None:
    members = {"members": [{"user": {"id": "newcomer", "name": "N"}}]}
    assert_error(await env.post(MEMBERS, json=members), 404, "resource_missing")
    assert_error(await env.post(MEMBERS, json=members, params={"create_audience": "false"}), 404)
    assert_error(await env.get("/v1/users/newcomer"), 404)
    assert_error(await env.get(MEMBERS), 404, "resource_missing")
    assert_error(await env.delete(MEMBERS, json=members), 404, "resource_missing")

    await add(env, members["members"], **CREATE)
    assert await member_pairs(env) == [("newcomer", None)]
    # Once created, the audience takes members without the flag, and re-adding keeps one membership.
    await add(env, [{"user": {"id": "newcomer"}}, {"user": {"id": "second"}}])
    await add(env, [{"user": {"id": "second"}}], **CREATE)
    assert await member_pairs(env) == [("newcomer", None), ("second", None)]


async def test_membership_is_per_user_and_tenant(env: EnvFixture) -> None:
    await add(
        env,
        [
            {"user": {"id": "u1"}, "tenant": "acme"},
            {"user": {"id": "u1"}, "tenant": "globex"},
            {"user": {"id": "u1"}},
            {"user": {"id": "u2"}, "tenant": "acme"},
            {"user": {"id": "u2"}, "tenant": "acme"},
        ],
        **CREATE,
    )
    # Listed in insertion order; the rows of one request are inserted in key order (no tenant first).
    assert await member_pairs(env) == [("u1", None), ("u1", "acme"), ("u1", "globex"), ("u2", "acme")]

    # The tenant must match: no tenant matches only the tenant-less membership, a wrong tenant nothing.
    removal = {
        "members": [{"user": {"id": "u1"}, "tenant": "globex"}, {"user": {"id": "u2"}, "tenant": "other"}]
    }
    response = await env.delete(MEMBERS, json=removal)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert await member_pairs(env) == [("u1", None), ("u1", "acme"), ("u2", "acme")]
    assert (
        await env.delete(MEMBERS, json={"members": [{"user": {"id": "u2"}}, {"user": {"id": "u1"}}]})
    ).status_code == 204
    assert await member_pairs(env) == [("u1", "acme"), ("u2", "acme")]
    # Removing members never deletes their users.
    assert (await env.get("/v1/users/u1")).status_code == 200


async def test_at_most_1000_members_per_request(env: EnvFixture) -> None:
    too_many = [{"user": {"id": f"u{i}"}} for i in range(1001)]
    body = assert_error(
        await env.post(MEMBERS, json={"members": too_many}, params=CREATE), 422, "invalid_params"
    )
    assert body["errors"][0]["field"] == "members"
    # Nothing was written: not the audience, not the users.
    assert_error(await env.get(MEMBERS), 404)
    assert_error(await env.get("/v1/users/u0"), 404)
    assert_error(await env.delete(MEMBERS, json={"members": too_many}), 422, "invalid_params")

    await add(env, too_many[:1000], **CREATE)
    page = (await env.get(MEMBERS, params={"page_size": 50})).json()
    assert len(page["entries"]) == 50
    assert (await env.get("/v1/users/u999")).status_code == 200


async def test_bad_bodies_are_422_and_write_nothing(env: EnvFixture) -> None:
    cases: list[tuple[Any, str]] = [
        ({}, "members"),
        ({"members": "u1"}, "members"),
        ({"members": [{"tenant": "acme"}]}, "members.0.user"),
        ({"members": [{"user": "u1"}]}, "members.0.user"),
        ({"members": [{"user": {"name": "no id"}}]}, "members.0.user.id"),
        ({"members": [{"user": {"id": "u1"}, "tenant": ""}]}, "members.0.tenant"),
        ({"members": [{"user": {"id": "u1"}, "tenant": 5}]}, "members.0.tenant"),
        ({"members": [{"user": {"id": "u1", "email": 5}}]}, "members.0.user.email"),
        ({"members": [{"user": {"id": "u1"}, "role": "x"}]}, "members.0.role"),
        (
            {"members": [{"user": {"id": "u1", "channel_data": {"nope": {}}}}]},
            "members.0.user.channel_data.nope",
        ),
    ]
    for payload, field in cases:
        body = assert_error(await env.post(MEMBERS, json=payload, params=CREATE), 422, "invalid_params")
        assert body["errors"][0]["field"] == field, (payload, body)
    assert_error(await env.post(MEMBERS, json={"members": []}, params={"create_audience": "maybe"}), 422)
    assert_error(await env.get(MEMBERS), 404)
    assert_error(await env.get("/v1/users/u1"), 404)


async def test_list_pages_with_cursors(env: EnvFixture) -> None:
    await add(env, [{"user": {"id": f"u{i}"}} for i in range(5)], **CREATE)
    first = (await env.get(MEMBERS, params={"page_size": 2})).json()
    assert [e["user_id"] for e in first["entries"]] == ["u0", "u1"]
    assert first["page_info"]["before"] is None
    second = (await env.get(MEMBERS, params={"page_size": 2, "after": first["page_info"]["after"]})).json()
    assert [e["user_id"] for e in second["entries"]] == ["u2", "u3"]
    third = (await env.get(MEMBERS, params={"page_size": 2, "after": second["page_info"]["after"]})).json()
    assert [e["user_id"] for e in third["entries"]] == ["u4"]
    assert third["page_info"]["after"] is None
    back = (await env.get(MEMBERS, params={"page_size": 2, "before": third["page_info"]["before"]})).json()
    assert [e["user_id"] for e in back["entries"]] == ["u2", "u3"]
    assert_error(await env.get(MEMBERS, params={"page_size": 51}), 422, "invalid_params")


async def test_deleting_a_user_drops_its_memberships(env: EnvFixture) -> None:
    await add(env, [{"user": {"id": "u1"}}, {"user": {"id": "u2"}, "tenant": "acme"}], **CREATE)
    assert (await env.delete("/v1/users/u2")).status_code == 204
    assert await member_pairs(env) == [("u1", None)]


async def test_environments_are_isolated(env: EnvFixture, other_env: EnvFixture) -> None:
    await add(env, [{"user": {"id": "u1"}}], **CREATE)
    members = {"members": [{"user": {"id": "u1"}}]}
    assert_error(await other_env.get(MEMBERS), 404)
    assert_error(await other_env.post(MEMBERS, json=members), 404)
    assert_error(await other_env.delete(MEMBERS, json=members), 404)

    await add(other_env, [{"user": {"id": "u2"}}], **CREATE)
    assert await member_pairs(other_env) == [("u2", None)]
    assert (await other_env.delete(MEMBERS, json=members)).status_code == 204
    assert await member_pairs(env) == [("u1", None)]
    assert_error(await other_env.get("/v1/users/u1"), 404)


async def test_publishable_key_is_refused(env: EnvFixture) -> None:
    await add(env, [{"user": {"id": "u1"}}], **CREATE)
    members = {"members": [{"user": {"id": "u2"}}]}
    pk = KeyKind.PUBLISHABLE
    assert_error(await env.get(MEMBERS, kind=pk), 403, "incorrect_token_type")
    assert_error(await env.post(MEMBERS, json=members, params=CREATE, kind=pk), 403, "incorrect_token_type")
    assert_error(await env.delete(MEMBERS, json=members, kind=pk), 403, "incorrect_token_type")
    assert await member_pairs(env) == [("u1", None)]

"""Dynamic audiences keep their members in step with their users: every write of a user (identify, bulk
identify, merge, inline identify by a trigger, a subscription or an audience add) moves it in or out in
the same transaction, deleting it drops its memberships, and `is_audience_member` sees the result."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from clarion.engine.bulk import BULK_QUEUE
from clarion.runtime import build_worker
from clarion.store.membership_rules import NO_RULES
from clarion.store.recipients import InlineRecipientData
from tests.conftest import (
    EnvFixture,
    assert_error,
    feed_channel_id,
    push_audiences,
    push_workflow,
    run_workflow_jobs,
)
from tests.store.conftest import race, require_postgres


def condition(prop: str, operator: str, argument: Any = None) -> dict[str, Any]:
    return {"property": prop, "operator": operator, "argument": argument}


def dynamic(*segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "Dynamic", "type": "dynamic", "segments": [{"conditions": c} for c in segments]}


PREMIUM = dynamic([condition("recipient.plan", "equal_to", "premium")])


async def members(env: EnvFixture, key: str) -> list[tuple[str, str | None]]:
    response = await env.get(f"/v1/audiences/{key}/members")
    assert response.status_code == 200, response.text
    return sorted((entry["user_id"], entry["tenant"]) for entry in response.json()["entries"])


async def identify(env: EnvFixture, user_id: str, **properties: Any) -> None:
    response = await env.put(f"/v1/users/{user_id}", json=properties)
    assert response.status_code == 200, response.text


async def test_identify_moves_users_in_and_out(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    assert await members(env, "premium") == []
    await identify(env, "ann", plan="premium", name="Ann")
    await identify(env, "bob", plan="free")
    assert await members(env, "premium") == [("ann", None)]
    listed = (await env.get("/v1/audiences/premium/members")).json()["entries"][0]
    assert listed["__typename"] == "AudienceMember"
    assert listed["user"] == (await env.get("/v1/users/ann")).json()

    await identify(env, "bob", plan="premium")
    await identify(env, "ann", plan="free")
    assert await members(env, "premium") == [("bob", None)]
    # An identify that leaves the matching property alone keeps the membership (and its added_at).
    added_at = (await env.get("/v1/audiences/premium/members")).json()["entries"][0]["added_at"]
    await identify(env, "bob", name="Bob")
    [entry] = (await env.get("/v1/audiences/premium/members")).json()["entries"]
    assert (entry["user_id"], entry["added_at"]) == ("bob", added_at)


async def test_segments_are_ored_and_their_conditions_anded(env: EnvFixture, tmp_path: Path) -> None:
    audience = dynamic(
        [
            condition("recipient.plan", "equal_to", "premium"),
            condition("recipient.seats", "greater_than", 10),
        ],
        [condition("recipient.flags", "contains", "vip")],
    )
    await push_audiences(env, tmp_path, {"big": audience})
    await identify(env, "small", plan="premium", seats=3)
    await identify(env, "large", plan="premium", seats=50)
    await identify(env, "vip", plan="free", flags=["beta", "vip"])
    await identify(env, "none", seats=99)
    assert await members(env, "big") == [("large", None), ("vip", None)]


async def test_concurrent_identifies_in_one_batch_end_on_the_last(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    # Group committed together: the user ends as the last identify left it.
    await asyncio.gather(
        identify(env, "ann", plan="premium"),
        identify(env, "ann", plan="free"),
        identify(env, "bob", plan="premium"),
    )
    assert await members(env, "premium") == [("bob", None)]


async def test_bulk_identify_moves_users(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    await identify(env, "ann", plan="premium")
    users = [
        {"id": "ann", "plan": "free"},
        {"id": "bob", "plan": "premium"},
        {"id": "cat", "plan": "premium"},
    ]
    response = await env.post("/v1/users/bulk/identify", json={"users": users})
    assert response.status_code == 200, response.text
    await build_worker(env.runtime).drain([BULK_QUEUE])
    assert await members(env, "premium") == [("bob", None), ("cat", None)]


async def test_merge_moves_the_primary_and_drops_the_secondary(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    await identify(env, "invited", plan="premium")
    await identify(env, "signed-up", name="Ann")
    assert await members(env, "premium") == [("invited", None)]
    response = await env.post("/v1/users/signed-up/merge", json={"from_user_id": "invited"})
    assert response.status_code == 200, response.text
    assert await members(env, "premium") == [("signed-up", None)]


async def test_deleting_users_drops_their_memberships(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    for user_id in ("ann", "bob", "cat"):
        await identify(env, user_id, plan="premium")
    assert (await env.delete("/v1/users/ann")).status_code == 204
    response = await env.post("/v1/users/bulk/delete", json={"user_ids": ["bob"]})
    assert response.status_code == 200, response.text
    await build_worker(env.runtime).drain([BULK_QUEUE])
    assert await members(env, "premium") == [("cat", None)]
    # Identified again, a deleted user comes back in.
    await identify(env, "ann", plan="premium")
    assert await members(env, "premium") == [("ann", None), ("cat", None)]


async def test_inline_identify_by_a_trigger_moves_recipients_and_actor(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    step = {
        "ref": "feed",
        "type": "channel",
        "channel_key": "in-app-feed",
        "template": {"markdown_body": "Hi"},
    }
    await push_workflow(env, tmp_path, "hello", {"steps": [step]})
    await identify(env, "bob", plan="premium")
    response = await env.post(
        "/v1/workflows/hello/trigger",
        json={
            "recipients": [{"id": "ann", "plan": "premium"}, {"id": "bob", "plan": "free"}],
            "actor": {"id": "carol", "plan": "premium"},
        },
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    assert await members(env, "premium") == [("ann", None), ("carol", None)]


async def test_inline_identify_by_a_subscription_moves_users(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    assert (await env.put("/v1/objects/projects/p1", json={})).status_code == 200
    response = await env.post(
        "/v1/objects/projects/p1/subscriptions", json={"recipients": [{"id": "ann", "plan": "premium"}]}
    )
    assert response.status_code == 200, response.text
    assert await members(env, "premium") == [("ann", None)]


async def test_users_identified_by_a_static_audience_add_move_too(env: EnvFixture, tmp_path: Path) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    response = await env.post(
        "/v1/audiences/beta/members",
        params={"create_audience": "true"},
        json={"members": [{"user": {"id": "ann", "plan": "premium"}, "tenant": "acme"}]},
    )
    assert response.status_code == 204, response.text
    assert await members(env, "premium") == [("ann", None)]
    assert await members(env, "beta") == [("ann", "acme")]


async def test_membership_of_another_audience_counts_without_a_tenant(
    env: EnvFixture, tmp_path: Path
) -> None:
    audience = dynamic(
        [
            condition("recipient.plan", "equal_to", "premium"),
            condition("recipient.id", "is_audience_member", "beta"),
        ]
    )
    outsiders = dynamic([condition("recipient.id", "is_not_audience_member", "premium-beta")])
    await push_audiences(env, tmp_path, {"premium-beta": audience, "outsiders": outsiders})
    await identify(env, "ann", plan="premium")
    assert await members(env, "premium-beta") == []
    assert await members(env, "outsiders") == [("ann", None)]

    add = {"members": [{"user": {"id": "ann"}, "tenant": "acme"}, {"user": {"id": "bob", "plan": "premium"}}]}
    assert (
        await env.post("/v1/audiences/beta/members", params={"create_audience": "true"}, json=add)
    ).status_code == 204
    # Within one write, an audience sees the memberships of those it names as that write leaves them.
    assert await members(env, "premium-beta") == [("bob", None)]
    assert await members(env, "outsiders") == [("ann", None)]

    add = {"members": [{"user": {"id": "ann"}}]}
    assert (await env.post("/v1/audiences/beta/members", json=add)).status_code == 204
    assert await members(env, "premium-beta") == [("ann", None), ("bob", None)]
    assert await members(env, "outsiders") == []
    removal = {"members": [{"user": {"id": "bob"}}]}
    assert (await env.delete("/v1/audiences/beta/members", json=removal)).status_code == 204
    assert await members(env, "premium-beta") == [("ann", None)]
    assert await members(env, "outsiders") == [("bob", None)]


async def test_members_of_a_dynamic_audience_are_not_added_or_removed_by_request(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    await identify(env, "ann", plan="premium")
    add = {"members": [{"user": {"id": "bob", "plan": "free"}}]}
    for params in ({}, {"create_audience": "true"}):
        body = assert_error(
            await env.post("/v1/audiences/premium/members", json=add, params=params), 422, "invalid_params"
        )
        assert body["errors"][0]["field"] == "members"
        assert "dynamic" in body["message"]
    body = assert_error(
        await env.delete("/v1/audiences/premium/members", json={"members": [{"user": {"id": "ann"}}]}),
        422,
        "invalid_params",
    )
    assert body["errors"][0]["field"] == "members"
    # Nothing was written: not the user the add named, not the membership the removal named.
    assert_error(await env.get("/v1/users/bob"), 404)
    assert await members(env, "premium") == [("ann", None)]


async def test_dynamic_audiences_belong_to_their_environment(
    env: EnvFixture, other_env: EnvFixture, tmp_path: Path
) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    await identify(other_env, "ann", plan="premium")
    assert_error(await other_env.get("/v1/audiences/premium/members"), 404)
    assert await members(env, "premium") == []
    await identify(env, "ann", plan="premium")
    assert await members(env, "premium") == [("ann", None)]
    assert await other_env.runtime.audience_catalog.rules(other_env.id) is NO_RULES


async def test_an_environment_without_dynamic_audiences_follows_nothing(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_audiences(env, tmp_path, {"beta": {"name": "Beta", "type": "static"}})
    # The identify path asks this of every batch: without dynamic audiences, nothing to follow, so the
    # identify stays one statement.
    assert await env.runtime.audience_catalog.rules(env.id) is NO_RULES
    await identify(env, "ann", plan="premium")
    assert await members(env, "beta") == []


async def test_is_audience_member_conditions_see_dynamic_members_whatever_the_tenant(
    env: EnvFixture, tmp_path: Path
) -> None:
    await push_audiences(env, tmp_path, {"premium": PREMIUM})
    step = {
        "ref": "feed",
        "type": "channel",
        "channel_key": "in-app-feed",
        "template": {"markdown_body": "For premium users"},
        "conditions": {
            "all": [{"variable": "recipient.id", "operator": "is_audience_member", "argument": "premium"}]
        },
    }
    await push_workflow(env, tmp_path, "perk", {"steps": [step]})
    await identify(env, "ann", plan="premium")
    await identify(env, "bob", plan="free")
    for body in ({"recipients": ["ann", "bob"]}, {"recipients": ["ann", "bob"], "tenant": "acme"}):
        assert (await env.post("/v1/workflows/perk/trigger", json=body)).status_code == 200
    await run_workflow_jobs(env.runtime)
    channel = feed_channel_id(env.runtime)
    ann = (await env.get(f"/v1/users/ann/feeds/{channel}")).json()["entries"]
    bob = (await env.get(f"/v1/users/bob/feeds/{channel}")).json()["entries"]
    assert sorted(item["tenant"] or "" for item in ann) == ["", "acme"]
    assert bob == []


async def test_concurrent_writes_of_one_user_leave_its_membership_true(
    env: EnvFixture, tmp_path: Path
) -> None:
    require_postgres(env.runtime)
    await push_audiences(env, tmp_path, {"premium": PREMIUM})

    async def bulk(plan: str) -> None:
        # Two bulk identifies of the same users, each in its own transaction, racing on the users' rows.
        await env.runtime.users.identify_many(
            env.id, [(f"u{i}", {"plan": plan}, InlineRecipientData()) for i in range(50)]
        )

    await race(lambda: bulk("premium"), lambda: bulk("free"))
    plans = {(await env.get(f"/v1/users/u{i}")).json()["plan"] for i in range(50)}
    assert len(plans) == 1
    expected = [(f"u{i}", None) for i in range(50)] if plans == {"premium"} else []
    assert await members(env, "premium") == sorted(expected)


async def test_concurrent_adds_removals_and_identifies_do_not_deadlock(
    env: EnvFixture, tmp_path: Path
) -> None:
    require_postgres(env.runtime)
    in_beta = dynamic([condition("recipient.id", "is_audience_member", "beta")])
    await push_audiences(env, tmp_path, {"in-beta": in_beta})
    users = [f"u{i}" for i in range(40)]
    member_list = [{"user": {"id": user_id}} for user_id in users]
    assert (
        await env.post(
            "/v1/audiences/beta/members", params={"create_audience": "true"}, json={"members": member_list}
        )
    ).status_code == 204

    async def add() -> None:
        response = await env.post("/v1/audiences/beta/members", json={"members": member_list[::-1]})
        assert response.status_code == 204, response.text

    async def remove() -> None:
        response = await env.delete("/v1/audiences/beta/members", json={"members": member_list})
        assert response.status_code == 204, response.text

    async def identify_all() -> None:
        await env.runtime.users.identify_many(
            env.id, [(user_id, {"n": 1}, InlineRecipientData()) for user_id in users]
        )

    await race(add, remove, identify_all)
    # Whatever the order they committed in, the dynamic audience agrees with the static one.
    assert [user_id for user_id, _ in await members(env, "in-beta")] == [
        user_id for user_id, _ in await members(env, "beta")
    ]

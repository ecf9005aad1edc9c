from __future__ import annotations

import pytest

from clarion.errors import NotFoundError
from clarion.store.audiences import AudienceMemberInput, AudienceStore, MemberKey
from clarion.store.pagination import PageRequest
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import users
from tests.conftest import EnvFixture
from tests.store.conftest import race


def store(env: EnvFixture) -> AudienceStore:
    return env.runtime.audiences


def member(user_id: str, tenant: str | None = None) -> AudienceMemberInput:
    return AudienceMemberInput(MemberKey(user_id, tenant), {}, InlineRecipientData())


async def test_member_whose_user_is_gone_has_no_user(env: EnvFixture) -> None:
    await store(env).add_members(env.id, "a", [member("u1"), member("u2", "acme")], create_audience=True)
    # Remove the user row alone, as a concurrent delete could leave it between two reads.
    async with env.runtime.database.writer.begin() as connection:
        await connection.execute(users.delete().where(users.c.environment_id == env.id, users.c.id == "u2"))
    records, _ = await store(env).page_members(env.id, "a", PageRequest())
    assert [(r.user_id, r.tenant, r.user is not None) for r in records] == [
        ("u1", None, True),
        ("u2", "acme", False),
    ]


async def test_remove_members_counts_exact_matches(env: EnvFixture) -> None:
    await store(env).add_members(
        env.id, "a", [member("u1"), member("u1", "acme"), member("u2", "acme")], create_audience=True
    )
    removed = await store(env).remove_members(
        env.id,
        "a",
        [MemberKey("u1", "acme"), MemberKey("u2", None), MemberKey("u2", "acme"), MemberKey("u2", "acme")],
    )
    assert removed == 2
    records, _ = await store(env).page_members(env.id, "a", PageRequest())
    assert [(r.user_id, r.tenant) for r in records] == [("u1", None)]
    with pytest.raises(NotFoundError):
        await store(env).remove_members(env.id, "unknown", [MemberKey("u1", None)])
    with pytest.raises(NotFoundError):
        await store(env).page_members(env.id, "unknown", PageRequest())


async def test_audiences_belong_to_their_environment(env: EnvFixture, other_env: EnvFixture) -> None:
    await store(env).add_members(env.id, "a", [member("u1")], create_audience=True)
    with pytest.raises(NotFoundError):
        await store(other_env).add_members(other_env.id, "a", [member("u1")])
    with pytest.raises(NotFoundError):
        await store(other_env).page_members(other_env.id, "a", PageRequest())
    records, _ = await store(env).page_members(env.id, "a", PageRequest())
    assert [r.user_id for r in records] == ["u1"]


async def test_adds_of_the_same_members_in_opposite_orders_do_not_deadlock(env: EnvFixture) -> None:
    members = [
        AudienceMemberInput(MemberKey(f"u{i}", None), {"n": i}, InlineRecipientData()) for i in range(300)
    ]
    await store(env).add_members(env.id, "a", members, create_audience=True)

    async def forwards() -> None:
        await store(env).add_members(env.id, "a", members)

    async def backwards() -> None:
        await store(env).add_members(env.id, "a", members[::-1])

    await race(forwards, backwards)
    records, _ = await store(env).page_members(env.id, "a", PageRequest(page_size=50))
    assert len(records) == 50

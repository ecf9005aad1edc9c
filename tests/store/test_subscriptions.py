from __future__ import annotations

import pytest

from clarion.errors import InvalidInputError, NotFoundError
from clarion.store.pagination import PageRequest
from clarion.store.recipient_resolution import RecipientKey, RecipientUpsert
from clarion.store.recipients import InlineRecipientData
from clarion.store.subscriptions import SubscriptionEntry, SubscriptionRemoval, SubscriptionStore
from tests.conftest import EnvFixture
from tests.store.conftest import race


def store(env: EnvFixture) -> SubscriptionStore:
    return env.runtime.subscriptions


def inline_user(user_id: str, **properties: object) -> RecipientUpsert:
    return RecipientUpsert(RecipientKey.user(user_id), dict(properties), InlineRecipientData())


async def subscribers(env: EnvFixture, collection: str, object_id: str) -> list[tuple[str, str, object]]:
    records, _ = await store(env).page_subscribers(
        env.id, RecipientKey(collection, object_id), PageRequest(page_size=50)
    )
    return [(r.recipient.collection, r.recipient.id, r.properties) for r in records]


async def test_add_many_writes_what_exists_and_reports_the_rest(env: EnvFixture) -> None:
    await env.runtime.objects.set(env.id, "projects", "p1", {})
    await env.runtime.objects.set(env.id, "projects", "p2", {})
    await env.runtime.objects.set(env.id, "teams", "t1", {})
    await env.runtime.users.identify(env.id, "known", {})
    result = await store(env).add_many(
        env.id,
        "projects",
        [
            SubscriptionEntry("p1", [RecipientKey.user("known"), inline_user("fresh", name="F")], {"a": 1}),
            SubscriptionEntry("p2", [RecipientKey("teams", "t1"), RecipientKey.user("ghost")]),
            SubscriptionEntry("missing", [RecipientKey.user("known")]),
            SubscriptionEntry("p1", [RecipientKey.user("known"), RecipientKey("projects", "p1")], {"b": 2}),
        ],
    )
    assert result.success_count == 3
    assert result.failed == [
        RecipientKey.user("ghost"),
        RecipientKey("projects", "missing"),
        RecipientKey("projects", "p1"),
    ]
    # Rows of one write are inserted in key order (`clarion.store.batching`), and listed in insertion order.
    assert await subscribers(env, "projects", "p1") == [
        ("$users", "fresh", {"a": 1}),
        ("$users", "known", {"b": 2}),
    ]
    assert await subscribers(env, "projects", "p2") == [("teams", "t1", None)]
    assert (await env.runtime.users.get(env.id, "fresh")).properties == {"name": "F"}


async def test_add_many_handles_more_rows_than_one_statement_takes(env: EnvFixture) -> None:
    await env.runtime.objects.set(env.id, "projects", "big", {})
    recipients = [inline_user(f"u{i}") for i in range(1200)]
    result = await store(env).add_many(env.id, "projects", [SubscriptionEntry("big", recipients)])
    assert result.success_count == 1200
    assert result.failed == []
    page, _ = await store(env).page_subscribers(
        env.id, RecipientKey("projects", "big"), PageRequest(page_size=50)
    )
    assert len(page) == 50

    removed = await store(env).delete_many(
        env.id, "projects", [SubscriptionRemoval("big", [RecipientKey.user(f"u{i}") for i in range(1100)])]
    )
    assert removed == 1100
    remaining = await subscribers(env, "projects", "big")
    assert remaining[0] == ("$users", "u1100", None)
    assert len(remaining) == 50


async def test_delete_many_skips_what_does_not_exist(env: EnvFixture) -> None:
    await env.runtime.objects.set(env.id, "projects", "p1", {})
    await env.runtime.objects.set(env.id, "projects", "p2", {})
    await store(env).add_many(
        env.id,
        "projects",
        [
            SubscriptionEntry("p1", [inline_user("u1"), inline_user("u2")]),
            SubscriptionEntry("p2", [inline_user("u1")]),
        ],
    )
    removed = await store(env).delete_many(
        env.id,
        "projects",
        [
            SubscriptionRemoval("p1", [RecipientKey.user("u1"), RecipientKey.user("nobody")]),
            SubscriptionRemoval("ghost", [RecipientKey.user("u1")]),
            SubscriptionRemoval("p2", [RecipientKey.user("u1"), RecipientKey.user("u1")]),
        ],
    )
    assert removed == 2
    assert await subscribers(env, "projects", "p1") == [("$users", "u2", None)]
    assert await subscribers(env, "projects", "p2") == []


async def test_bulk_methods_stay_in_their_environment(env: EnvFixture, other_env: EnvFixture) -> None:
    await env.runtime.objects.set(env.id, "projects", "p1", {})
    await store(env).add_many(env.id, "projects", [SubscriptionEntry("p1", [inline_user("u1")])])
    other = await store(other_env).add_many(
        other_env.id, "projects", [SubscriptionEntry("p1", [RecipientKey.user("u1")])]
    )
    assert other.success_count == 0
    assert other.failed == [RecipientKey("projects", "p1")]
    removed = await store(other_env).delete_many(
        other_env.id, "projects", [SubscriptionRemoval("p1", [RecipientKey.user("u1")])]
    )
    assert removed == 0
    assert await subscribers(env, "projects", "p1") == [("$users", "u1", None)]


async def test_add_is_all_or_nothing(env: EnvFixture) -> None:
    await env.runtime.objects.set(env.id, "projects", "p1", {})
    with pytest.raises(InvalidInputError) as raised:
        await store(env).add(env.id, "projects", "p1", [inline_user("u1"), RecipientKey.user("ghost")], None)
    assert [error.field for error in raised.value.errors] == ["recipients.1"]
    with pytest.raises(NotFoundError):
        await env.runtime.users.get(env.id, "u1")
    with pytest.raises(NotFoundError):
        await store(env).add(env.id, "projects", "nope", [inline_user("u2")], None)
    with pytest.raises(NotFoundError):
        await env.runtime.users.get(env.id, "u2")


async def test_subscribing_the_same_recipients_in_opposite_orders_does_not_deadlock(env: EnvFixture) -> None:
    keys = [RecipientKey.user(f"u{i}") for i in range(300)]
    await env.runtime.users.identify_many(env.id, [(key.id, {}, InlineRecipientData()) for key in keys])
    await env.runtime.objects.set(env.id, "projects", "p1", {})

    async def forwards() -> None:
        await store(env).add(env.id, "projects", "p1", keys, {"order": "forwards"})

    async def backwards() -> None:
        await store(env).add_many(
            env.id, "projects", [SubscriptionEntry("p1", keys[::-1], {"order": "backwards"})]
        )

    await race(forwards, backwards)
    assert len(await subscribers(env, "projects", "p1")) == 50

from __future__ import annotations

import asyncio

from clarion.runtime import Runtime
from clarion.store.batching import ROWS_PER_STATEMENT
from clarion.store.preferences import PersistenceStrategy, PreferenceSetRecord
from clarion.store.recipient_resolution import RecipientKey, load_recipients
from clarion.store.tables import USERS_COLLECTION
from tests.conftest import EnvFixture
from tests.store.conftest import race


async def test_replace_many_overwrites_in_batches_and_creates_users(
    runtime: Runtime, env: EnvFixture
) -> None:
    store = runtime.preferences
    await store.write(
        env.id, USERS_COLLECTION, "u0", "default", {"workflows": {"old": False}, "channel_types": {}}
    )
    await runtime.users.identify(env.id, "u1", {"name": "Kept"})
    user_ids = [f"u{i}" for i in range(ROWS_PER_STATEMENT + 7)]
    body = {"channel_types": {"email": False}}

    written = await store.replace_many(env.id, USERS_COLLECTION, [*user_ids, "u0"], "default", body)

    assert written == len(user_ids)
    found = await store.get_many(env.id, USERS_COLLECTION, user_ids, "default")
    assert all(record == PreferenceSetRecord("default", body) for record in found.values())
    async with runtime.database.reader.connect() as connection:
        users = await load_recipients(connection, env.id, map(RecipientKey.user, user_ids))
    assert set(users) == set(map(RecipientKey.user, user_ids))
    assert users[RecipientKey.user("u1")].properties == {"name": "Kept"}


async def test_replace_many_touches_only_its_set_and_environment(
    runtime: Runtime, env: EnvFixture, other_env: EnvFixture
) -> None:
    store = runtime.preferences
    await store.write(env.id, USERS_COLLECTION, "u1", "acme", {"workflows": {"a": False}})
    await store.write(other_env.id, USERS_COLLECTION, "u1", "default", {"workflows": {"b": False}})

    await store.replace_many(env.id, USERS_COLLECTION, ["u1"], "default", {"categories": {"c": False}})

    assert await store.list_sets(env.id, USERS_COLLECTION, "u1") == [
        PreferenceSetRecord("default", {"categories": {"c": False}}),
        PreferenceSetRecord("acme", {"workflows": {"a": False}}),
    ]
    assert await store.list_sets(other_env.id, USERS_COLLECTION, "u1") == [
        PreferenceSetRecord("default", {"workflows": {"b": False}})
    ]


async def test_concurrent_merges_lose_no_key(runtime: Runtime, env: EnvFixture) -> None:
    store = runtime.preferences
    await asyncio.gather(
        *(
            store.write(
                env.id,
                "projects",
                "p1",
                "default",
                {"workflows": {f"w{i}": False}},
                PersistenceStrategy.MERGE,
            )
            for i in range(16)
        )
    )
    record = await store.get(env.id, "projects", "p1", "default")
    assert record.preferences == {"workflows": {f"w{i}": False for i in range(16)}}


async def test_write_at_replaces_only_its_path(runtime: Runtime, env: EnvFixture) -> None:
    store = runtime.preferences
    await store.write(
        env.id,
        USERS_COLLECTION,
        "u1",
        "default",
        {"workflows": {"a": {"channel_types": {"email": False}}, "b": True}},
    )
    record = await store.write_at(
        env.id, USERS_COLLECTION, "u1", "default", ["workflows", "a"], {"conditions": []}
    )
    assert record.preferences == {"workflows": {"a": {"conditions": []}, "b": True}}
    record = await store.write_at(
        env.id, USERS_COLLECTION, "u1", "default", ["channel_types"], {"sms": False}
    )
    assert record.preferences == {
        "workflows": {"a": {"conditions": []}, "b": True},
        "channel_types": {"sms": False},
    }


async def test_bulk_replaces_of_the_same_users_in_opposite_orders_do_not_deadlock(
    runtime: Runtime, env: EnvFixture
) -> None:
    user_ids = [f"u{i}" for i in range(300)]
    body = {"channel_types": {"email": False}}
    await runtime.preferences.replace_many(env.id, USERS_COLLECTION, user_ids, "default", body)

    async def forwards() -> None:
        await runtime.preferences.replace_many(env.id, USERS_COLLECTION, user_ids, "default", body)

    async def backwards() -> None:
        await runtime.preferences.replace_many(env.id, USERS_COLLECTION, user_ids[::-1], "default", body)

    await race(forwards, backwards)
    assert (await runtime.preferences.get(env.id, USERS_COLLECTION, "u7", "default")).preferences == body

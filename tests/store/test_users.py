from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store import dialect
from clarion.store.db import Database
from clarion.store.preferences import PreferenceSetRecord
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import USERS_COLLECTION, preference_sets, users
from clarion.store.users import UserStore
from tests.conftest import EnvFixture
from tests.store.conftest import race, require_postgres, wait_until_blocked

NO_INLINE = InlineRecipientData()


@contextmanager
def counted_inserts(database: Database) -> Iterator[list[str]]:
    """The INSERT statements the database's writer sends while the block runs."""
    sent: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            sent.append(statement)

    sa.event.listen(database.writer.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(database.writer.sync_engine, "before_cursor_execute", record)


async def test_identify_many_applies_repeated_users_one_after_another(
    runtime: Runtime, env: EnvFixture
) -> None:
    await runtime.users.identify(
        env.id,
        "u",
        {"x": {"b": 2}},
        InlineRecipientData(preferences={"default": {"workflows": {"w": {"channel_types": {"sms": False}}}}}),
    )
    records = await runtime.users.identify_many(
        env.id,
        [
            ("u", {"x": 5}, InlineRecipientData(preferences={"default": {"workflows": {"w": False}}})),
            ("v", {"n": 1}, NO_INLINE),
            (
                "u",
                {"x": {"a": 1}},
                InlineRecipientData(
                    preferences={"default": {"workflows": {"w": {"channel_types": {"email": True}}}}}
                ),
            ),
        ],
    )
    assert [(record.id, record.properties) for record in records] == [
        ("u", {"x": 5}),
        ("v", {"n": 1}),
        ("u", {"x": {"a": 1}}),
    ]
    assert (await runtime.users.get(env.id, "u")).properties == {"x": {"a": 1}}
    assert await runtime.preferences.get(env.id, USERS_COLLECTION, "u", "default") == PreferenceSetRecord(
        "default", {"workflows": {"w": {"channel_types": {"email": True}}}}
    )


async def test_identify_many_of_distinct_users_merges_and_answers_in_the_given_order(
    runtime: Runtime, env: EnvFixture
) -> None:
    # Distinct users without inline data are one statement, written in key order: the answer must still
    # follow the request's order, and each user merge onto what was stored.
    await runtime.users.identify(env.id, "b", {"plan": {"tier": "free", "seats": 1}})
    records = await runtime.users.identify_many(
        env.id,
        [("c", {"n": 3}, NO_INLINE), ("a", {"n": 1}, NO_INLINE), ("b", {"plan": {"tier": "pro"}}, NO_INLINE)],
    )
    assert [(record.id, record.properties) for record in records] == [
        ("c", {"n": 3}),
        ("a", {"n": 1}),
        ("b", {"plan": {"tier": "pro", "seats": 1}}),
    ]
    assert (await runtime.users.get(env.id, "b")).properties == {"plan": {"tier": "pro", "seats": 1}}


async def test_inline_data_of_many_users_costs_one_statement_per_table(
    runtime: Runtime, env: EnvFixture
) -> None:
    entries = [
        (
            f"u{i}",
            {"n": i},
            InlineRecipientData(
                channel_data={"chan": {"tokens": [f"t{i}"]}},
                preferences={"default": {"categories": {"c": i > 5}}},
            ),
        )
        for i in range(50)
    ]
    with counted_inserts(runtime.database) as sent:
        await runtime.users.identify_many(env.id, entries)
    assert [statement.split()[2] for statement in sent] == ["users", "channel_data", "preference_sets"]
    assert await runtime.channel_data.find(env.id, USERS_COLLECTION, "u7", "chan") is not None
    assert (await runtime.preferences.get(env.id, USERS_COLLECTION, "u7", "default")).preferences == {
        "categories": {"c": True}
    }


async def test_identifies_from_two_processes_lose_no_property(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    processes = [runtime.users, UserStore(second_database)]
    await asyncio.gather(
        *(processes[i % 2].identify(env.id, "racer", {f"p{i}": i, "nested": {f"k{i}": i}}) for i in range(40))
    )
    user = await runtime.users.get(env.id, "racer")
    assert user.properties == {
        **{f"p{i}": i for i in range(40)},
        "nested": {f"k{i}": i for i in range(40)},
    }


async def test_bulk_identify_and_group_commit_in_opposite_orders_do_not_deadlock(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    user_ids = [f"u{i}" for i in range(300)]
    group_committed = UserStore(second_database)
    await runtime.users.identify_many(env.id, [(user_id, {}, NO_INLINE) for user_id in user_ids])

    async def identify_one_by_one() -> None:
        await asyncio.gather(*(group_committed.identify(env.id, user_id, {"a": 1}) for user_id in user_ids))

    async def identify_in_bulk() -> None:
        await runtime.users.identify_many(
            env.id, [(user_id, {"b": 1}, NO_INLINE) for user_id in reversed(user_ids)]
        )

    await race(identify_one_by_one, identify_in_bulk, trials=20)
    assert (await runtime.users.get(env.id, "u150")).properties == {"a": 1, "b": 1}


async def test_merge_keeps_an_identify_committed_meanwhile(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    require_postgres(runtime)
    await runtime.users.identify(env.id, "primary", {"a": 1})
    await runtime.users.identify(env.id, "secondary", {"s": 1})
    async with second_database.writer.begin() as connection:
        # Another process's identify of the primary, not yet committed when the merge starts.
        await connection.execute(
            users.update()
            .where(users.c.environment_id == env.id, users.c.id == "primary")
            .values(
                properties=dialect.deep_merge(
                    users.c.properties, sa.literal({"late": True}, dialect.JSONType)
                )
            )
        )
        merge = asyncio.create_task(runtime.users.merge(env.id, "primary", "secondary"))
        await wait_until_blocked(second_database)
    merged = await merge
    assert merged.properties == {"a": 1, "s": 1, "late": True}
    assert (await runtime.users.get(env.id, "primary")).properties == merged.properties


async def test_merge_keeps_a_preference_set_written_meanwhile(
    runtime: Runtime, second_database: Database, env: EnvFixture
) -> None:
    require_postgres(runtime)
    await runtime.users.identify(env.id, "primary", {})
    await runtime.users.identify(
        env.id, "secondary", {}, InlineRecipientData(preferences={"default": {"categories": {"from": True}}})
    )
    async with second_database.writer.begin() as connection:
        await connection.execute(
            sa.insert(preference_sets).values(
                environment_id=env.id,
                recipient_collection=USERS_COLLECTION,
                recipient_id="primary",
                set_id="default",
                preferences={"categories": {"own": True}},
                inserted_at=sa.func.now(),
                updated_at=sa.func.now(),
            )
        )
        merge = asyncio.create_task(runtime.users.merge(env.id, "primary", "secondary"))
        await wait_until_blocked(second_database)
    await merge
    assert await runtime.preferences.get(
        env.id, USERS_COLLECTION, "primary", "default"
    ) == PreferenceSetRecord("default", {"categories": {"own": True}})
    assert await runtime.preferences.list_sets(env.id, USERS_COLLECTION, "secondary") == []


async def test_merge_adopts_what_the_primary_lacks(runtime: Runtime, env: EnvFixture) -> None:
    await runtime.users.identify(
        env.id,
        "primary",
        {"name": "P", "a": {"x": 1}},
        InlineRecipientData(
            channel_data={"c1": {"tokens": ["p"]}}, preferences={"default": {"categories": {}}}
        ),
    )
    await runtime.users.identify(
        env.id,
        "secondary",
        {"name": "S", "a": {"y": 2}},
        InlineRecipientData(
            channel_data={"c1": {"tokens": ["s"]}, "c2": {"tokens": ["s2"]}},
            preferences={"default": {"workflows": {}}, "acme": {"categories": {"z": False}}},
        ),
    )
    merged = await runtime.users.merge(env.id, "primary", "secondary")
    assert merged.properties == {"name": "P", "a": {"x": 1, "y": 2}}
    found = {
        channel: await runtime.channel_data.find(env.id, USERS_COLLECTION, "primary", channel)
        for channel in ("c1", "c2")
    }
    assert {channel: record.data for channel, record in found.items() if record} == {
        "c1": {"tokens": ["p"]},
        "c2": {"tokens": ["s2"]},
    }
    assert await runtime.preferences.list_sets(env.id, USERS_COLLECTION, "primary") == [
        PreferenceSetRecord("default", {"categories": {}}),
        PreferenceSetRecord("acme", {"categories": {"z": False}}),
    ]
    assert await runtime.channel_data.find(env.id, USERS_COLLECTION, "secondary", "c2") is None
    assert (await runtime.users.merge(env.id, "primary", "primary")) == merged

from __future__ import annotations

from clarion.store.recipient_resolution import (
    RecipientKey,
    RecipientUpsert,
    load_recipients,
    upsert_recipients,
)
from clarion.store.recipients import InlineRecipientData
from tests.conftest import EnvFixture


def upsert(key: RecipientKey, **properties: object) -> RecipientUpsert:
    return RecipientUpsert(key, dict(properties), InlineRecipientData())


async def test_upserts_inline_recipients_and_leaves_references_alone(env: EnvFixture) -> None:
    await env.runtime.users.identify(env.id, "known", {"name": "Known", "plan": {"tier": "free"}})
    async with env.runtime.database.writer.begin() as connection:
        await upsert_recipients(
            connection,
            env.id,
            [
                RecipientKey.user("known"),
                RecipientKey.user("reference-only"),
                upsert(RecipientKey.user("known"), plan={"seats": 2}),
                upsert(RecipientKey("teams", "t1"), name="Team"),
                upsert(RecipientKey("projects", "p1")),
                upsert(RecipientKey("teams", "t1"), size=3),
            ],
        )
    async with env.runtime.database.reader.connect() as connection:
        found = await load_recipients(
            connection,
            env.id,
            [
                RecipientKey.user("known"),
                RecipientKey.user("reference-only"),
                RecipientKey("teams", "t1"),
                RecipientKey("projects", "p1"),
                RecipientKey("projects", "t1"),
            ],
        )
    assert sorted(found) == [
        RecipientKey("$users", "known"),
        RecipientKey("projects", "p1"),
        RecipientKey("teams", "t1"),
    ]
    assert found[RecipientKey.user("known")].properties == {
        "name": "Known",
        "plan": {"tier": "free", "seats": 2},
    }
    assert found[RecipientKey("teams", "t1")].properties == {"name": "Team", "size": 3}
    assert found[RecipientKey("teams", "t1")].collection == "teams"


async def test_loads_more_keys_than_one_statement_takes(env: EnvFixture) -> None:
    keys = [RecipientKey.user(f"u{i}") for i in range(1100)] + [
        RecipientKey("docs", f"d{i}") for i in range(1100)
    ]
    async with env.runtime.database.writer.begin() as connection:
        await upsert_recipients(connection, env.id, [upsert(key) for key in keys])
        locked = await load_recipients(connection, env.id, keys, lock=True)
    assert len(locked) == 2200


async def test_loads_only_the_callers_environment(env: EnvFixture, other_env: EnvFixture) -> None:
    async with env.runtime.database.writer.begin() as connection:
        await upsert_recipients(
            connection, env.id, [upsert(RecipientKey.user("u1")), upsert(RecipientKey("t", "o1"))]
        )
    async with other_env.runtime.database.reader.connect() as connection:
        found = await load_recipients(
            connection, other_env.id, [RecipientKey.user("u1"), RecipientKey("t", "o1")]
        )
    assert found == {}

from __future__ import annotations

from clarion.runtime import Runtime
from clarion.store.preferences import PersistenceStrategy
from clarion.store.recipients import InlineRecipientData
from clarion.store.tenants import DefaultPreferencesWrite, TenantEntry
from tests.conftest import EnvFixture
from tests.store.conftest import race


async def test_set_many_writes_properties_and_default_sets_in_one_go(
    runtime: Runtime, env: EnvFixture
) -> None:
    store = runtime.tenants
    await store.set(
        env.id,
        TenantEntry(
            "b", {"name": "B"}, default_preferences=DefaultPreferencesWrite({"workflows": {"x": False}})
        ),
    )
    records = await store.set_many(
        env.id,
        [
            TenantEntry(
                "a", {"name": "A"}, default_preferences=DefaultPreferencesWrite({"workflows": {"a": False}})
            ),
            TenantEntry(
                "b", {"plan": "pro"}, default_preferences=DefaultPreferencesWrite({"workflows": {"y": False}})
            ),
            TenantEntry(
                "c",
                {},
                InlineRecipientData(preferences={"acme": {"channel_types": {"sms": False}}}),
                DefaultPreferencesWrite({"categories": {}}, PersistenceStrategy.REPLACE),
            ),
            TenantEntry("a", {"plan": "free"}),
        ],
    )
    assert [r.id for r in records] == ["a", "b", "c", "a"]
    assert records[0].properties == {"name": "A"}
    by_id = {r.id: r for r in records}
    assert by_id["a"].properties == {"name": "A", "plan": "free"}
    assert by_id["a"].default_preferences == {"workflows": {"a": False}}
    assert by_id["b"].properties == {"name": "B", "plan": "pro"}
    assert by_id["b"].default_preferences == {"workflows": {"x": False, "y": False}}
    assert by_id["c"].default_preferences == {"categories": {}}
    assert (await runtime.preferences.get(env.id, "$tenants", "c", "acme")).preferences == {
        "channel_types": {"sms": False}
    }
    assert await store.get_many(env.id, ["a", "b", "c"]) == by_id


async def test_delete_many_removes_tenants_and_their_default_sets(
    runtime: Runtime, env: EnvFixture, other_env: EnvFixture
) -> None:
    store = runtime.tenants
    entries = [
        TenantEntry(t, {}, default_preferences=DefaultPreferencesWrite({"workflows": {}})) for t in "abc"
    ]
    await store.set_many(env.id, entries)
    await store.set_many(other_env.id, entries)

    assert await store.delete_many(env.id, ["a", "b", "ghost"]) == 2

    assert set(await store.get_many(env.id, ["a", "b", "c"])) == {"c"}
    assert (await runtime.preferences.get(env.id, "$tenants", "a", "default")).preferences == {}
    assert set(await store.get_many(other_env.id, ["a", "b", "c"])) == {"a", "b", "c"}


async def test_bulk_sets_of_the_same_tenants_in_opposite_orders_do_not_deadlock(
    runtime: Runtime, env: EnvFixture
) -> None:
    entries = [
        TenantEntry(
            f"t{i}", {"n": i}, default_preferences=DefaultPreferencesWrite({"workflows": {f"w{i}": True}})
        )
        for i in range(300)
    ]
    await runtime.tenants.set_many(env.id, entries)

    async def forwards() -> None:
        await runtime.tenants.set_many(env.id, entries)

    async def backwards() -> None:
        await runtime.tenants.set_many(env.id, entries[::-1])

    await race(forwards, backwards)
    assert (await runtime.tenants.get(env.id, "t7")).default_preferences == {"workflows": {"w7": True}}


async def test_set_many_applies_repeated_tenants_one_after_another(runtime: Runtime, env: EnvFixture) -> None:
    await runtime.tenants.set(
        env.id,
        TenantEntry("t", {}, default_preferences=DefaultPreferencesWrite({"workflows": {"old": True}})),
    )
    records = await runtime.tenants.set_many(
        env.id,
        [
            TenantEntry(
                "t",
                {"n": 1},
                default_preferences=DefaultPreferencesWrite({"categories": {}}, PersistenceStrategy.REPLACE),
            ),
            TenantEntry(
                "t", {"m": 2}, default_preferences=DefaultPreferencesWrite({"workflows": {"new": True}})
            ),
            TenantEntry("t", {"k": 3}),
        ],
    )
    assert [(record.properties, record.default_preferences) for record in records] == [
        ({"n": 1}, {"categories": {}}),
        ({"n": 1, "m": 2}, {"categories": {}, "workflows": {"new": True}}),
        ({"n": 1, "m": 2, "k": 3}, {"categories": {}, "workflows": {"new": True}}),
    ]

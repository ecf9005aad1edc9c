from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error

USER = "/v1/users/u1/preferences"
OBJECT = "/v1/objects/projects/p1/preferences"
RECIPIENTS = pytest.mark.parametrize("base", [USER, OBJECT], ids=["user", "object"])

SET_FIELDS = {
    "__typename",
    "id",
    "categories",
    "channel_types",
    "channels",
    "commercial_subscribed",
    "workflows",
}
CONDITION = {"variable": "recipient.country", "operator": "equal_to", "argument": "US"}
CHANNEL_ID = "2f641633-95d3-4555-9222-9f1eb7888a80"


def preference_set(set_id: str = "default", **sections: Any) -> dict[str, Any]:
    empty: dict[str, Any] = dict.fromkeys(SET_FIELDS - {"__typename", "id"})
    return {"__typename": "PreferenceSet", "id": set_id, **empty, **sections}


# (writes in order: (method, path under the set, body)), then the set every write and the final GET return.
WRITE_CASES: dict[str, tuple[list[tuple[str, str, Any]], dict[str, Any]]] = {
    "put replaces the whole set": (
        [
            ("PUT", "", {"channel_types": {"email": False}, "workflows": {"a": False}}),
            ("PUT", "", {"categories": {"marketing": False}}),
        ],
        {"categories": {"marketing": False}},
    ),
    "put with strategy replace replaces": (
        [
            ("PUT", "", {"channel_types": {"email": False}}),
            ("PUT", "", {"__persistence_strategy__": "replace", "workflows": {"a": True}}),
        ],
        {"workflows": {"a": True}},
    ),
    "put with strategy merge deep-merges": (
        [
            ("PUT", "", {"categories": {"collab": {"channel_types": {"email": True, "in_app_feed": True}}}}),
            (
                "PUT",
                "",
                {
                    "__persistence_strategy__": "merge",
                    "categories": {"collab": {"channel_types": {"email": False}}},
                },
            ),
        ],
        {"categories": {"collab": {"channel_types": {"email": False, "in_app_feed": True}}}},
    ),
    "every value shape the spec allows round-trips": (
        [
            (
                "PUT",
                "",
                {
                    "categories": {"marketing": False, "transactional": {"channel_types": {"email": False}}},
                    "channel_types": {"email": True, "push": False, "sms": {"conditions": [CONDITION]}},
                    "channels": {CHANNEL_ID: {"conditions": [CONDITION]}, "aef6e715-df82": True},
                    "commercial_subscribed": {"conditions": [CONDITION]},
                    "workflows": {
                        "dinosaurs-loose": {
                            "channels": {CHANNEL_ID: False},
                            "conditions": [{"variable": "data.x", "operator": "exists", "argument": None}],
                        }
                    },
                },
            )
        ],
        {
            "categories": {"marketing": False, "transactional": {"channel_types": {"email": False}}},
            "channel_types": {"email": True, "push": False, "sms": {"conditions": [CONDITION]}},
            "channels": {CHANNEL_ID: {"conditions": [CONDITION]}, "aef6e715-df82": True},
            "commercial_subscribed": {"conditions": [CONDITION]},
            "workflows": {
                "dinosaurs-loose": {
                    "channels": {CHANNEL_ID: False},
                    "conditions": [{"variable": "data.x", "operator": "exists", "argument": None}],
                }
            },
        },
    ),
    "id and __typename of a read set are ignored on write": (
        [("PUT", "", {**preference_set("other", workflows={"a": False}), "commercial_subscribed": True})],
        {"workflows": {"a": False}, "commercial_subscribed": True},
    ),
    "workflows section replaces only workflows": (
        [
            ("PUT", "", {"workflows": {"a": False, "b": False}, "channel_types": {"sms": False}}),
            ("PUT", "/workflows", {"c": {"channel_types": {"email": False}}}),
        ],
        {"workflows": {"c": {"channel_types": {"email": False}}}, "channel_types": {"sms": False}},
    ),
    "one workflow set to a boolean": (
        [
            ("PUT", "", {"workflows": {"a": {"channel_types": {"email": False}}, "b": True}}),
            ("PUT", "/workflows/a", {"subscribed": False}),
        ],
        {"workflows": {"a": False, "b": True}},
    ),
    "one workflow set to a settings object replaces its old value": (
        [
            ("PUT", "", {"workflows": {"a": {"channel_types": {"email": False, "sms": False}}}}),
            ("PUT", "/workflows/a", {"channel_types": {"push": False}}),
        ],
        {"workflows": {"a": {"channel_types": {"push": False}}}},
    ),
    "categories section and one category": (
        [
            ("PUT", "/categories", {"marketing": False, "alerts": True}),
            ("PUT", "/categories/alerts", {"conditions": [CONDITION]}),
        ],
        {"categories": {"marketing": False, "alerts": {"conditions": [CONDITION]}}},
    ),
    "channel types section and one channel type": (
        [
            ("PUT", "", {"channel_types": {"email": False, "sms": False}, "workflows": {"a": True}}),
            ("PUT", "/channel_types", {"push": False, "chat": True}),
            ("PUT", "/channel_types/http", {"subscribed": False}),
            ("PUT", "/channel_types/chat", {"conditions": [CONDITION]}),
        ],
        {
            "channel_types": {"push": False, "chat": {"conditions": [CONDITION]}, "http": False},
            "workflows": {"a": True},
        },
    ),
    "a section update on a set never written creates it": (
        [("PUT", "/workflows/new-comment", {"subscribed": False})],
        {"workflows": {"new-comment": False}},
    ),
}


@RECIPIENTS
@pytest.mark.parametrize("case", list(WRITE_CASES))
async def test_preference_writes(env: EnvFixture, base: str, case: str) -> None:
    writes, expected = WRITE_CASES[case]
    for method, suffix, body in writes:
        response = await env.request(method, f"{base}/default{suffix}", json=body)
        assert response.status_code == 200, response.text
        assert set(response.json()) == SET_FIELDS
    assert response.json() == preference_set(**expected)
    assert (await env.get(f"{base}/default")).json() == preference_set(**expected)


@RECIPIENTS
async def test_unwritten_set_is_an_empty_set(env: EnvFixture, base: str) -> None:
    response = await env.get(f"{base}/some-tenant")
    assert response.status_code == 200
    assert response.json() == preference_set("some-tenant")
    assert (await env.get(base)).json() == []


async def test_writing_preferences_creates_the_recipient(env: EnvFixture) -> None:
    assert_error(await env.get("/v1/users/u1"), 404)
    await env.put(f"{USER}/default", json={"workflows": {"a": False}})
    user = (await env.get("/v1/users/u1")).json()
    assert user["id"] == "u1"
    await env.put("/v1/users/u1", json={"name": "Ann"})
    await env.put(f"{USER}/default/channel_types/email", json={"subscribed": False})
    assert (await env.get("/v1/users/u1")).json()["name"] == "Ann"

    await env.put(f"{OBJECT}/default/workflows/a", json={"subscribed": True})
    assert (await env.get("/v1/objects/projects/p1")).json()["id"] == "p1"


@RECIPIENTS
async def test_list_sets_default_first(env: EnvFixture, base: str) -> None:
    for set_id in ("tenant-b", "default", "tenant-a"):
        await env.put(f"{base}/{set_id}", json={"workflows": {set_id: False}})
    sets = (await env.get(base)).json()
    assert [s["id"] for s in sets] == ["default", "tenant-a", "tenant-b"]
    assert sets[1] == preference_set("tenant-a", workflows={"tenant-a": False})


@RECIPIENTS
async def test_delete_set(env: EnvFixture, base: str) -> None:
    await env.put(f"{base}/default", json={"workflows": {"a": False}})
    await env.put(f"{base}/acme", json={"workflows": {"b": False}})
    response = await env.delete(f"{base}/default")
    assert response.status_code == 204
    assert response.content == b""
    assert (await env.get(f"{base}/default")).json() == preference_set()
    assert [s["id"] for s in (await env.get(base)).json()] == ["acme"]
    # Deleting a set that does not exist is not an error.
    assert (await env.delete(f"{base}/default")).status_code == 204


async def test_concurrent_section_updates_lose_nothing(env: EnvFixture) -> None:
    await asyncio.gather(
        *(env.put(f"{USER}/default/workflows/w{i}", json={"subscribed": i % 2 == 0}) for i in range(12))
    )
    workflows = (await env.get(f"{USER}/default")).json()["workflows"]
    assert workflows == {f"w{i}": i % 2 == 0 for i in range(12)}


TENANT_DEFAULT = {
    "categories": {
        "collaboration": {"__strategy__": "replace", "channel_types": {"email": False}},
        "project-updates": {"channel_types": {"email": False}},
        "reminders": True,
    },
    "channel_types": {"sms": False},
}


async def test_tenant_query_lays_the_tenant_default_under_the_set(env: EnvFixture) -> None:
    tenant = await env.put("/v1/tenants/acme", json={"settings": {"preference_set": TENANT_DEFAULT}})
    assert tenant.status_code == 200, tenant.text
    user_set = {
        "categories": {
            "collaboration": {"channel_types": {"email": True}},
            "project-updates": {"channel_types": {"email": True}},
            "reminders": False,
        },
        "channel_types": None,
    }
    await env.put(f"{USER}/acme", json=user_set)

    resolved = (await env.get(f"{USER}/acme", params={"tenant": "acme"})).json()
    assert resolved == preference_set(
        "acme",
        categories={
            # The tenant's `replace` wins over the user's choice and shows in the returned set.
            "collaboration": {"__strategy__": "replace", "channel_types": {"email": False}},
            "project-updates": {"channel_types": {"email": True}},
            "reminders": False,
        },
        # A null section of the user's set lets the tenant default show through.
        channel_types={"sms": False},
    )
    # Without the tenant query the stored set comes back untouched.
    assert (await env.get(f"{USER}/acme")).json() == preference_set("acme", **user_set)
    # The defaults apply to a set the user never wrote, and to the default set on request.
    fresh = (await env.get("/v1/users/u2/preferences/default", params={"tenant": "acme"})).json()
    assert fresh == preference_set("default", **TENANT_DEFAULT)


async def test_tenant_query_with_unknown_or_default_less_tenant(env: EnvFixture) -> None:
    await env.put(f"{USER}/default", json={"workflows": {"a": False}})
    await env.put("/v1/tenants/plain", json={"name": "Plain"})
    for tenant in ("ghost", "plain"):
        response = await env.get(f"{USER}/default", params={"tenant": tenant})
        assert response.json() == preference_set(workflows={"a": False})
    assert_error(await env.get(f"{USER}/default", params={"tenant": "t" * 256}), 422, "invalid_params")


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("", {"channel_types": {"carrier_pigeon": True}}, "channel_types.carrier_pigeon"),
    ("", {"channel_types": {"email": "yes"}}, "channel_types.email"),
    ("", {"workflows": {"a": "off"}}, "workflows.a"),
    ("", {"workflows": {"a": {"channel_types": {"fax": False}}}}, "workflows.a.channel_types.fax"),
    ("", {"categories": {"a": {"unknown": 1}}}, "categories.a.unknown"),
    ("", {"channels": {CHANNEL_ID: 1}}, f"channels.{CHANNEL_ID}"),
    (
        "",
        {"channel_types": {"sms": {"conditions": [{**CONDITION, "operator": "near"}]}}},
        "channel_types.sms.conditions.0.operator",
    ),
    (
        "",
        {"commercial_subscribed": {"conditions": [{"variable": "x", "operator": "exists"}]}},
        "commercial_subscribed.conditions.0.argument",
    ),
    ("", {"commercial_subscribed": "no"}, "commercial_subscribed"),
    ("", {"__persistence_strategy__": "append"}, "__persistence_strategy__"),
    ("", {"workflow": {"a": False}}, "workflow"),
    ("/workflows", {"a": 1}, "a"),
    ("/workflows/a", {"subscribed": "false"}, "subscribed"),
    ("/workflows/a", {"subscribed": False, "conditions": []}, "body"),
    ("/categories/a", {"channel_types": {"email": 0}}, "channel_types.email"),
    ("/channel_types", {"email": False, "pager": True}, "pager"),
    ("/channel_types/email", {}, "body"),
    ("/channel_types/email", {"subscribed": True, "conditions": [CONDITION]}, "body"),
    ("/channel_types/pager", {"subscribed": True}, "type"),
]


@RECIPIENTS
@pytest.mark.parametrize(("suffix", "body", "field"), BAD_BODIES)
async def test_bad_input_is_refused_and_changes_nothing(
    env: EnvFixture, base: str, suffix: str, body: Any, field: str
) -> None:
    original: dict[str, Any] = {"workflows": {"kept": False}}
    await env.put(f"{base}/default", json=original)
    error = assert_error(await env.put(f"{base}/default{suffix}", json=body), 422, "invalid_params")
    assert [e["field"] for e in error["errors"]] == [field]
    assert (await env.get(f"{base}/default")).json() == preference_set(**original)


async def test_malformed_bodies_and_paths(env: EnvFixture) -> None:
    assert_error(await env.put(f"{USER}/default", content=b"{nope"), 400, "invalid_json")
    assert_error(await env.put(f"{USER}/default", json=[1]), 422, "invalid_params")
    assert_error(await env.put("/v1/objects/$users/u1/preferences/default", json={}), 422, "invalid_params")
    assert_error(await env.get("/v1/objects/bad collection/p1/preferences"), 422, "invalid_params")
    assert_error(await env.put(f"/v1/users/{'x' * 256}/preferences/default", json={}), 422)
    assert_error(await env.get("/v1/users/u1"), 404)


async def test_environments_are_isolated(env: EnvFixture, other_env: EnvFixture) -> None:
    await env.put(f"{USER}/default", json={"workflows": {"a": False}})
    await env.put(f"{OBJECT}/default", json={"workflows": {"a": False}})
    await env.put(
        "/v1/tenants/acme", json={"settings": {"preference_set": {"channel_types": {"sms": False}}}}
    )

    assert (await other_env.get(f"{USER}/default")).json() == preference_set()
    assert (await other_env.get(USER)).json() == []
    assert (await other_env.get(OBJECT)).json() == []
    resolved = (await other_env.get("/v1/users/u9/preferences/default", params={"tenant": "acme"})).json()
    assert resolved == preference_set()

    await other_env.put(f"{USER}/default", json={"channel_types": {"email": False}})
    await other_env.put(f"{USER}/default/workflows/a", json={"subscribed": True})
    await other_env.delete(f"{OBJECT}/default")
    assert (await env.get(f"{USER}/default")).json() == preference_set(workflows={"a": False})
    assert (await env.get(f"{OBJECT}/default")).json() == preference_set(workflows={"a": False})


async def test_publishable_key_reaches_only_user_set_reads_and_writes(env: EnvFixture) -> None:
    pk = KeyKind.PUBLISHABLE
    response = await env.put(f"{USER}/default", json={"workflows": {"a": False}}, kind=pk)
    assert response.status_code == 200
    assert (await env.get(f"{USER}/default", kind=pk)).json() == preference_set(workflows={"a": False})
    assert (await env.get(USER, kind=pk)).status_code == 200
    # Knock's browser SDK updates a user's set section by section with the publishable key.
    granular = [
        (f"{USER}/default/workflows/b", {"subscribed": False}),
        (f"{USER}/default/categories/c", {"subscribed": False}),
        (f"{USER}/default/channel_types/email", {"subscribed": False}),
    ]
    for path, update in granular:
        assert (await env.put(path, json=update, kind=pk)).status_code == 200
    expected = preference_set(
        workflows={"a": False, "b": False}, categories={"c": False}, channel_types={"email": False}
    )
    assert (await env.get(f"{USER}/default")).json() == expected
    refused = [
        ("DELETE", f"{USER}/default", None),
        ("GET", OBJECT, None),
        ("GET", f"{OBJECT}/default", None),
        ("PUT", f"{OBJECT}/default", {}),
        ("DELETE", f"{OBJECT}/default", None),
        ("PUT", f"{OBJECT}/default/workflows/a", {"subscribed": True}),
    ]
    for method, path, body in refused:
        assert_error(await env.request(method, path, json=body, kind=pk), 403, "incorrect_token_type")
    assert (await env.get(f"{USER}/default")).json() == expected


async def test_list_users_includes_default_sets(env: EnvFixture) -> None:
    await env.put("/v1/users/a", json={"name": "A"})
    await env.put("/v1/users/b", json={"name": "B"})
    await env.put("/v1/users/b/preferences/default", json={"workflows": {"x": False}})
    await env.put("/v1/users/b/preferences/acme", json={"workflows": {"y": False}})

    plain = (await env.get("/v1/users")).json()["entries"]
    assert all("preferences" not in user for user in plain)

    entries = (await env.get("/v1/users", params={"include[]": "preferences"})).json()["entries"]
    assert {user["id"]: user["preferences"] for user in entries} == {
        "a": preference_set(),
        "b": preference_set(workflows={"x": False}),
    }
    assert entries[0]["name"] == "A"
    error = assert_error(await env.get("/v1/users", params={"include[]": "secrets"}), 422, "invalid_params")
    assert error["errors"][0]["field"] == "include"


async def test_inline_preferences_on_identify_are_validated_and_merged(env: EnvFixture) -> None:
    await env.put(
        f"{USER}/default", json={"categories": {"collab": {"channel_types": {"email": True, "sms": True}}}}
    )
    response = await env.put(
        "/v1/users/u1",
        json={"preferences": {"default": {"categories": {"collab": {"channel_types": {"email": False}}}}}},
    )
    assert response.status_code == 200, response.text
    assert (await env.get(f"{USER}/default")).json() == preference_set(
        categories={"collab": {"channel_types": {"email": False, "sms": True}}}
    )
    error = assert_error(
        await env.put(
            "/v1/users/u1", json={"name": "X", "preferences": {"default": {"channel_types": {"fax": 1}}}}
        ),
        422,
        "invalid_params",
    )
    assert error["errors"][0]["field"].startswith("preferences.default.channel_types.fax")
    assert "name" not in (await env.get("/v1/users/u1")).json()


async def test_list_objects_includes_default_sets(env: EnvFixture) -> None:
    await env.put("/v1/objects/projects/p1", json={"name": "One"})
    await env.put("/v1/objects/projects/p2/preferences/default", json={"categories": {"c": False}})
    await env.put("/v1/objects/teams/p1/preferences/default", json={"workflows": {"other": False}})

    plain = (await env.get("/v1/objects/projects")).json()["entries"]
    assert all("preferences" not in entry for entry in plain)

    entries = (await env.get("/v1/objects/projects", params={"include[]": "preferences"})).json()["entries"]
    assert {entry["id"]: entry["preferences"] for entry in entries} == {
        "p1": preference_set(),
        "p2": preference_set(categories={"c": False}),
    }
    assert entries[0]["properties"] == {"name": "One"}
    assert_error(await env.get("/v1/objects/projects", params={"include[]": "all"}), 422, "invalid_params")

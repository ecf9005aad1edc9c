from __future__ import annotations

from typing import Any

import pytest

from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error

BRANDING = {
    "icon_url": "https://example.com/icon.png",
    "logo_url": "https://example.com/logo.png",
    "primary_color": "#DF1A22",
    "primary_color_contrast": "#FFDE00",
}


def default_set(**sections: Any) -> dict[str, Any]:
    empty = dict.fromkeys(["categories", "channel_types", "channels", "commercial_subscribed", "workflows"])
    return {"__typename": "PreferenceSet", "id": "default", **empty, **sections}


async def test_set_creates_then_merges_a_tenant(env: EnvFixture) -> None:
    first = await env.put(
        "/v1/tenants/acme",
        json={"name": "Acme", "plan": {"tier": "pro", "seats": 3}, "settings": {"branding": BRANDING}},
    )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "__typename": "Tenant",
        "id": "acme",
        "name": "Acme",
        "plan": {"tier": "pro", "seats": 3},
        "settings": {"branding": BRANDING, "preference_set": None},
    }
    second = await env.put(
        "/v1/tenants/acme",
        json={
            "plan": {"seats": 5},
            "settings": {"branding": {"primary_color": "#000000", "dark_logo_url": None}},
        },
    )
    merged = second.json()
    assert merged["name"] == "Acme"
    assert merged["plan"] == {"tier": "pro", "seats": 5}
    assert merged["settings"]["branding"] == {**BRANDING, "primary_color": "#000000", "dark_logo_url": None}
    assert (await env.get("/v1/tenants/acme")).json() == merged

    cleared = (await env.put("/v1/tenants/acme", json={"settings": {"branding": None}})).json()
    assert cleared["settings"] == {"branding": None, "preference_set": None}


async def test_a_tenant_without_name_or_settings(env: EnvFixture) -> None:
    response = await env.put("/v1/tenants/bare", json={})
    assert response.json() == {
        "__typename": "Tenant",
        "id": "bare",
        "name": None,
        "settings": {"branding": None, "preference_set": None},
    }


# Writes of settings.preference_set in order, then the default set the tenant shows (None: no set).
DEFAULT_SET_CASES: dict[str, tuple[list[Any], dict[str, Any] | None]] = {
    "first write stores the set": ([{"workflows": {"a": False}}], {"workflows": {"a": False}}),
    "writes merge by default": (
        [
            {"workflows": {"a": {"channel_types": {"email": False, "sms": True}}}},
            {"workflows": {"a": {"channel_types": {"email": True}}, "b": False}},
        ],
        {"workflows": {"a": {"channel_types": {"email": True, "sms": True}}, "b": False}},
    ),
    "explicit merge merges": (
        [
            {"channel_types": {"email": False}},
            {"__persistence_strategy__": "merge", "channel_types": {"sms": False}},
        ],
        {"channel_types": {"email": False, "sms": False}},
    ),
    "replace overwrites": (
        [
            {"workflows": {"a": False}, "channel_types": {"email": False}},
            {"__persistence_strategy__": "replace", "categories": {"c": False}},
        ],
        {"categories": {"c": False}},
    ),
    "null removes the set": ([{"workflows": {"a": False}}, None], None),
    "__strategy__ markers are kept": (
        [{"categories": {"collab": {"__strategy__": "replace", "channel_types": {"email": False}}}}],
        {"categories": {"collab": {"__strategy__": "replace", "channel_types": {"email": False}}}},
    ),
}


@pytest.mark.parametrize("case", list(DEFAULT_SET_CASES))
async def test_default_preference_set_writes(env: EnvFixture, case: str) -> None:
    writes, expected = DEFAULT_SET_CASES[case]
    for preference_set in writes:
        response = await env.put("/v1/tenants/acme", json={"settings": {"preference_set": preference_set}})
        assert response.status_code == 200, response.text
    shown = None if expected is None else default_set(**expected)
    assert response.json()["settings"]["preference_set"] == shown
    assert (await env.get("/v1/tenants/acme")).json()["settings"]["preference_set"] == shown
    # Setting other fields leaves the default set alone.
    later = await env.put("/v1/tenants/acme", json={"name": "Acme", "settings": {"branding": BRANDING}})
    assert later.json()["settings"]["preference_set"] == shown


async def test_resolve_full_preference_settings_is_accepted(env: EnvFixture) -> None:
    body = {"settings": {"preference_set": {"workflows": {"a": False}}}}
    response = await env.put(
        "/v1/tenants/acme", json=body, params={"resolve_full_preference_settings": "true"}
    )
    assert response.json()["settings"]["preference_set"] == default_set(workflows={"a": False})
    fetched = await env.get("/v1/tenants/acme", params={"resolve_full_preference_settings": "true"})
    assert fetched.json() == response.json()
    assert_error(
        await env.get("/v1/tenants/acme", params={"resolve_full_preference_settings": "maybe"}),
        422,
        "invalid_params",
    )


async def test_list_tenants_pages_and_filters(env: EnvFixture) -> None:
    for i in range(5):
        await env.put(f"/v1/tenants/t{i}", json={"name": "Shared" if i % 2 else f"Name {i}"})
    await env.put("/v1/tenants/t1", json={"settings": {"preference_set": {"workflows": {"a": False}}}})

    first = (await env.get("/v1/tenants", params={"page_size": 2})).json()
    assert [t["id"] for t in first["entries"]] == ["t0", "t1"]
    assert first["entries"][1]["settings"]["preference_set"] == default_set(workflows={"a": False})
    assert first["page_info"] == {
        "__typename": "PageInfo",
        "after": first["page_info"]["after"],
        "before": None,
        "page_size": 2,
    }
    rest = (await env.get("/v1/tenants", params={"after": first["page_info"]["after"]})).json()
    assert [t["id"] for t in rest["entries"]] == ["t2", "t3", "t4"]
    assert rest["page_info"]["after"] is None

    by_name = (await env.get("/v1/tenants", params={"name": "Shared"})).json()["entries"]
    assert [t["id"] for t in by_name] == ["t1", "t3"]
    by_id = (await env.get("/v1/tenants", params={"tenant_id": "t4"})).json()["entries"]
    assert [t["name"] for t in by_id] == ["Name 4"]
    assert (await env.get("/v1/tenants", params={"tenant_id": "nope"})).json()["entries"] == []
    assert_error(await env.get("/v1/tenants", params={"page_size": "51"}), 422, "invalid_params")


async def test_tenants_are_objects_of_the_tenants_collection(env: EnvFixture) -> None:
    await env.put("/v1/tenants/acme", json={"name": "Acme"})
    assert (await env.get("/v1/objects/$tenants/acme")).json()["properties"]["name"] == "Acme"
    # An object of another collection with the same id is not a tenant.
    await env.put("/v1/objects/teams/other", json={"name": "Other"})
    assert_error(await env.get("/v1/tenants/other"), 404, "resource_missing")


async def test_get_and_delete(env: EnvFixture) -> None:
    assert_error(await env.get("/v1/tenants/ghost"), 404, "resource_missing")
    assert_error(await env.delete("/v1/tenants/ghost"), 404, "resource_missing")
    await env.put(
        "/v1/tenants/acme", json={"name": "Acme", "settings": {"preference_set": {"workflows": {}}}}
    )
    response = await env.delete("/v1/tenants/acme")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await env.get("/v1/tenants/acme"), 404)
    # The default set went with the tenant.
    again = (await env.put("/v1/tenants/acme", json={})).json()
    assert again["settings"]["preference_set"] is None
    assert again["name"] is None


BAD_TENANT_BODIES: list[tuple[Any, str]] = [
    ({"name": 7}, "name"),
    ({"settings": {"branding": {"primary_colour": "#fff"}}}, "settings.branding.primary_colour"),
    ({"settings": {"branding": {"logo_url": 1}}}, "settings.branding.logo_url"),
    ({"settings": {"theme": "dark"}}, "settings.theme"),
    (
        {"settings": {"preference_set": {"channel_types": {"fax": True}}}},
        "settings.preference_set.channel_types.fax",
    ),
    (
        {"settings": {"preference_set": {"__persistence_strategy__": "upsert"}}},
        "settings.preference_set.__persistence_strategy__",
    ),
    ({"settings": {"preference_set": "off"}}, "settings.preference_set"),
    ({"preferences": {"default": {"workflows": {"a": 1}}}}, "preferences.default.workflows.a"),
]


@pytest.mark.parametrize(("body", "field"), BAD_TENANT_BODIES)
async def test_bad_input_is_refused_and_writes_nothing(env: EnvFixture, body: Any, field: str) -> None:
    error = assert_error(await env.put("/v1/tenants/acme", json=body), 422, "invalid_params")
    assert [e["field"] for e in error["errors"]] == [field]
    assert_error(await env.get("/v1/tenants/acme"), 404)


async def test_malformed_requests(env: EnvFixture) -> None:
    assert_error(await env.put("/v1/tenants/acme", content=b"{"), 400, "invalid_json")
    assert_error(await env.put("/v1/tenants/" + "x" * 256, json={}), 422, "invalid_params")
    assert_error(await env.get("/v1/tenants", params={"name": "n" * 256}), 422, "invalid_params")


async def test_environments_are_isolated(env: EnvFixture, other_env: EnvFixture) -> None:
    await env.put(
        "/v1/tenants/acme", json={"name": "Acme", "settings": {"preference_set": {"workflows": {}}}}
    )
    assert_error(await other_env.get("/v1/tenants/acme"), 404)
    assert_error(await other_env.delete("/v1/tenants/acme"), 404)
    assert (await other_env.get("/v1/tenants")).json()["entries"] == []
    assert (await other_env.get("/v1/tenants", params={"name": "Acme"})).json()["entries"] == []
    await other_env.put("/v1/tenants/acme", json={"name": "Other", "settings": {"preference_set": None}})
    tenant = (await env.get("/v1/tenants/acme")).json()
    assert tenant["name"] == "Acme"
    assert tenant["settings"]["preference_set"] == default_set(workflows={})


async def test_publishable_keys_cannot_reach_tenants(env: EnvFixture) -> None:
    await env.put("/v1/tenants/acme", json={"name": "Acme"})
    pk = KeyKind.PUBLISHABLE
    for method, path, body in [
        ("GET", "/v1/tenants", None),
        ("GET", "/v1/tenants/acme", None),
        ("PUT", "/v1/tenants/acme", {"name": "Evil"}),
        ("DELETE", "/v1/tenants/acme", None),
    ]:
        assert_error(await env.request(method, path, json=body, kind=pk), 403, "incorrect_token_type")
    assert (await env.get("/v1/tenants/acme")).json()["name"] == "Acme"


async def test_set_tenant_checks_inline_channel_data(env: EnvFixture) -> None:
    channel = env.runtime.channels.by_key("slack")
    assert channel is not None
    slack = channel.id
    unknown = "0b3e1c8e-1111-4222-8333-944455556666"
    bad = await env.put("/v1/tenants/acme", json={"channel_data": {unknown: {"connections": []}}})
    body = assert_error(bad, 422, "invalid_params")
    assert body["errors"][0]["field"] == f"channel_data.{unknown}"
    malformed = await env.put("/v1/tenants/acme", json={"channel_data": {slack: {"connections": "nope"}}})
    assert_error(malformed, 422, "invalid_params")
    assert_error(await env.get("/v1/tenants/acme"), 404)
    token = {"connections": [], "token": {"access_token": "xoxb-1"}}
    assert (await env.put("/v1/tenants/acme", json={"channel_data": {slack: token}})).status_code == 200
    stored = await env.get(f"/v1/objects/$tenants/acme/channel_data/{slack}")
    assert stored.json()["data"]["token"] == {"access_token": "xoxb-1"}


async def test_settings_written_through_the_objects_api_never_break_tenant_reads(env: EnvFixture) -> None:
    written = await env.put("/v1/objects/$tenants/t1", json={"settings": {"branding": "oops"}, "name": "T"})
    assert written.status_code == 200
    tenant = await env.get("/v1/tenants/t1")
    assert tenant.status_code == 200, tenant.text
    assert tenant.json()["settings"]["branding"] is None
    assert tenant.json()["name"] == "T"
    listed = await env.get("/v1/tenants")
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["entries"]] == ["t1"]

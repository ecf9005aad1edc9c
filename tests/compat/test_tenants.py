"""Tenants through the official Knock SDK: set (merge), get, list with filters and pagination, delete."""

from __future__ import annotations

import contextlib

import knockapi
import pytest
from knockapi import Knock

from tests.compat.conftest import client_error_or


def test_set_creates_then_merges(knock: Knock) -> None:
    created = knock.tenants.set(
        "acme",
        name="Acme",
        settings={"branding": {"primary_color": "#000000", "logo_url": "https://example.com/logo.png"}},
        extra_body={"plan": {"tier": "free", "seats": 5}},
    )
    assert created.api_typename == "Tenant"
    assert created.id == "acme"
    assert created.name == "Acme"
    assert created.settings is not None
    assert created.settings.branding is not None
    assert created.settings.branding.primary_color == "#000000"
    assert created.model_extra is not None
    assert created.model_extra["plan"] == {"tier": "free", "seats": 5}

    updated = knock.tenants.set(
        "acme", settings={"branding": {"primary_color": "#FFFFFF"}}, extra_body={"plan": {"tier": "pro"}}
    )
    assert updated.name == "Acme"
    assert updated.settings is not None
    assert updated.settings.branding is not None
    assert updated.settings.branding.primary_color == "#FFFFFF"
    assert updated.settings.branding.logo_url == "https://example.com/logo.png"
    assert updated.model_extra is not None
    assert updated.model_extra["plan"] == {"tier": "pro", "seats": 5}
    assert knock.tenants.get("acme") == updated


@pytest.mark.parametrize("name", ["id", "typename", "__typename", "settings"])
def test_a_property_named_like_a_tenant_field_never_breaks_the_tenant(knock: Knock, name: str) -> None:
    # Whether Knock accepts or refuses such a property is not documented; either way the tenant, and the
    # tenant list, must stay readable with the tenant's own id and typename.
    knock.tenants.set("acme", name="Acme")
    with contextlib.suppress(knockapi.UnprocessableEntityError):
        knock.tenants.set("acme", extra_body={name: "spoof"})
    tenant = knock.tenants.get("acme")
    assert (tenant.id, tenant.api_typename, tenant.name) == ("acme", "Tenant", "Acme")
    assert [t.id for t in knock.tenants.list()] == ["acme"]


def test_tenant_preference_set_is_stored_in_settings(knock: Knock) -> None:
    tenant = knock.tenants.set(
        "acme",
        settings={"preference_set": {"channel_types": {"email": False}, "workflows": {"digest": False}}},
    )
    assert tenant.settings is not None
    assert tenant.settings.preference_set is not None
    assert tenant.settings.preference_set.id == "default"
    assert tenant.settings.preference_set.channel_types is not None
    assert tenant.settings.preference_set.channel_types.email is False
    assert tenant.settings.preference_set.workflows == {"digest": False}


def test_list_auto_paginates_and_filters(knock: Knock) -> None:
    for index, name in enumerate(["Acme", "Globex", "Initech", "Umbrella", "Hooli"]):
        knock.tenants.set(f"t{index}", name=name)

    assert [t.id for t in knock.tenants.list(page_size=2)] == ["t0", "t1", "t2", "t3", "t4"]
    assert [len(p.entries) for p in knock.tenants.list(page_size=2).iter_pages()] == [2, 2, 1]
    assert [t.id for t in knock.tenants.list(name="Globex")] == ["t1"]
    assert [t.name for t in knock.tenants.list(tenant_id="t3")] == ["Umbrella"]


def test_a_nul_character_is_refused_or_kept_never_a_server_error(knock: Knock) -> None:
    knock.tenants.set("acme", name="Acme")
    renamed = client_error_or(lambda: knock.tenants.set("acme", name="a\x00b"))
    expected_name = "Acme" if isinstance(renamed, knockapi.APIStatusError) else "a\x00b"
    assert knock.tenants.get("acme").name == expected_name
    filtered = client_error_or(lambda: knock.tenants.list(name="a\x00b"))
    if not isinstance(filtered, knockapi.APIStatusError):
        assert [t.name for t in filtered] == [n for n in [expected_name] if n == "a\x00b"]


def test_tenants_are_not_listed_as_objects_of_other_collections(knock: Knock) -> None:
    knock.tenants.set("acme", name="Acme")
    knock.objects.set("teams", "acme", name="A team")
    assert [t.id for t in knock.tenants.list()] == ["acme"]
    assert knock.tenants.get("acme").name == "Acme"


def test_delete_tenant(knock: Knock) -> None:
    knock.tenants.set("gone", name="Gone")
    knock.tenants.delete("gone")
    with pytest.raises(knockapi.NotFoundError):
        knock.tenants.get("gone")
    assert knock.tenants.list().entries == []


def test_unknown_tenant_is_404(knock: Knock) -> None:
    with pytest.raises(knockapi.NotFoundError) as raised:
        knock.tenants.get("nothing")
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "resource_missing"


def test_invalid_input_is_422_and_writes_nothing(knock: Knock) -> None:
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.tenants.set("acme", settings={"branding": {"primary_color": 7}})  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"
    with pytest.raises(knockapi.NotFoundError):
        knock.tenants.get("acme")


def test_environments_are_isolated(knock: Knock, other_knock: Knock) -> None:
    knock.tenants.set("acme", name="Acme")
    with pytest.raises(knockapi.NotFoundError):
        other_knock.tenants.get("acme")
    assert other_knock.tenants.list().entries == []
    assert knock.tenants.get("acme").name == "Acme"

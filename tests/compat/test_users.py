"""Users through the official Knock SDK: identify, get, list with auto-pagination, merge, delete, errors."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import knockapi
import pytest
from knockapi import Knock

from tests.compat.conftest import client_error_or, sdk_client
from tests.compat.live_server import LiveServer


def test_identify_creates_then_deep_merges(knock: Knock) -> None:
    created = knock.users.update(
        "ann",
        name="Ann",
        email="ann@example.com",
        created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        extra_body={"plan": {"tier": "free", "seats": 1}},
    )
    assert created.id == "ann"
    assert created.api_typename == "User"
    assert created.name == "Ann"
    assert created.email == "ann@example.com"
    assert created.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert created.updated_at.tzinfo is not None
    assert created.model_extra == {"plan": {"tier": "free", "seats": 1}}

    updated = knock.users.update(
        "ann", phone_number="+15550001", timezone="Europe/Paris", extra_body={"plan": {"tier": "pro"}}
    )
    assert updated.name == "Ann"
    assert updated.phone_number == "+15550001"
    assert updated.timezone == "Europe/Paris"
    assert updated.model_extra == {"plan": {"tier": "pro", "seats": 1}}
    assert updated.updated_at >= created.updated_at

    fetched = knock.users.get("ann")
    assert fetched == updated


def test_identify_sets_a_property_to_null(knock: Knock) -> None:
    knock.users.update("bob", name="Bob", email="bob@example.com")
    assert knock.users.update("bob", name=None).name is None
    assert knock.users.get("bob").email == "bob@example.com"


@pytest.mark.parametrize("name", ["id", "typename", "__typename", "updated_at", "created_at"])
def test_a_property_named_like_a_user_field_never_breaks_the_user(knock: Knock, name: str) -> None:
    # Whether Knock accepts or refuses such a property is not documented; either way the user, and the
    # environment's user list, must stay readable with the user's own id and typename.
    knock.users.update("ann", name="Ann")
    with contextlib.suppress(knockapi.UnprocessableEntityError):
        knock.users.update("ann", extra_body={name: "spoof"})
    user = knock.users.get("ann")
    assert (user.id, user.api_typename, user.name) == ("ann", "User", "Ann")
    assert [u.id for u in knock.users.list()] == ["ann"]


def test_list_auto_paginates_over_after_cursors(knock: Knock) -> None:
    ids = [f"user-{i:02d}" for i in range(7)]
    for user_id in ids:
        knock.users.update(user_id, name=user_id.upper())

    first = knock.users.list(page_size=3)
    assert [u.id for u in first.entries] == ids[:3]
    assert first.page_info is not None
    assert first.page_info.after
    assert first.has_next_page()

    assert [u.id for u in knock.users.list(page_size=3)] == ids
    pages = list(knock.users.list(page_size=3).iter_pages())
    assert [len(page.entries) for page in pages] == [3, 3, 1]
    assert not pages[-1].has_next_page()
    assert {u.id: u.name for u in knock.users.list()} == {i: i.upper() for i in ids}


def test_list_of_an_empty_environment(knock: Knock) -> None:
    page = knock.users.list()
    assert page.entries == []
    assert not page.has_next_page()


def test_merge_folds_the_secondary_into_the_primary(knock: Knock) -> None:
    knock.users.update("primary", name="Primary", extra_body={"a": {"x": 1}})
    knock.users.update("guest", name="Guest", phone_number="+15550002", extra_body={"a": {"x": 9, "y": 2}})

    merged = knock.users.merge("primary", from_user_id="guest")
    assert merged.id == "primary"
    assert merged.name == "Primary"
    assert merged.phone_number == "+15550002"
    assert merged.model_extra == {"a": {"x": 1, "y": 2}}
    assert knock.users.get("primary") == merged
    with pytest.raises(knockapi.NotFoundError):
        knock.users.get("guest")
    assert [u.id for u in knock.users.list()] == ["primary"]


def test_merge_from_an_unknown_user_is_404(knock: Knock) -> None:
    knock.users.update("primary", name="Primary")
    with pytest.raises(knockapi.NotFoundError) as raised:
        knock.users.merge("primary", from_user_id="ghost")
    assert raised.value.status_code == 404
    assert knock.users.get("primary").name == "Primary"


def test_delete_user(knock: Knock) -> None:
    knock.users.update("gone", name="Gone")
    knock.users.update("kept", name="Kept")
    knock.users.delete("gone")
    with pytest.raises(knockapi.NotFoundError):
        knock.users.get("gone")
    with pytest.raises(knockapi.NotFoundError):
        knock.users.delete("gone")
    assert [u.id for u in knock.users.list()] == ["kept"]


def test_unknown_user_is_knocks_404_body(knock: Knock) -> None:
    with pytest.raises(knockapi.NotFoundError) as raised:
        knock.users.get("nobody")
    assert raised.value.status_code == 404
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "resource_missing"
    assert raised.value.body["status"] == 404


def test_invalid_input_is_422_and_writes_nothing(knock: Knock) -> None:
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.users.update("ann", email=42)  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"
    assert [e["field"] for e in raised.value.body["errors"]] == ["email"]
    with pytest.raises(knockapi.NotFoundError):
        knock.users.get("ann")


def test_a_nul_character_is_refused_or_kept_never_a_server_error(knock: Knock) -> None:
    # PostgreSQL cannot store U+0000 in text or jsonb; Knock's answer is undocumented, but it is no 5xx and
    # what is accepted reads back unchanged.
    knock.users.update("ann", name="Ann")
    renamed = client_error_or(lambda: knock.users.update("ann", name="a\x00b"))
    expected_name = "Ann" if isinstance(renamed, knockapi.APIStatusError) else "a\x00b"
    assert knock.users.get("ann").name == expected_name

    created = client_error_or(lambda: knock.users.update("a\x00b", name="Nul"))
    fetched = client_error_or(lambda: knock.users.get("a\x00b"))
    if isinstance(created, knockapi.APIStatusError):
        assert isinstance(fetched, knockapi.APIStatusError)
    else:
        assert not isinstance(fetched, knockapi.APIStatusError)
        assert fetched.name == "Nul"
    client_error_or(lambda: knock.users.merge("ann", from_user_id="a\x00c"))
    client_error_or(lambda: knock.users.delete("a\x00c"))
    assert knock.users.get("ann").name == expected_name


def test_bad_key_is_401(live_server: LiveServer) -> None:
    with (
        sdk_client(live_server, "sk_not_a_key") as client,
        pytest.raises(knockapi.AuthenticationError) as raised,
    ):
        client.users.list()
    assert raised.value.status_code == 401


def test_publishable_key_reaches_only_client_endpoints(knock: Knock, public_knock: Knock) -> None:
    assert public_knock.users.update("ann", name="Ann").name == "Ann"
    assert public_knock.users.get("ann").name == "Ann"
    with pytest.raises(knockapi.PermissionDeniedError):
        public_knock.users.list()
    with pytest.raises(knockapi.PermissionDeniedError):
        public_knock.users.delete("ann")
    assert knock.users.get("ann").name == "Ann"


def test_environments_are_isolated(knock: Knock, other_knock: Knock) -> None:
    knock.users.update("shared-id", extra_body={"secret": "one"})
    with pytest.raises(knockapi.NotFoundError):
        other_knock.users.get("shared-id")
    assert other_knock.users.list().entries == []
    with pytest.raises(knockapi.NotFoundError):
        other_knock.users.delete("shared-id")
    assert knock.users.get("shared-id").model_extra == {"secret": "one"}

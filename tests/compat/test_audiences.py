"""Static audiences through the official Knock SDK: add (with inline identify), list and remove members."""

from __future__ import annotations

import knockapi
import pytest
from knockapi import Knock

from tests.compat.conftest import client_error_or


def members(knock: Knock, key: str) -> list[tuple[str, str | None]]:
    entries = [(m.user_id, m.tenant) for m in knock.audiences.list_members(key).entries]
    return sorted(entries, key=lambda entry: (entry[0], entry[1] or ""))


def test_add_list_and_remove_members(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.audiences.add_members(
        "beta",
        members=[{"user": {"id": "ann"}}, {"user": {"id": "bob", "name": "Bob", "email": "bob@example.com"}}],
        create_audience=True,
    )
    listed = knock.audiences.list_members("beta")
    assert listed.page_info.api_typename == "PageInfo"
    by_id = {m.user_id: m for m in listed.entries}
    assert sorted(by_id) == ["ann", "bob"]
    assert by_id["ann"].api_typename == "AudienceMember"
    assert by_id["ann"].user.name == "Ann"
    assert by_id["bob"].user.email == "bob@example.com"
    assert by_id["bob"].tenant is None
    assert by_id["bob"].added_at.tzinfo is not None
    assert knock.users.get("bob").name == "Bob"

    knock.audiences.remove_members("beta", members=[{"user": {"id": "ann"}}])
    assert members(knock, "beta") == [("bob", None)]


def test_membership_is_per_user_and_tenant(knock: Knock) -> None:
    knock.audiences.add_members(
        "beta",
        members=[{"user": {"id": "ann"}}, {"user": {"id": "ann"}, "tenant": "acme"}],
        create_audience=True,
    )
    assert members(knock, "beta") == [("ann", None), ("ann", "acme")]
    knock.audiences.remove_members("beta", members=[{"user": {"id": "ann"}, "tenant": "acme"}])
    assert members(knock, "beta") == [("ann", None)]


def test_adding_twice_keeps_one_membership(knock: Knock) -> None:
    knock.audiences.add_members("beta", members=[{"user": {"id": "ann"}}], create_audience=True)
    knock.audiences.add_members("beta", members=[{"user": {"id": "ann", "name": "Ann"}}])
    assert members(knock, "beta") == [("ann", None)]
    assert knock.audiences.list_members("beta").entries[0].user.name == "Ann"


def test_adding_to_a_missing_audience_without_create_is_404(knock: Knock) -> None:
    with pytest.raises(knockapi.NotFoundError):
        knock.audiences.add_members("nowhere", members=[{"user": {"id": "ann"}}])
    with pytest.raises(knockapi.NotFoundError):
        knock.users.get("ann")


def test_invalid_members_are_422(knock: Knock) -> None:
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.audiences.add_members("beta", members=[{"tenant": "acme"}], create_audience=True)  # type: ignore[typeddict-item]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"


def test_a_nul_character_in_the_key_is_refused_or_kept_never_a_server_error(knock: Knock) -> None:
    added = client_error_or(
        lambda: knock.audiences.add_members("a\x00b", members=[{"user": {"id": "ann"}}], create_audience=True)
    )
    listed = client_error_or(lambda: knock.audiences.list_members("a\x00b"))
    if not isinstance(added, knockapi.APIStatusError):
        assert not isinstance(listed, knockapi.APIStatusError)
        assert [m.user_id for m in listed.entries] == ["ann"]


def test_environments_are_isolated(knock: Knock, other_knock: Knock) -> None:
    knock.audiences.add_members("beta", members=[{"user": {"id": "ann"}}], create_audience=True)
    other_knock.audiences.add_members("beta", members=[{"user": {"id": "zed"}}], create_audience=True)
    assert members(knock, "beta") == [("ann", None)]
    assert members(other_knock, "beta") == [("zed", None)]

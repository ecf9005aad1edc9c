"""Audiences through the official Knock SDK: add (with inline identify), list and remove members of static
audiences; dynamic audiences following identifies; audience-entry workflows delivering to the feed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import knockapi
import pytest
from knockapi import Knock

from tests.compat.conftest import client_error_or
from tests.compat.live_server import EnvironmentKeys, LiveServer
from tests.compat.test_workflows import feed, wait_until
from tests.conftest import write_audience, write_workflow


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


def entry_workflow(audience_key: str) -> dict[str, Any]:
    return {
        "name": f"Welcome to {audience_key}",
        "trigger": {"type": "audience", "audience_key": audience_key},
        "steps": [
            {
                "ref": "in_app_feed_1",
                "type": "channel",
                "channel_key": "in-app",
                "template": {"markdown_body": "Welcome to " + audience_key + ", {{ recipient.name }}"},
            }
        ],
    }


def test_adding_members_runs_the_entry_workflow_once_per_membership(
    knock: Knock, live_server: LiveServer, environment: EnvironmentKeys, tmp_path: Path
) -> None:
    write_workflow(tmp_path, "beta-welcome", entry_workflow("beta"))
    live_server.push_workflows(tmp_path, environment.name)
    knock.audiences.add_members(
        "beta",
        members=[{"user": {"id": "ann", "name": "Ann"}}, {"user": {"id": "ann"}, "tenant": "acme"}],
        create_audience=True,
    )
    page = wait_until(lambda: len((p := feed(knock, "ann")).entries) == 2 and p)
    assert sorted(item.tenant or "" for item in page.entries) == ["", "acme"]
    assert {item.blocks[0].content for item in page.entries} == {"Welcome to beta, Ann"}
    assert {item.source.key for item in page.entries} == {"beta-welcome"}
    runs = list(knock.workflow_recipient_runs.list(workflow="beta-welcome"))
    assert sorted(run.tenant or "" for run in runs) == ["", "acme"]
    assert {(run.trigger_source.type, run.trigger_source.audience_key) for run in runs} == {
        ("audience", "beta")
    }

    # Re-adding fires nothing: once a later member's message is there, Ann still has her two.
    knock.audiences.add_members(
        "beta", members=[{"user": {"id": "ann"}}, {"user": {"id": "bob", "name": "Bob"}}]
    )
    wait_until(lambda: feed(knock, "bob").entries)
    assert len(feed(knock, "ann").entries) == 2
    # The workflow can still be triggered by API.
    knock.workflows.trigger("beta-welcome", recipients=["bob"])
    wait_until(lambda: len(feed(knock, "bob").entries) == 2)


def test_a_dynamic_audience_follows_identify_and_runs_its_entry_workflow(
    knock: Knock, live_server: LiveServer, environment: EnvironmentKeys, tmp_path: Path
) -> None:
    conditions = [{"property": "recipient.plan", "operator": "equal_to", "argument": "premium"}]
    audience = {"name": "Premium users", "type": "dynamic", "segments": [{"conditions": conditions}]}
    write_audience(tmp_path / "audiences", "premium", audience)
    output = live_server.push_audiences(tmp_path / "audiences", environment.name)
    assert output == f"{environment.name}\tpremium\tdynamic\tchanged\n"
    write_workflow(tmp_path / "workflows", "premium-welcome", entry_workflow("premium"))
    live_server.push_workflows(tmp_path / "workflows", environment.name)

    knock.users.update("ann", name="Ann", extra_body={"plan": "premium"})
    knock.users.update("bob", name="Bob", extra_body={"plan": "free"})
    assert members(knock, "premium") == [("ann", None)]
    [item] = wait_until(lambda: feed(knock, "ann").entries)
    assert item.blocks[0].content == "Welcome to premium, Ann"

    knock.users.update("ann", extra_body={"plan": "free"})
    knock.users.update("bob", extra_body={"plan": "premium"})
    assert members(knock, "premium") == [("bob", None)]
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.audiences.add_members("premium", members=[{"user": {"id": "ann"}}])
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"
    assert members(knock, "premium") == [("bob", None)]
    wait_until(lambda: feed(knock, "bob").entries)

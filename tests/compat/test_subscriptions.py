"""Subscriptions through the official Knock SDK: add (upsert), list per object and per user, delete."""

from __future__ import annotations

import knockapi
import pytest
from knockapi import Knock
from knockapi.types import User


@pytest.fixture
def project(knock: Knock) -> str:
    knock.objects.set("projects", "p1", name="Apollo")
    knock.users.update("ann", name="Ann")
    return "p1"


def test_add_list_and_delete_subscribers(knock: Knock, project: str) -> None:
    added = knock.objects.add_subscriptions(
        "projects", project, recipients=["ann", {"id": "cat", "name": "Cat"}], properties={"role": "admin"}
    )
    assert sorted(s.recipient.id for s in added) == ["ann", "cat"]
    for subscription in added:
        assert subscription.api_typename == "Subscription"
        assert (subscription.object.collection, subscription.object.id) == ("projects", project)
        assert subscription.object.properties == {"name": "Apollo"}
        assert isinstance(subscription.recipient, User)
        assert subscription.properties == {"role": "admin"}
    assert knock.users.get("cat").name == "Cat"

    listed = list(knock.objects.list_subscriptions("projects", project))
    assert sorted(s.recipient.id for s in listed) == ["ann", "cat"]

    removed = knock.objects.delete_subscriptions("projects", project, recipients=["ann"])
    assert [s.recipient.id for s in removed] == ["ann"]
    assert [s.recipient.id for s in knock.objects.list_subscriptions("projects", project)] == ["cat"]
    assert knock.users.list_subscriptions("ann").entries == []


def test_adding_again_updates_the_properties(knock: Knock, project: str) -> None:
    knock.objects.add_subscriptions("projects", project, recipients=["ann"], properties={"role": "admin"})
    again = knock.objects.add_subscriptions(
        "projects", project, recipients=["ann"], properties={"role": "viewer"}
    )
    assert [s.properties for s in again] == [{"role": "viewer"}]
    listed = list(knock.objects.list_subscriptions("projects", project))
    assert [(s.recipient.id, s.properties) for s in listed] == [("ann", {"role": "viewer"})]


def test_user_subscriptions_list_the_objects(knock: Knock, project: str) -> None:
    knock.objects.set("projects", "p2", name="Gemini")
    knock.objects.add_subscriptions("projects", project, recipients=["ann"])
    knock.objects.add_subscriptions("projects", "p2", recipients=["ann"])

    subscriptions = list(knock.users.list_subscriptions("ann"))
    assert sorted(s.object.id for s in subscriptions) == ["p1", "p2"]
    assert all(s.recipient.id == "ann" for s in subscriptions)
    only = knock.users.list_subscriptions("ann", objects=[{"collection": "projects", "id": "p2"}])
    assert [s.object.id for s in only] == ["p2"]


def test_list_pages_and_filters_by_recipient(knock: Knock, project: str) -> None:
    users = [f"u{i}" for i in range(5)]
    knock.objects.add_subscriptions("projects", project, recipients=[{"id": u} for u in users])
    pages = list(knock.objects.list_subscriptions("projects", project, page_size=2).iter_pages())
    assert [len(page.entries) for page in pages] == [2, 2, 1]
    assert sorted(s.recipient.id for page in pages for s in page.entries) == users
    filtered = knock.objects.list_subscriptions("projects", project, recipients=["u3"])
    assert [s.recipient.id for s in filtered] == ["u3"]


def test_objects_subscribe_to_objects(knock: Knock, project: str) -> None:
    added = knock.objects.add_subscriptions(
        "projects", project, recipients=[{"collection": "teams", "id": "t1", "name": "Team One"}]
    )
    assert [(s.recipient.id, getattr(s.recipient, "collection", None)) for s in added] == [("t1", "teams")]
    assert knock.objects.get("teams", "t1").properties == {"name": "Team One"}
    as_recipient = list(knock.objects.list_subscriptions("teams", "t1", mode="recipient"))
    assert [(s.object.collection, s.object.id) for s in as_recipient] == [("projects", project)]


def test_subscribing_to_an_unknown_object_is_404(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    with pytest.raises(knockapi.NotFoundError):
        knock.objects.add_subscriptions("projects", "nothing", recipients=["ann"])


def test_environments_are_isolated(knock: Knock, other_knock: Knock, project: str) -> None:
    knock.objects.add_subscriptions("projects", project, recipients=["ann"])
    with pytest.raises(knockapi.NotFoundError):
        other_knock.objects.add_subscriptions("projects", project, recipients=["ann"])
    assert [s.recipient.id for s in knock.objects.list_subscriptions("projects", project)] == ["ann"]

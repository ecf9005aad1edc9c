"""Objects through the official Knock SDK: set (deep merge), get, list with auto-pagination, delete."""

from __future__ import annotations

import knockapi
import pytest
from knockapi import Knock


def test_set_creates_then_deep_merges_properties(knock: Knock) -> None:
    created = knock.objects.set(
        "projects", "p1", name="Apollo", extra_body={"config": {"region": "eu", "tier": "free"}}
    )
    assert created.api_typename == "Object"
    assert (created.id, created.collection) == ("p1", "projects")
    assert created.properties == {"name": "Apollo", "config": {"region": "eu", "tier": "free"}}
    assert created.updated_at.tzinfo is not None

    updated = knock.objects.set("projects", "p1", extra_body={"config": {"tier": "pro"}, "owner": None})
    assert updated.properties == {"name": "Apollo", "config": {"region": "eu", "tier": "pro"}, "owner": None}
    assert updated.updated_at >= created.updated_at
    assert knock.objects.get("projects", "p1") == updated


def test_same_id_in_two_collections_are_two_objects(knock: Knock) -> None:
    knock.objects.set("projects", "x", name="Project X")
    knock.objects.set("teams", "x", name="Team X")
    assert knock.objects.get("projects", "x").properties == {"name": "Project X"}
    assert knock.objects.get("teams", "x").properties == {"name": "Team X"}
    knock.objects.delete("teams", "x")
    assert knock.objects.get("projects", "x").properties == {"name": "Project X"}


def test_list_auto_paginates_within_one_collection(knock: Knock) -> None:
    ids = [f"obj-{i:02d}" for i in range(5)]
    for object_id in ids:
        knock.objects.set("projects", object_id, name=object_id)
    knock.objects.set("teams", "elsewhere", name="not listed")

    first = knock.objects.list("projects", page_size=2)
    assert [o.id for o in first.entries] == ids[:2]
    assert first.has_next_page()
    listed = list(knock.objects.list("projects", page_size=2))
    assert [(o.collection, o.id) for o in listed] == [("projects", i) for i in ids]
    assert [len(p.entries) for p in knock.objects.list("projects", page_size=2).iter_pages()] == [2, 2, 1]
    assert knock.objects.list("empty").entries == []


def test_delete_object(knock: Knock) -> None:
    knock.objects.set("projects", "gone", name="Gone")
    knock.objects.delete("projects", "gone")
    with pytest.raises(knockapi.NotFoundError) as raised:
        knock.objects.get("projects", "gone")
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "resource_missing"
    assert knock.objects.list("projects").entries == []


def test_unknown_object_is_404(knock: Knock) -> None:
    with pytest.raises(knockapi.NotFoundError):
        knock.objects.get("projects", "nothing")


def test_invalid_input_is_422_and_writes_nothing(knock: Knock) -> None:
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.objects.set("projects", "p1", name=42)  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"
    with pytest.raises(knockapi.NotFoundError):
        knock.objects.get("projects", "p1")


def test_publishable_key_cannot_touch_objects(knock: Knock, public_knock: Knock) -> None:
    knock.objects.set("projects", "p1", name="Apollo")
    with pytest.raises(knockapi.PermissionDeniedError):
        public_knock.objects.get("projects", "p1")
    with pytest.raises(knockapi.PermissionDeniedError):
        public_knock.objects.set("projects", "p1", name="Hijacked")
    assert knock.objects.get("projects", "p1").properties == {"name": "Apollo"}


def test_environments_are_isolated(knock: Knock, other_knock: Knock) -> None:
    knock.objects.set("projects", "shared", name="Mine")
    with pytest.raises(knockapi.NotFoundError):
        other_knock.objects.get("projects", "shared")
    assert other_knock.objects.list("projects").entries == []
    with pytest.raises(knockapi.NotFoundError):
        other_knock.objects.delete("projects", "shared")
    assert knock.objects.get("projects", "shared").properties == {"name": "Mine"}

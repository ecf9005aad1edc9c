"""Preference sets through the official Knock SDK: replace, merge, get, list, delete and inline."""

from __future__ import annotations

from typing import Any

import knockapi
import pytest
from knockapi import Knock
from knockapi.types.recipients import PreferenceSet

SMS_IN_US = {"conditions": [{"variable": "recipient.country", "operator": "equal_to", "argument": "US"}]}


def wire(preference_set: PreferenceSet) -> dict[str, Any]:
    """The set as the user reads it: null and absent keys alike are left out."""
    body = preference_set.to_dict(exclude_none=True)
    body.pop("__typename", None)
    return body


def test_put_replaces_the_set(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    first = knock.users.set_preferences(
        "ann",
        "default",
        channel_types={"email": False, "sms": SMS_IN_US},  # type: ignore[arg-type]
        workflows={"welcome": False, "digest": {"channel_types": {"email": True}}},
        categories={"marketing": False},
        commercial_subscribed=True,
    )
    assert wire(first) == {
        "id": "default",
        "channel_types": {"email": False, "sms": SMS_IN_US},
        "workflows": {"welcome": False, "digest": {"channel_types": {"email": True}}},
        "categories": {"marketing": False},
        "commercial_subscribed": True,
    }
    assert knock.users.get_preferences("ann", "default") == first

    replaced = knock.users.set_preferences("ann", "default", workflows={"digest": False})
    assert wire(replaced) == {"id": "default", "workflows": {"digest": False}}
    assert wire(knock.users.get_preferences("ann", "default")) == wire(replaced)


def test_merge_strategy_deep_merges_into_the_set(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.users.set_preferences(
        "ann", "default", channel_types={"email": False}, workflows={"welcome": False}
    )
    merged = knock.users.set_preferences(
        "ann",
        "default",
        _persistence_strategy="merge",
        channel_types={"sms": False},
        workflows={"digest": {"channel_types": {"email": True}}},
    )
    assert wire(merged) == {
        "id": "default",
        "channel_types": {"email": False, "sms": False},
        "workflows": {"welcome": False, "digest": {"channel_types": {"email": True}}},
    }


def test_granular_updates_change_one_section_or_one_key(knock: Knock) -> None:
    # Deprecated and absent from the Python SDK, but @knocklabs/client's preferences.setChannelType,
    # setWorkflow, setCategories… call them; the SDK's own HTTP client sends them here.
    knock.users.update("ann", name="Ann")
    base = "/v1/users/ann/preferences/default"
    channel_types = knock.put(
        f"{base}/channel_types", body={"email": False, "sms": True}, cast_to=PreferenceSet
    )
    assert wire(channel_types) == {"id": "default", "channel_types": {"email": False, "sms": True}}

    one_type = knock.put(f"{base}/channel_types/sms", body={"subscribed": False}, cast_to=PreferenceSet)
    assert wire(one_type) == {"id": "default", "channel_types": {"email": False, "sms": False}}

    knock.put(f"{base}/workflows", body={"welcome": False}, cast_to=PreferenceSet)
    knock.put(f"{base}/workflows/digest", body={"subscribed": True}, cast_to=PreferenceSet)
    workflows = knock.put(
        f"{base}/workflows/weekly", body={"channel_types": {"email": False}}, cast_to=PreferenceSet
    )
    assert wire(workflows)["workflows"] == {
        "welcome": False,
        "digest": True,
        "weekly": {"channel_types": {"email": False}},
    }

    knock.put(f"{base}/categories", body={"marketing": False}, cast_to=PreferenceSet)
    categories = knock.put(f"{base}/categories/billing", body={"subscribed": True}, cast_to=PreferenceSet)
    assert wire(categories)["categories"] == {"marketing": False, "billing": True}
    assert wire(knock.users.get_preferences("ann", "default")) == wire(categories)


def test_publishable_key_makes_granular_updates(knock: Knock, public_knock: Knock) -> None:
    # @knocklabs/client calls these from the browser with the publishable key.
    knock.users.update("ann", name="Ann")
    base = "/v1/users/ann/preferences/default"
    public_knock.put(f"{base}/channel_types", body={"email": False}, cast_to=PreferenceSet)
    public_knock.put(f"{base}/channel_types/sms", body={"subscribed": False}, cast_to=PreferenceSet)
    public_knock.put(f"{base}/workflows", body={"welcome": False}, cast_to=PreferenceSet)
    public_knock.put(f"{base}/workflows/digest", body={"subscribed": True}, cast_to=PreferenceSet)
    public_knock.put(f"{base}/categories", body={"marketing": False}, cast_to=PreferenceSet)
    public_knock.put(f"{base}/categories/billing", body={"subscribed": True}, cast_to=PreferenceSet)
    assert wire(knock.users.get_preferences("ann", "default")) == {
        "id": "default",
        "channel_types": {"email": False, "sms": False},
        "workflows": {"welcome": False, "digest": True},
        "categories": {"marketing": False, "billing": True},
    }


def test_list_and_delete_sets(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.users.set_preferences("ann", "default", channel_types={"email": False})
    knock.users.set_preferences("ann", "acme", channel_types={"push": False})

    listed = knock.users.list_preferences("ann")
    assert {p.id: wire(p) for p in listed} == {
        "default": {"id": "default", "channel_types": {"email": False}},
        "acme": {"id": "acme", "channel_types": {"push": False}},
    }

    knock.users.unset_preferences("ann", "acme")
    assert [p.id for p in knock.users.list_preferences("ann")] == ["default"]


def test_identify_merges_inline_preferences(knock: Knock) -> None:
    knock.users.update("ann", preferences={"default": {"channel_types": {"email": False}}})
    knock.users.update("ann", preferences={"default": {"workflows": {"welcome": False}}})
    assert wire(knock.users.get_preferences("ann", "default")) == {
        "id": "default",
        "channel_types": {"email": False},
        "workflows": {"welcome": False},
    }


def test_a_set_never_written_reads_as_an_empty_set(knock: Knock) -> None:
    # Knock answers with the environment's default set merged under the user's; this environment has none.
    knock.users.update("ann", name="Ann")
    assert wire(knock.users.get_preferences("ann", "default")) == {"id": "default"}
    assert knock.users.list_preferences("ann") == []


def test_invalid_preference_set_is_422(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.users.set_preferences("ann", "default", channel_types={"email": False})
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.users.set_preferences("ann", "default", channel_types={"email": "yes"})  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"
    assert wire(knock.users.get_preferences("ann", "default")) == {
        "id": "default",
        "channel_types": {"email": False},
    }


def test_publishable_key_reads_and_writes_a_users_preferences(knock: Knock, public_knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    written = public_knock.users.set_preferences("ann", "default", workflows={"welcome": False})
    assert wire(written) == {"id": "default", "workflows": {"welcome": False}}
    assert [p.id for p in public_knock.users.list_preferences("ann")] == ["default"]
    assert public_knock.users.get_preferences("ann", "default") == written


def test_object_preference_sets(knock: Knock) -> None:
    knock.objects.set("projects", "p1", name="Apollo")
    stored = knock.objects.set_preferences("projects", "p1", "default", channel_types={"email": False})
    assert wire(stored) == {"id": "default", "channel_types": {"email": False}}
    assert knock.objects.get_preferences("projects", "p1", "default") == stored
    assert [p.id for p in knock.objects.list_preferences("projects", "p1")] == ["default"]
    knock.objects.unset_preferences("projects", "p1", "default")
    assert knock.objects.list_preferences("projects", "p1") == []


def test_environments_are_isolated(knock: Knock, other_knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.users.set_preferences("ann", "default", channel_types={"email": False})
    assert wire(other_knock.users.get_preferences("ann", "default")) == {"id": "default"}
    other_knock.users.set_preferences("ann", "default", channel_types={"email": True})
    assert wire(knock.users.get_preferences("ann", "default")) == {
        "id": "default",
        "channel_types": {"email": False},
    }
    assert wire(other_knock.users.get_preferences("ann", "default")) == {
        "id": "default",
        "channel_types": {"email": True},
    }

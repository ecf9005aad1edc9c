from __future__ import annotations

from typing import Any

import pytest

from clarion.store.preference_merge import merge_preference_sets

CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ({}, {}, {}),
    ({"workflows": {"a": True}}, {}, {"workflows": {"a": True}}),
    ({}, {"workflows": {"a": False}}, {"workflows": {"a": False}}),
    (
        {"categories": {"c": {"channel_types": {"email": True, "sms": False}}}},
        {"categories": {"c": {"channel_types": {"email": False}}}},
        {"categories": {"c": {"channel_types": {"email": False, "sms": False}}}},
    ),
    # The higher layer's boolean beats the lower layer's object and the other way round.
    (
        {"workflows": {"a": {"channel_types": {"email": False}}}},
        {"workflows": {"a": True}},
        {"workflows": {"a": True}},
    ),
    (
        {"workflows": {"a": False}},
        {"workflows": {"a": {"conditions": []}}},
        {"workflows": {"a": {"conditions": []}}},
    ),
    # null in the higher layer counts as unset.
    ({"channel_types": {"sms": False}}, {"channel_types": None}, {"channel_types": {"sms": False}}),
    ({}, {"channel_types": None}, {"channel_types": None}),
    # A lower-layer `replace` wins, marker included.
    (
        {"categories": {"c": {"__strategy__": "replace", "channel_types": {"email": False}}}},
        {"categories": {"c": {"channel_types": {"email": True, "sms": True}}, "d": False}},
        {"categories": {"c": {"__strategy__": "replace", "channel_types": {"email": False}}, "d": False}},
    ),
    (
        {"channel_types": {"__strategy__": "replace", "email": False}},
        {"channel_types": {"email": True, "push": True}},
        {"channel_types": {"__strategy__": "replace", "email": False}},
    ),
    # `merge` is the ordinary rule.
    (
        {"categories": {"c": {"__strategy__": "merge", "channel_types": {"email": False}}}},
        {"categories": {"c": {"channel_types": {"email": True}}}},
        {"categories": {"c": {"__strategy__": "merge", "channel_types": {"email": True}}}},
    ),
]


@pytest.mark.parametrize(("lower", "higher", "expected"), CASES)
def test_merge_preference_sets(
    lower: dict[str, Any], higher: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = repr((lower, higher))
    assert merge_preference_sets(lower, higher) == expected
    assert repr((lower, higher)) == before

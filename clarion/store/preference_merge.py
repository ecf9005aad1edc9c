"""Knock's merge of preference sets across the hierarchy (environment default < tenant default < recipient
set), as pure functions over stored set bodies.

A higher layer wins key by key, with nested objects merged; a `null` section in the higher layer counts as
unset, so the lower layer shows through. A preference object of a lower layer that carries
`"__strategy__": "replace"` wins over the higher layer's value instead, `__strategy__` key included, which is
how a tenant default overrides a user's own choice and how that override is shown back in the user's set.
Storing and reading the layers lives in `clarion.store.preferences`.
"""

from __future__ import annotations

from typing import Any

STRATEGY_KEY = "__strategy__"
REPLACE = "replace"


def merge_preference_sets(lower: dict[str, Any], higher: dict[str, Any]) -> dict[str, Any]:
    """`higher` laid over `lower` (both set bodies without `id`)."""
    merged = dict(lower)
    for key, value in higher.items():
        current = merged.get(key)
        if isinstance(current, dict) and current.get(STRATEGY_KEY) == REPLACE:
            continue
        if value is None and key in merged:
            continue
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge_preference_sets(current, value)
        else:
            merged[key] = value
    return merged

"""Knock's deep merge of recipient properties, as one pure function shared by both stores.

Nested objects merge key by key; any other value, `null` included, replaces what was there (Knock: existing
properties cannot be removed, only overwritten with `null`). PostgreSQL runs the same rule as the SQL
function `clarion_deep_merge` (created by the migrations); SQLite calls this function directly.
"""

from __future__ import annotations

from typing import Any


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def compose_merges(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any] | None:
    """The one update whose deep merge has the effect of merging `first` and then `second`, or None when no
    update has: where `first` puts anything but an object at a key and `second` an object, the two in a
    row leave `second`'s object alone at that key, which a single merge cannot say (it would merge into
    whatever the key held before `first`)."""
    composed = dict(first)
    for key, value in second.items():
        if key not in first or not isinstance(value, dict):
            composed[key] = value
            continue
        earlier = first[key]
        if not isinstance(earlier, dict):
            return None
        inner = compose_merges(earlier, value)
        if inner is None:
            return None
        composed[key] = inner
    return composed

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

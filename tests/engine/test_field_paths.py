"""Field paths into a run's variables: a namespace or `data` by default, objects by key, lists by index."""

from __future__ import annotations

from typing import Any

import pytest

from clarion.engine.field_paths import lookup, namespaced

VARIABLES = {
    "data": {"page": {"id": 7}, "items": [{"name": "a"}, {"name": "b"}], "recipient": "in data"},
    "recipient": {"timezone": "Europe/Paris"},
    "vars": {"window": {"unit": "seconds", "value": 30}},
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data.page.id", 7),
        ("page.id", 7),
        ("items.1.name", "b"),
        ("data.items.0", {"name": "a"}),
        ("recipient.timezone", "Europe/Paris"),
        ("vars.window.unit", "seconds"),
        ("data.recipient", "in data"),
        ("data.items.2", None),
        ("data.items.x", None),
        ("data.page.id.more", None),
        ("nothing", None),
        ("actor.id", None),
    ],
)
def test_lookup(path: str, value: Any) -> None:
    assert lookup(VARIABLES, path) == value


def test_a_path_without_a_namespace_is_under_data() -> None:
    assert namespaced("page_id") == "data.page_id"
    assert namespaced("tenant.plan") == "tenant.plan"

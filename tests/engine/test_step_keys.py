"""Step keys: a path's value as text, or Liquid rendered over the run's variables; missing is None, and
Liquid that cannot render fails as a template does."""

from __future__ import annotations

from typing import Any

import pytest

from clarion.engine.step_keys import is_liquid, key_value
from clarion.engine.templates import TemplateError, TemplateRenderer

VARIABLES = {
    "data": {"page": "A", "count": 3, "flag": False, "empty": "", "doc": {"b": 1, "a": [1, "x"]}},
    "actor": {"id": "dennis"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("page", "A"),
        ("data.page", "A"),
        ("count", "3"),
        ("flag", "false"),
        ("doc", '{"a":[1,"x"],"b":1}'),
        ("empty", None),
        ("missing", None),
        ("{{ data.page }}-{{ actor.id }}", "A-dennis"),
        ("{% if data.flag %}yes{% endif %}", None),
        ("{{ data.missing }}", None),
    ],
)
def test_keys(source: str, expected: Any) -> None:
    assert key_value(source, VARIABLES, TemplateRenderer(), name="batch_1.batch_key") == expected


def test_liquid_that_cannot_render_fails_as_a_template() -> None:
    with pytest.raises(TemplateError, match=r"batch_1\.batch_key"):
        key_value("{{ data.page | no_such_filter }}", VARIABLES, TemplateRenderer(), name="batch_1.batch_key")


def test_liquid_is_told_by_its_delimiters() -> None:
    assert is_liquid("{{ x }}") and is_liquid("{% if x %}{% endif %}")
    assert not is_liquid("data.page_id")

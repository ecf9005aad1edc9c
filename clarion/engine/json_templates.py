"""Step settings that are JSON objects with Liquid in them: `update_data`'s `data` and the update steps'
`update_properties`, which Knock's schema types as "a JSON string or Liquid template that evaluates to"
an object.

A field whose text is a JSON object is kept parsed, and each string in it, key or value at any depth, is a
Liquid template rendered on its own: what a variable holds becomes a string, so a quote in a user's name
can neither break the document nor add keys to it. Other values are taken as written, and a document
without Liquid is the same frozen object for every run. Any other text (`{{ data.profile | json
}}`, Liquid outside strings) is rendered whole and must then read as a JSON object. Both are checked at
push, each Liquid source named by its dotted path (`steps.0.settings.data.full_name`); what a render
produces is checked when it runs, and a failure there fails the step like any template error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clarion.engine.frozen import freeze_object
from clarion.engine.step_definition import DefinitionError, DefinitionParser
from clarion.engine.templates import SharedRenders, TemplateError
from clarion.store import json_codec

_LIQUID_MARKERS = ("{{", "{%")


def has_liquid(text: str) -> bool:
    return any(marker in text for marker in _LIQUID_MARKERS)


@dataclass(frozen=True)
class JsonTemplate:
    document: dict[str, Any] | None
    """The field as a JSON object (frozen) whose strings are Liquid; None when `source` is rendered whole."""
    source: str | None
    """The field's Liquid text, rendered whole into JSON; None when it is a JSON object (`document`)."""
    static: bool
    """`document` holds no Liquid: every run gets it as it is."""


def parse_json_template(parser: DefinitionParser, value: Any, field: str) -> JsonTemplate:
    """The JSON template at `field`: a string (as Knock's schema has it) or, in a hand-written
    `workflow.json`, the object itself."""
    document: Any = value
    if isinstance(value, str):
        try:
            document = json_codec.loads(value)
        except ValueError:
            parser.liquid(value, field)
            return JsonTemplate(document=None, source=value, static=False)
    if not isinstance(document, dict):
        raise DefinitionError(field, "must be a JSON object, or Liquid that renders one")
    static = _check_strings(parser, document, field)
    return JsonTemplate(document=freeze_object(document), source=None, static=static)


def _check_strings(parser: DefinitionParser, value: Any, field: str) -> bool:
    """Check each string in `value` as Liquid; True when none has any."""
    if isinstance(value, str):
        parser.liquid(value, field)
        return not has_liquid(value)
    if isinstance(value, dict):
        parts = [(part, f"{field}.{key}") for key, item in value.items() for part in (key, item)]
        return all([_check_strings(parser, part, where) for part, where in parts])
    if isinstance(value, list):
        return all([_check_strings(parser, item, f"{field}.{index}") for index, item in enumerate(value)])
    return True


def render_json_template(
    template: JsonTemplate, renders: SharedRenders, scope: Mapping[str, Any], name: str
) -> dict[str, Any]:
    """The object `template` gives for a run whose template scope is `scope`. Raises `TemplateError`."""
    if template.document is not None:
        if template.static:
            return template.document
        rendered: dict[str, Any] = _render_strings(renders, template.document, scope, name)
        return rendered
    assert template.source is not None
    text = renders.render(template.source, scope, name=name)
    try:
        value = json_codec.loads(text)
    except ValueError as exc:
        raise TemplateError(f"does not render to JSON: {exc}", name=name) from None
    if not isinstance(value, dict):
        raise TemplateError("does not render to a JSON object", name=name)
    return value


def _render_strings(renders: SharedRenders, value: Any, scope: Mapping[str, Any], name: str) -> Any:
    if isinstance(value, str):
        return renders.render(value, scope, name=name) if has_liquid(value) else value
    if isinstance(value, Mapping):
        return {
            _render_strings(renders, key, scope, f"{name}.{key}"): _render_strings(
                renders, item, scope, f"{name}.{key}"
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_render_strings(renders, item, scope, f"{name}.{index}") for index, item in enumerate(value)]
    return value

"""Step keys: what a batch or throttle step's `batch_key` / `throttle_key` resolves to for one run, the value
that splits its batches or throttle windows beyond the recipient.

Knock takes the key either as a path into the trigger's data (`page_id`, read as `data.page_id`; a path may
also name its namespace: `data.project_id`, `recipient.team`) or as Liquid over the run's variables
(`{{ data.event_type }}-{{ actor.id }}`), which is how a key is told to be Liquid. A path's string is the
key; another scalar, object or array is its JSON text (object keys sorted, so equal documents give equal
keys). A path that leads nowhere, or Liquid that renders empty, is a missing key: the settings decide what
that means (`clarion.engine.batch_settings`, `clarion.engine.throttle_settings`). Liquid that fails to
render raises `TemplateError`, as a template's would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clarion.engine.field_paths import lookup
from clarion.engine.templates import TemplateRenderer


def is_liquid(source: str) -> bool:
    return "{{" in source or "{%" in source


def key_value(
    source: str, variables: Mapping[str, Any], renderer: TemplateRenderer, *, name: str
) -> str | None:
    """The key `source` gives over `variables`, or None when it is missing; `name` names the template in a
    render error (`batch_step.batch_key`)."""
    if is_liquid(source):
        return renderer.render(source, variables, name=name) or None
    value = lookup(variables, source)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

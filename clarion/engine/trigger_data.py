"""Checking a trigger's `data` against its workflow's `trigger_data_json_schema`, for a trigger the API
accepts (`clarion.engine.trigger`) and one a `trigger_workflow` step makes
(`clarion.engine.steps.trigger_workflow`). The schema itself is checked at push
(`clarion.engine.workflow_definition`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from clarion.errors import FieldError, InvalidInputError


def check_trigger_data(schema: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Refuse `data` unless it matches `schema`: an `InvalidInputError` naming each field that does not
    (`data.count`)."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    try:
        found = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    except Exception as exc:
        # The schema passed its checks at push, but some faults (a `$ref` to nowhere) show only when
        # applied; the trigger is refused with what went wrong rather than failing the server.
        raise InvalidInputError(
            f"The workflow's trigger_data_json_schema cannot be applied: {exc}",
            errors=[FieldError("data", "could not be checked against the workflow's schema")],
        ) from None
    errors = [
        FieldError(".".join(["data", *map(str, error.absolute_path)]), error.message) for error in found
    ]
    if errors:
        raise InvalidInputError("The trigger data does not match the workflow's schema", errors=errors)

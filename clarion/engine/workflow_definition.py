"""What a workflow is: its key, settings and steps, parsed from the JSON of Knock's workflow-as-code layout
(`workflow.json` with its template files inlined, see `clarion.engine.workflow_files`).

`parse_workflow` checks a definition the way a push must: the workflow's own fields, and each step by its
type's parser (`clarion.engine.steps.registry`), with what all steps share checked by
`clarion.engine.step_definition`. An error names the field by its dotted path
(`steps.1.template.markdown_body`). Step types Clarion cannot run yet are refused by name rather than
accepted and skipped, so a workflow never silently does less than it says.

The parsed `WorkflowDefinition` is immutable and shared by every run of its version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from clarion.channels import ChannelRegistry
from clarion.engine.conditions import ConditionGroup
from clarion.engine.step_definition import (
    MAX_AUDIENCE_KEY_LENGTH,
    WORKFLOW_KEY,
    DefinitionError,
    DefinitionParser,
    StepDefinition,
    condition_group,
    text_field,
)
from clarion.engine.steps.registry import NOT_YET_SUPPORTED_STEPS, STEP_TYPES
from clarion.engine.templates import TemplateRenderer

EVERY_TRIGGER = "every_trigger"
ONCE_PER_RECIPIENT_PER_TENANT = "once_per_recipient_per_tenant"
TRIGGER_FREQUENCIES = (EVERY_TRIGGER, "once_per_recipient", ONCE_PER_RECIPIENT_PER_TENANT)
"""How often a recipient may run through the workflow: every trigger, or once (per tenant too)."""


@dataclass(frozen=True)
class AudienceTrigger:
    """`"trigger": {"type": "audience", "audience_key": …}`: the workflow also runs for each member added
    to that audience (Clarion's own field: Knock sets it in its dashboard)."""

    audience_key: str


@dataclass(frozen=True)
class WorkflowDefinition:
    key: str
    name: str
    categories: tuple[str, ...]
    steps: tuple[StepDefinition, ...]
    conditions: ConditionGroup | None
    is_commercial: bool
    override_preferences: bool
    trigger_frequency: str
    trigger_data_json_schema: Mapping[str, Any] | None
    trigger: AudienceTrigger | None = None
    adds_audience_members: bool = False
    """Some step adds members to audiences (`StepDefinition.adds_audience_members`)."""


def _adds_audience_members(steps: Sequence[StepDefinition]) -> bool:
    return any(
        step.adds_audience_members or any(_adds_audience_members(nested.steps) for nested in step.nested)
        for step in steps
    )


def _check_schema(schema: Any) -> None:
    """A trigger-data schema the validator can apply: a valid JSON schema whose patterns compile."""
    if not isinstance(schema, dict):
        raise DefinitionError("trigger_data_json_schema", "must be a JSON schema object")
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(["trigger_data_json_schema", *map(str, exc.absolute_path)])
        raise DefinitionError(where, f"is not a valid JSON schema: {exc.message}") from None


def _trigger(value: Any) -> AudienceTrigger | None:
    """Whether the audience exists is the business of the membership that would fire it: a workflow may be
    pushed before its audience, and a missing audience simply never fires."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DefinitionError("trigger", "must be an object with `type` and `audience_key`")
    if value.get("type") != "audience":
        raise DefinitionError("trigger.type", 'must be "audience" (an audience-entry trigger)')
    if set(value) - {"type", "audience_key"}:
        raise DefinitionError("trigger", "takes only `type` and `audience_key`")
    key = text_field(value, "audience_key", "trigger", required=True)
    assert key is not None
    if not 1 <= len(key) <= MAX_AUDIENCE_KEY_LENGTH:
        raise DefinitionError("trigger.audience_key", f"must be 1 to {MAX_AUDIENCE_KEY_LENGTH} characters")
    return AudienceTrigger(key)


def parse_workflow(
    data: Any, channels: ChannelRegistry | None, renderer: TemplateRenderer
) -> WorkflowDefinition:
    """A checked definition from a workflow's JSON (template files already inlined). With `channels`, each
    channel step must name a configured channel (a push); without, a stored version is read back as it
    was committed, and a channel that has since left the configuration is the step's business at run time."""
    if not isinstance(data, dict):
        raise DefinitionError("", "must be a workflow object")
    key = text_field(data, "key", "", required=True)
    assert key is not None
    if not WORKFLOW_KEY.match(key):
        raise DefinitionError("key", "must be 3 to 255 characters of a-z, 0-9, _ and -")
    name = text_field(data, "name", "") or key
    categories = data.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise DefinitionError("categories", "must be a list of strings")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise DefinitionError("settings", "must be an object")
    flags = {}
    for flag in ("is_commercial", "override_preferences"):
        value = settings.get(flag, False)
        if not isinstance(value, bool):
            raise DefinitionError(f"settings.{flag}", "must be a boolean")
        flags[flag] = value
    frequency = data.get("trigger_frequency") or EVERY_TRIGGER
    if frequency not in TRIGGER_FREQUENCIES:
        raise DefinitionError("trigger_frequency", f"must be one of {', '.join(TRIGGER_FREQUENCIES)}")
    schema = data.get("trigger_data_json_schema")
    if schema is not None:
        _check_schema(schema)
    trigger = _trigger(data.get("trigger"))
    parser = DefinitionParser(
        channels,
        renderer,
        STEP_TYPES.get,
        NOT_YET_SUPPORTED_STEPS,
        trigger_audience=None if trigger is None else trigger.audience_key,
    )
    steps = parser.steps(data.get("steps"), "steps")
    return WorkflowDefinition(
        key=key,
        name=name,
        categories=tuple(categories),
        steps=steps,
        conditions=condition_group(data, ""),
        is_commercial=flags["is_commercial"],
        override_preferences=flags["override_preferences"],
        trigger_frequency=frequency,
        trigger_data_json_schema=schema,
        trigger=trigger,
        adds_audience_members=_adds_audience_members(steps),
    )

"""What a workflow is: its key, settings and steps, parsed from the JSON of Knock's workflow-as-code layout
(`workflow.json` with its template files inlined, see `clarion.engine.workflow_files`).

`parse_workflow` checks a definition the way a push must: field types, step refs unique across the whole
workflow, each channel step naming a configured channel of its type, each delay a valid duration, each
template valid Liquid and each condition a known operator. An error names the field by its dotted path
(`steps.1.template.markdown_body`). Step types Clarion cannot run yet are refused by name rather than
accepted and skipped, so a workflow never silently does less than it says.

The parsed `WorkflowDefinition` is immutable and shared by every run of its version.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import jsonschema

from clarion.channels import ChannelRegistry
from clarion.engine.conditions import ConditionError, ConditionGroup, parse_condition_group
from clarion.engine.templates import TemplateError, TemplateRenderer

WORKFLOW_KEY = re.compile(r"^[a-z0-9_-]{3,255}$")
CHANNEL_TYPES = ("email", "in_app_feed", "sms", "push", "chat", "http")
TRIGGER_FREQUENCIES = ("every_trigger", "once_per_recipient", "once_per_recipient_per_tenant")
DURATION_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
MAX_DELAY_SECONDS = 365 * 86400

NOT_YET_SUPPORTED_STEPS = (
    "batch",
    "throttle",
    "branch",
    "http_fetch",
    "trigger_workflow",
    "update_data",
    "update_user",
    "update_object",
    "update_tenant",
    "wait_for_event",
    "random_cohort",
    "ai_agent",
)
"""Knock step types that Clarion does not run yet: a workflow using one is refused at push."""

TEMPLATE_FIELDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "in_app_feed": (("markdown_body",), ("action_url",)),
    "email": (("subject",), ("html_body", "text_body")),
    "sms": (("text_body",), ()),
    "push": (("text_body",), ("title",)),
    "chat": (("markdown_body",), ("summary", "json_body")),
    "http": (("url",), ("method", "body")),
}
"""Per channel type, the template's required and optional Liquid text fields."""


class DefinitionError(ValueError):
    """A workflow definition is invalid at `field` (a dotted path inside `workflow.json`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ChannelStep:
    ref: str
    channel_type: str
    channel_key: str
    template: Mapping[str, Any]
    conditions: ConditionGroup | None
    type: Literal["channel"] = "channel"

    @cached_property
    def texts(self) -> tuple[tuple[str, str, str], ...]:
        """The template's Liquid text fields that it has: (field, source, the name errors give it)."""
        required, optional = TEMPLATE_FIELDS[self.channel_type]
        return tuple(
            (name, source, f"{self.ref}.{name}")
            for name in (*required, *optional)
            if isinstance(source := self.template.get(name), str)
        )


@dataclass(frozen=True)
class DelayStep:
    ref: str
    delay_seconds: float | None
    """The fixed delay (`delay_for`), or None when only `delay_until_field_path` sets it."""
    until_field_path: str | None
    conditions: ConditionGroup | None
    type: Literal["delay"] = "delay"


Step = ChannelStep | DelayStep


@dataclass(frozen=True)
class WorkflowDefinition:
    key: str
    name: str
    categories: tuple[str, ...]
    steps: tuple[Step, ...]
    conditions: ConditionGroup | None
    is_commercial: bool
    override_preferences: bool
    trigger_frequency: str
    trigger_data_json_schema: Mapping[str, Any] | None


def duration_seconds(value: Any, field: str) -> float:
    """A Knock Duration `{unit, value}` in seconds."""
    if not isinstance(value, dict) or set(value) - {"unit", "value"}:
        raise DefinitionError(field, "must be a duration object with `unit` and `value`")
    unit, amount = value.get("unit"), value.get("value")
    if unit not in DURATION_SECONDS:
        raise DefinitionError(f"{field}.unit", f"must be one of {', '.join(DURATION_SECONDS)}")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
        raise DefinitionError(f"{field}.value", "must be a number of at least 0")
    try:
        seconds = float(amount) * DURATION_SECONDS[unit]
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise DefinitionError(f"{field}.value", "must be a finite number")
    return seconds


def _text(data: Mapping[str, Any], name: str, field: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise DefinitionError(f"{field}.{name}" if field else name, "is required")
        return None
    if not isinstance(value, str):
        raise DefinitionError(f"{field}.{name}" if field else name, "must be a string")
    return value


def _conditions(data: Mapping[str, Any], field: str) -> ConditionGroup | None:
    try:
        return parse_condition_group(data.get("conditions"), f"{field}.conditions" if field else "conditions")
    except ConditionError as exc:
        raise DefinitionError(exc.field, str(exc)) from exc


class _Parser:
    def __init__(self, channels: ChannelRegistry | None, renderer: TemplateRenderer) -> None:
        self.channels = channels
        self.renderer = renderer
        self.refs: set[str] = set()

    def liquid(self, source: str, field: str) -> None:
        try:
            self.renderer.parse(source, name=field)
        except TemplateError as exc:
            raise DefinitionError(field, f"is not valid Liquid: {exc}") from exc

    def step(self, data: Any, field: str) -> Step:
        if not isinstance(data, dict):
            raise DefinitionError(field, "must be a step object")
        ref = _text(data, "ref", field, required=True)
        assert ref is not None
        if ref in self.refs:
            raise DefinitionError(f"{field}.ref", f"{ref!r} is used by another step; refs must be unique")
        self.refs.add(ref)
        kind = data.get("type")
        if kind == "channel":
            return self.channel_step(data, ref, field)
        if kind == "delay":
            return self.delay_step(data, ref, field)
        if kind in NOT_YET_SUPPORTED_STEPS:
            raise DefinitionError(f"{field}.type", f"{kind!r} steps are not supported by Clarion yet")
        raise DefinitionError(f"{field}.type", f"{kind!r} is not a step type")

    def channel_step(self, data: dict[str, Any], ref: str, field: str) -> ChannelStep:
        if data.get("channel_group_key") is not None:
            raise DefinitionError(
                f"{field}.channel_group_key", "channel groups are not supported by Clarion yet"
            )
        if data.get("send_windows"):
            raise DefinitionError(f"{field}.send_windows", "send windows are not supported by Clarion yet")
        channel_key = _text(data, "channel_key", field, required=True)
        assert channel_key is not None
        channel_type = self.channel_type(data, channel_key, field)
        template = data.get("template")
        if not isinstance(template, dict):
            raise DefinitionError(f"{field}.template", "must be a template object")
        required, optional = TEMPLATE_FIELDS[channel_type]
        for name in (*required, *optional):
            source = _text(template, name, f"{field}.template", required=name in required)
            if source is not None:
                self.liquid(source, f"{field}.template.{name}")
        if channel_type == "in_app_feed":
            self.action_buttons(template.get("action_buttons"), f"{field}.template.action_buttons")
        return ChannelStep(
            ref=ref,
            channel_type=channel_type,
            channel_key=channel_key,
            template=template,
            conditions=_conditions(data, field),
        )

    def channel_type(self, data: dict[str, Any], channel_key: str, field: str) -> str:
        """The step's channel type; a push writes it into the step when the file leaves it out, so the
        stored version holds it even if the channel later leaves the configuration."""
        declared = data.get("channel_type")
        if self.channels is None:
            if declared not in CHANNEL_TYPES:
                raise DefinitionError(f"{field}.channel_type", f"must be one of {', '.join(CHANNEL_TYPES)}")
            return str(declared)
        channel = self.channels.by_key(channel_key)
        if channel is None:
            raise DefinitionError(
                f"{field}.channel_key", f"no channel with key {channel_key!r} is configured"
            )
        if declared is not None and declared != channel.type:
            raise DefinitionError(
                f"{field}.channel_type",
                f"is {declared!r} but channel {channel_key!r} is a {channel.type} channel",
            )
        data["channel_type"] = str(channel.type)
        return str(channel.type)

    def action_buttons(self, buttons: Any, field: str) -> None:
        if buttons is None:
            return
        if not isinstance(buttons, list) or len(buttons) > 2:
            raise DefinitionError(field, "must be a list of at most two buttons")
        for index, button in enumerate(buttons):
            if not isinstance(button, dict):
                raise DefinitionError(f"{field}.{index}", "must be a button object with `label` and `action`")
            for name in ("label", "action"):
                source = _text(button, name, f"{field}.{index}", required=True)
                assert source is not None
                self.liquid(source, f"{field}.{index}.{name}")

    def delay_step(self, data: Mapping[str, Any], ref: str, field: str) -> DelayStep:
        settings = data.get("settings")
        if not isinstance(settings, dict):
            raise DefinitionError(
                f"{field}.settings", "must be an object with `delay_for` or `delay_until_field_path`"
            )
        delay_for = settings.get("delay_for")
        seconds = None if delay_for is None else duration_seconds(delay_for, f"{field}.settings.delay_for")
        if seconds is not None and seconds > MAX_DELAY_SECONDS:
            raise DefinitionError(f"{field}.settings.delay_for", "must be at most 365 days")
        until = _text(settings, "delay_until_field_path", f"{field}.settings")
        if seconds is None and until is None:
            raise DefinitionError(f"{field}.settings", "needs `delay_for` or `delay_until_field_path`")
        return DelayStep(
            ref=ref, delay_seconds=seconds, until_field_path=until, conditions=_conditions(data, field)
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


def parse_workflow(
    data: Any, channels: ChannelRegistry | None, renderer: TemplateRenderer
) -> WorkflowDefinition:
    """A checked definition from a workflow's JSON (template files already inlined). With `channels`, each
    channel step must name a configured channel (a push); without, a stored version is read back as it
    was committed, and a channel that has since left the configuration is the step's business at run time."""
    if not isinstance(data, dict):
        raise DefinitionError("", "must be a workflow object")
    key = _text(data, "key", "", required=True)
    assert key is not None
    if not WORKFLOW_KEY.match(key):
        raise DefinitionError("key", "must be 3 to 255 characters of a-z, 0-9, _ and -")
    name = _text(data, "name", "") or key
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
    frequency = data.get("trigger_frequency") or "every_trigger"
    if frequency not in TRIGGER_FREQUENCIES:
        raise DefinitionError("trigger_frequency", f"must be one of {', '.join(TRIGGER_FREQUENCIES)}")
    if frequency != "every_trigger":
        raise DefinitionError("trigger_frequency", f"{frequency!r} is not supported by Clarion yet")
    schema = data.get("trigger_data_json_schema")
    if schema is not None:
        _check_schema(schema)
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise DefinitionError("steps", "must be a list of steps")
    parser = _Parser(channels, renderer)
    return WorkflowDefinition(
        key=key,
        name=name,
        categories=tuple(categories),
        steps=tuple(parser.step(step, f"steps.{index}") for index, step in enumerate(steps)),
        conditions=_conditions(data, ""),
        is_commercial=flags["is_commercial"],
        override_preferences=flags["override_preferences"],
        trigger_frequency=frequency,
        trigger_data_json_schema=schema,
    )

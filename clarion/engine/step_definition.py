"""What every step of a workflow definition shares, and the parser that checks steps at push.

A step type parses its own settings (`clarion.engine.steps`); what all steps have — a `ref` unique across
the whole workflow, `conditions`, Liquid that must compile, nested step lists for steps that branch — is
checked here, so that a step type's module holds only what is its own. An error names the field by its
dotted path inside `workflow.json` (`steps.1.branches.0.steps.2.template.markdown_body`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from clarion.channels import ChannelRegistry
from clarion.engine.conditions import ConditionError, ConditionGroup, parse_condition_group
from clarion.engine.templates import TemplateError, TemplateRenderer

if TYPE_CHECKING:
    from clarion.engine.step_protocol import StepType

DURATION_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
WORKFLOW_KEY = re.compile(r"^[a-z0-9_-]{3,255}$")
"""A workflow's key, as a workflow declares it and a `trigger_workflow` step names another."""
MAX_AUDIENCE_KEY_LENGTH = 255
"""How long an audience key may be where a workflow names one (its trigger, an update-audience step)."""
MAX_NESTING = 5
"""How deep step lists may nest inside steps (Knock's limit for branches)."""


class DefinitionError(ValueError):
    """A workflow definition is invalid at `field` (a dotted path inside `workflow.json`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NestedSteps:
    """A list of steps inside a step (a branch's), and whether the run ends when it reaches its end."""

    steps: tuple[StepDefinition, ...]
    terminates: bool


@dataclass(frozen=True)
class StepDefinition:
    """A parsed step: what every type has. Types add their settings in keyword-only subclasses."""

    type: ClassVar[str]
    """The step's type name, as `workflow.json` spells it; each subclass gives its own."""

    ref: str
    conditions: ConditionGroup | None

    @property
    def nested(self) -> Sequence[NestedSteps]:
        """The step lists inside this step, by index; steps that do not branch have none."""
        return ()

    @property
    def adds_audience_members(self) -> bool:
        """Whether the step adds members to audiences, which fires their entry workflows: the passes of
        its workflow need the rules that know them (`MembershipRulebook.rules(adding_members=True)`)."""
        return False


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


def text_field(data: Mapping[str, Any], name: str, field: str, *, required: bool = False) -> str | None:
    """The string at `data[name]`; None when absent (an error when `required`)."""
    value = data.get(name)
    where = f"{field}.{name}" if field else name
    if value is None:
        if required:
            raise DefinitionError(where, "is required")
        return None
    if not isinstance(value, str):
        raise DefinitionError(where, "must be a string")
    return value


def settings_object(data: Mapping[str, Any], field: str, expected: str) -> dict[str, Any]:
    """The step's `settings` object; `expected` says what it must hold when it is missing."""
    settings = data.get("settings")
    if not isinstance(settings, dict):
        raise DefinitionError(f"{field}.settings", f"must be an object with {expected}")
    return settings


def condition_group(data: Mapping[str, Any], field: str) -> ConditionGroup | None:
    """The `conditions` of `data` (a step, a branch, the workflow), checked."""
    try:
        return parse_condition_group(data.get("conditions"), f"{field}.conditions" if field else "conditions")
    except ConditionError as exc:
        raise DefinitionError(exc.field, str(exc)) from exc


class DefinitionParser:
    """Parses a workflow's steps, each by its type's own `parse`, checking what all steps share. One per
    workflow: it remembers the refs seen so far, which must be unique across the whole workflow."""

    def __init__(
        self,
        channels: ChannelRegistry | None,
        renderer: TemplateRenderer,
        step_types: Callable[[str], StepType[Any] | None],
        unsupported: Sequence[str],
        *,
        trigger_audience: str | None = None,
    ) -> None:
        self.channels = channels
        """The configured channels at a push; None when a stored version is read back as committed."""
        self.renderer = renderer
        self.trigger_audience = trigger_audience
        """The audience whose new members run the workflow (its `trigger`), if any."""
        self._step_types = step_types
        self._unsupported = unsupported
        self._refs: set[str] = set()
        self._depth = 0

    def liquid(self, source: str, field: str) -> None:
        """Refuse `source` unless it is valid Liquid."""
        try:
            self.renderer.parse(source, name=field)
        except TemplateError as exc:
            raise DefinitionError(field, f"is not valid Liquid: {exc}") from exc

    def steps(self, data: Any, field: str) -> tuple[StepDefinition, ...]:
        """A list of steps at `field` (the workflow's, or one nested in a step)."""
        if not isinstance(data, list):
            raise DefinitionError(field, "must be a list of steps")
        return tuple(self.step(step, f"{field}.{index}") for index, step in enumerate(data))

    def nested_steps(self, data: Any, field: str) -> tuple[StepDefinition, ...]:
        """A list of steps inside a step (a branch's), at most `MAX_NESTING` lists deep."""
        if self._depth >= MAX_NESTING:
            raise DefinitionError(field, f"steps may nest at most {MAX_NESTING} levels deep")
        self._depth += 1
        try:
            return self.steps(data, field)
        finally:
            self._depth -= 1

    def step(self, data: Any, field: str) -> StepDefinition:
        if not isinstance(data, dict):
            raise DefinitionError(field, "must be a step object")
        ref = text_field(data, "ref", field, required=True)
        assert ref is not None
        if ref in self._refs:
            raise DefinitionError(f"{field}.ref", f"{ref!r} is used by another step; refs must be unique")
        self._refs.add(ref)
        kind = data.get("type")
        step_type = self._step_types(kind) if isinstance(kind, str) else None
        if step_type is None:
            if kind in self._unsupported:
                raise DefinitionError(f"{field}.type", f"{kind!r} steps are not supported by Clarion yet")
            raise DefinitionError(f"{field}.type", f"{kind!r} is not a step type")
        parsed: StepDefinition = step_type.parse(self, data, ref, field)
        return parsed

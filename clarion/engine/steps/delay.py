"""The delay step: the run waits, then goes on with its next step.

The wait is the fixed `delay_for`, or the value found at `delay_until_field_path` (a path into `data.`,
`recipient.`, `actor.`, `tenant.` or `vars.`): an ISO-8601 timestamp in the future, or a duration
`{unit, value}` from now. With both, the fixed delay is an offset from that timestamp. A path that
resolves to nothing usable, to the past or to more than Knock's 365 days skips the step (recorded on the
run) and the run goes on at once, as Knock does.
The trigger's `settings.skip_delay` skips every delay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from clarion.engine.step_definition import (
    DefinitionError,
    DefinitionParser,
    StepDefinition,
    condition_group,
    duration_seconds,
    settings_object,
    text_field,
)
from clarion.engine.step_protocol import RunAtStep, StepOutcome, StepServices, StepType, WaitUntil, each_run
from clarion.schemas.base import format_timestamp
from clarion.store.workflow_runs import RunEvent

MAX_DELAY_SECONDS = 365 * 86400


@dataclass(frozen=True, kw_only=True)
class DelayStep(StepDefinition):
    type: ClassVar[str] = "delay"

    delay_seconds: float | None
    """The fixed delay (`delay_for`), or None when only `delay_until_field_path` sets it."""
    until_field_path: str | None


def parse_delay_step(_parser: DefinitionParser, data: dict[str, Any], ref: str, field: str) -> DelayStep:
    settings = settings_object(data, field, "`delay_for` or `delay_until_field_path`")
    delay_for = settings.get("delay_for")
    seconds = None if delay_for is None else duration_seconds(delay_for, f"{field}.settings.delay_for")
    if seconds is not None and seconds > MAX_DELAY_SECONDS:
        raise DefinitionError(f"{field}.settings.delay_for", "must be at most 365 days")
    until = text_field(settings, "delay_until_field_path", f"{field}.settings")
    if seconds is None and until is None:
        raise DefinitionError(f"{field}.settings", "needs `delay_for` or `delay_until_field_path`")
    return DelayStep(
        ref=ref, conditions=condition_group(data, field), delay_seconds=seconds, until_field_path=until
    )


def lookup(variables: Mapping[str, Any], path: str) -> Any:
    """The value at dotted `path` in a run's variables (`data.when`, `recipient.plan`), or None."""
    value: Any = variables
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _seconds_until(value: Any, now: datetime) -> float | None:
    if isinstance(value, dict):
        try:
            return duration_seconds(value, "delay")
        except DefinitionError:
            return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        return (moment - now).total_seconds()
    return None


def _delay(services: StepServices, step: DelayStep, at: RunAtStep) -> StepOutcome:
    context = at.context

    def event(name: str, **data: Any) -> RunEvent:
        return RunEvent(name, step_ref=step.ref, step_type="delay", data=data)

    if context.run.settings.get("skip_delay"):
        return StepOutcome(events=[event("step_skipped", reason="skip_delay")])
    seconds = step.delay_seconds or 0.0
    if step.until_field_path is not None:
        found = _seconds_until(lookup(context.variables(), step.until_field_path), services.now)
        if found is None or not 0 < found + seconds <= MAX_DELAY_SECONDS:
            return StepOutcome(
                events=[event("step_skipped", reason="invalid_delay", field_path=step.until_field_path)]
            )
        seconds += found
    if seconds <= 0:
        return StepOutcome(events=[event("delay_started", seconds=0.0)])
    until = services.now + timedelta(seconds=seconds)
    return StepOutcome(
        events=[event("delay_started", seconds=seconds, until=format_timestamp(until))],
        then=WaitUntil(until),
    )


STEP_TYPE = StepType("delay", parse_delay_step, each_run(_delay))

"""The delay step: the run waits, then goes on with its next step.

The wait is the fixed `delay_for`, or the value found at `delay_until_field_path` (a path into `data.`,
`recipient.`, `actor.`, `tenant.` or `vars.`, `clarion.engine.field_paths`): an ISO-8601 timestamp in the
future, a duration `{unit, value}` from now, or a window rule (`clarion.engine.dynamic_windows`). With
both, the fixed delay is an offset from that moment. A path that resolves to nothing usable, to the past
or to more than Knock's 365 days skips the step (recorded on the run) and the run goes on at once, as
Knock does.
The trigger's `settings.skip_delay` skips every delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from clarion.engine.dynamic_windows import recipient_zone, window_end
from clarion.engine.field_paths import lookup
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


def _delay(services: StepServices, step: DelayStep, at: RunAtStep) -> StepOutcome:
    context = at.context

    def event(name: str, **data: Any) -> RunEvent:
        return RunEvent(name, step_ref=step.ref, step_type="delay", data=data)

    if context.run.settings.get("skip_delay"):
        return StepOutcome(events=[event("step_skipped", reason="skip_delay")])
    seconds = step.delay_seconds or 0.0
    if step.until_field_path is not None:
        variables = context.variables()
        value = lookup(variables, step.until_field_path)
        moment = window_end(value, services.now, recipient_zone(variables))
        found = None if moment is None else (moment - services.now).total_seconds()
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

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
from datetime import datetime
from typing import Any

from clarion.engine.run_scope import RunContext
from clarion.engine.steps.result import StepResult
from clarion.engine.workflow_definition import MAX_DELAY_SECONDS, DefinitionError, DelayStep, duration_seconds
from clarion.store.workflow_runs import RunEvent


def _lookup(variables: Mapping[str, Any], path: str) -> Any:
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


def run_delay_step(context: RunContext, step: DelayStep) -> StepResult:
    def event(name: str, **data: Any) -> RunEvent:
        return RunEvent(name, step_ref=step.ref, step_type="delay", data=data)

    if context.run.settings.get("skip_delay"):
        return StepResult(events=[event("step_skipped", reason="skip_delay")])
    seconds = step.delay_seconds or 0.0
    if step.until_field_path is not None:
        found = _seconds_until(_lookup(context.variables(), step.until_field_path), context.now)
        if found is None or not 0 < found + seconds <= MAX_DELAY_SECONDS:
            return StepResult(
                events=[event("step_skipped", reason="invalid_delay", field_path=step.until_field_path)]
            )
        seconds += found
    return StepResult(events=[event("delay_started", seconds=seconds)], wait_seconds=seconds)

"""The throttle step: at most `throttle_limit` runs of the workflow pass it per recipient (and throttle
key) within a window, which the first run to pass opens; the others halt there, the reason on the run.

The window is fixed or read from the run (`clarion.engine.throttle_settings`); a window or key that cannot
be resolved skips the step, as Knock does. The counting is the store's, one statement pair for every run
at the step in a pass, inside the checkpoint's transaction (`clarion.store.throttles`): runs racing
through the same throttle never pass more than its limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from clarion.engine.step_definition import DefinitionParser, StepDefinition, condition_group
from clarion.engine.step_protocol import (
    CONTINUE,
    Halt,
    Outcomes,
    RunAtStep,
    StepOutcome,
    StepServices,
    StepType,
)
from clarion.engine.throttle_settings import ThrottleSettings, parse_throttle_settings
from clarion.schemas.base import format_timestamp
from clarion.store.throttles import ThrottleEntry, ThrottleResult, count_throttled
from clarion.store.workflow_runs import RunEvent


@dataclass(frozen=True, kw_only=True)
class ThrottleStep(StepDefinition):
    type: ClassVar[str] = "throttle"

    settings: ThrottleSettings


def parse_throttle_step(parser: DefinitionParser, data: dict[str, Any], ref: str, field: str) -> ThrottleStep:
    return ThrottleStep(
        ref=ref,
        conditions=condition_group(data, field),
        settings=parse_throttle_settings(data.get("settings"), f"{field}.settings", renderer=parser.renderer),
    )


def _entry(services: StepServices, step: ThrottleStep, at: RunAtStep) -> ThrottleEntry | StepOutcome:
    """What the store counts for the run, or the outcome of a step skipped for want of a window or key."""
    run, variables = at.context.run, at.context.variables()
    window_ends_at = step.settings.window_end(variables, services.now)
    if window_ends_at is None:
        return StepOutcome.skipped(step.ref, "throttle", "invalid_throttle_window")
    key = step.settings.key_value(variables, services.renderer, name=f"{step.ref}.throttle_key")
    if key is None:
        return StepOutcome.skipped(step.ref, "throttle", "invalid_throttle_key")
    return step.settings.entry(
        environment_id=run.environment_id,
        workflow_key=run.workflow_key,
        step_ref=step.ref,
        recipient=run.recipient,
        key=key,
        window_ends_at=window_ends_at,
    )


async def execute_throttle_steps(
    services: StepServices, step: ThrottleStep, runs: Sequence[RunAtStep]
) -> Outcomes:
    pending: list[ThrottleEntry | StepOutcome | Exception] = []
    for at in runs:
        try:
            pending.append(_entry(services, step, at))
        except Exception as exc:
            pending.append(exc)
    entries = [entry for entry in pending if isinstance(entry, ThrottleEntry)]
    results = iter(await count_throttled(services.connection, entries, services.now))
    return [_counted(step, next(results)) if isinstance(entry, ThrottleEntry) else entry for entry in pending]


def _counted(step: ThrottleStep, result: ThrottleResult) -> StepOutcome:
    data = {
        "passed": result.passed,
        "count": result.count,
        "limit": step.settings.limit,
        "window_ends_at": format_timestamp(result.window_ends_at),
    }
    name = "throttle_passed" if result.passed else "run_throttled"
    return StepOutcome(
        events=[RunEvent(name, step_ref=step.ref, step_type="throttle", data=data)],
        step_result=data,
        then=CONTINUE if result.passed else Halt("throttled"),
    )


STEP_TYPE = StepType("throttle", parse_throttle_step, execute_throttle_steps)

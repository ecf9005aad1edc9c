"""The fetch step (`http_fetch`): a request rendered from the run's scope, whose JSON response joins the
run's `data` (at the top level, or at `response_path`) for every later step, as Knock documents.

The request is sent outside the store's transaction: a run that reaches the step in a pass waits at it
(`WaitAtStep`, now), and its step job sends the request in `prepare`, before the transaction in which
`execute` records what came back. Each run's request carries an `Idempotency-Key` naming the run, the
step and the attempt, so that a target can tell a repeat (a job that sent, then crashed before
recording) from a new request.

Knock's error handling: 5xx and timeouts (and, here, 429 and a connection that failed) are retried,
after 30 then 60 seconds or the server's `retry-after` if longer, three attempts in all; any other
answer, a response that is not a JSON object, a refused target or a template that fails halts the run
at once. Each attempt's request and response (secrets redacted) are recorded on the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Final

from clarion.engine.fetch_settings import FetchSettings, merge_fetched_data, parse_fetch_settings
from clarion.engine.frozen import freeze_object
from clarion.engine.outbound_http import FetchFailed, FetchResult, FetchRetryable, FetchSucceeded
from clarion.engine.step_definition import DefinitionParser, StepDefinition, condition_group
from clarion.engine.step_protocol import (
    Halt,
    Outcomes,
    OutsideServices,
    RunAtStep,
    StepOutcome,
    StepServices,
    StepType,
    WaitAtStep,
)
from clarion.store.workflow_runs import RunEvent

RETRY_DELAYS: Final = (30.0, 60.0)
"""Seconds before the second and the third attempt (Knock's)."""
MAX_RETRY_AFTER: Final = 3600.0
"""The longest `retry-after` honoured; a server asking for more is retried after this."""


@dataclass(frozen=True, kw_only=True)
class FetchStep(StepDefinition):
    type: ClassVar[str] = "http_fetch"

    settings: FetchSettings


def parse_fetch_step(parser: DefinitionParser, data: dict[str, Any], ref: str, field: str) -> FetchStep:
    return FetchStep(
        ref=ref,
        conditions=condition_group(data, field),
        settings=parse_fetch_settings(data.get("settings"), f"{field}.settings", parser.renderer),
    )


def _attempts(step: FetchStep, run: RunAtStep) -> list[dict[str, Any]]:
    """The attempts recorded on the run for this step so far."""
    result = run.context.run.step_results.get(step.ref) or {}
    attempts: list[dict[str, Any]] = result.get("attempts", [])
    return attempts


async def prepare_fetches(
    outside: OutsideServices, step: FetchStep, runs: Sequence[RunAtStep]
) -> Sequence[FetchResult | Exception]:
    """Send each run's request, all at once; a request that cannot be rendered is that run's exception."""

    async def fetch(run: RunAtStep) -> FetchResult | Exception:
        try:
            request = step.settings.render(outside.renderer, run.context.template_scope(), name=step.ref)
        except Exception as exc:
            return exc
        if not any(name.lower() == "idempotency-key" for name, _ in request.headers):
            key = f"{run.context.run.id}:{step.ref}:{len(_attempts(step, run)) + 1}"
            request = dataclasses.replace(request, headers=(*request.headers, ("Idempotency-Key", key)))
        return await outside.http.send(request)

    return await asyncio.gather(*(fetch(run) for run in runs))


def _outcome(services: StepServices, step: FetchStep, run: RunAtStep, result: Any) -> StepOutcome:
    if result is None:
        # Reached in a pass that did not prepare this step: its own job sends the request.
        return StepOutcome(then=WaitAtStep(services.now))
    attempts = _attempts(step, run)
    if isinstance(result, Exception):
        record: dict[str, Any] = {"error": f"{type(result).__name__}: {result}"}
    else:
        record = result.record()
    attempts = [*attempts, record]
    number = len(attempts)

    def event(name: str, status: str = "ok") -> RunEvent:
        return RunEvent(
            name, status=status, step_ref=step.ref, step_type="http_fetch", attempt=number, data=record
        )

    if isinstance(result, FetchSucceeded):
        data = merge_fetched_data(run.context.run.data, result.data, step.settings.response_path)
        return StepOutcome(
            events=[event("fetch_succeeded")],
            step_result={"attempts": attempts, "status": "succeeded"},
            data=None if data is run.context.run.data else freeze_object(dict(data)),
        )
    if isinstance(result, FetchRetryable) and number <= len(RETRY_DELAYS):
        wait = max(RETRY_DELAYS[number - 1], min(result.retry_after or 0.0, MAX_RETRY_AFTER))
        return StepOutcome(
            events=[event("fetch_retrying", status="error")],
            step_result={"attempts": attempts, "status": "retrying"},
            then=WaitAtStep(services.now + timedelta(seconds=wait)),
        )
    assert isinstance(result, FetchRetryable | FetchFailed | Exception)
    return StepOutcome(
        events=[event("fetch_failed", status="error")],
        step_result={"attempts": attempts, "status": "failed"},
        then=Halt("fetch_failed"),
    )


async def execute_fetch_steps(services: StepServices, step: FetchStep, runs: Sequence[RunAtStep]) -> Outcomes:
    outcomes: list[StepOutcome | Exception] = []
    for run in runs:
        try:
            prepared = services.prepared.get((step.ref, run.context.run.id))
            outcomes.append(_outcome(services, step, run, prepared))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


STEP_TYPE = StepType("http_fetch", parse_fetch_step, execute_fetch_steps, prepare_fetches)

"""Executing a run, one step per job: the `workflow_step` job runs the step at its run's position, then
checkpoints in ONE transaction what the step produced (messages, events, `refs` results) together with
moving the run on, enqueueing the next step's job and completing its own job.

That transaction is what makes a crash harmless: before its commit nothing of the step is recorded and the
job runs again; after it, the step is done and the next one queued. Two guards keep a step from being
recorded twice when a job runs twice (a worker stalled past its lease): the run moves on only from the
position the step was read at (`clarion.store.workflow_runs.advance`), and the job completes only while
its attempt is still the executing one (`complete_in`, first, so that a rescue skips the locked job); the
first failing rolls the transaction back, the second leaves only the job's completion to commit.

A run whose job finds it finished (cancelled, say) or already past that step does nothing. Before its first
step the run checks the workflow's trigger conditions; at every step, that the workflow is still active and
the recipient still exists, and ends otherwise, as Knock does. A step that raises is retried by the queue
(three attempts); when its last attempt fails, `step_discarded` ends the run in the discarding transaction
with the error recorded on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.engine.conditions import conditions_hold
from clarion.engine.run_scope import RunContext, condition_scope, load_context
from clarion.engine.steps.channel import run_channel_step
from clarion.engine.steps.delay import run_delay_step
from clarion.engine.steps.result import StepResult
from clarion.engine.trigger import step_job
from clarion.engine.workflow_definition import ChannelStep, DelayStep
from clarion.jobs.job import Acknowledged, JobRecord, Outcome, Superseded
from clarion.store.clock import utcnow
from clarion.store.messages import insert_messages
from clarion.store.workflow_runs import (
    FINISHED,
    FIRST_POSITION,
    RunEvent,
    RunStatus,
    add_events,
    advance,
    read_run,
)

if TYPE_CHECKING:
    from clarion.runtime import Runtime


@dataclass(frozen=True)
class _Ending:
    """The run stops here, for `reason`."""

    reason: str


async def _execute(
    runtime: Runtime, connection: AsyncConnection, context: RunContext, index: int
) -> StepResult | _Ending:
    run, definition = context.run, context.definition
    if context.recipient is None:
        return _Ending("recipient_missing")
    starting = run.position == FIRST_POSITION and run.status is RunStatus.QUEUED
    scope = condition_scope(context, connection, runtime.renderer)
    if starting and not await conditions_hold(definition.conditions, scope):
        return _Ending("trigger_conditions_not_met")
    if index >= len(definition.steps):
        return StepResult()
    step = definition.steps[index]
    if not await conditions_hold(step.conditions, scope):
        return StepResult.skipped(step.ref, step.type, "conditions_not_met")
    if isinstance(step, ChannelStep):
        return await run_channel_step(runtime, connection, context, step, scope)
    assert isinstance(step, DelayStep)
    return run_delay_step(context, step)


async def execute_step(runtime: Runtime, job: JobRecord) -> Outcome:
    """The `workflow_step` job."""
    environment_id, run_id, position = job.args["environment_id"], job.args["run_id"], job.args["position"]
    run = await runtime.workflow_runs.get(environment_id, run_id)
    if run is None or run.status.value in FINISHED or run.position != position:
        return None
    definition = await runtime.workflows.definition(environment_id, run.version_id)
    if definition is None:
        raise LookupError(f"run {run.id} names workflow version {run.version_id}, which does not exist")
    # Looked up before the step's connection is taken: a second checkout while holding one could wait
    # forever on a pool that concurrent steps have emptied the same way.
    current = await runtime.workflows.current(environment_id, run.workflow_key)
    now = utcnow()
    index = int(position)
    outcome: StepResult | _Ending
    if current is not None and not current.active:
        outcome = _Ending("workflow_inactive")
    else:
        async with runtime.database.reader.connect() as connection:
            context = await load_context(connection, run, definition, now)
            outcome = await _execute(runtime, connection, context, index)
    events: list[RunEvent] = []
    if run.status is RunStatus.QUEUED:
        events.append(RunEvent("run_started"))
    if isinstance(outcome, _Ending):
        next_position = None
        result = StepResult(events=[RunEvent("run_ended", data={"reason": outcome.reason})])
    else:
        result = outcome
        following = index + 1
        next_position = str(following) if following < len(definition.steps) else None
    step_results = dict(run.step_results)
    if result.step_result is not None and index < len(definition.steps):
        step_results[definition.steps[index].ref] = result.step_result
    if next_position is None:
        status = RunStatus.COMPLETED
        if not isinstance(outcome, _Ending):
            result.events.append(RunEvent("run_completed"))
    else:
        status = RunStatus.PAUSED if result.wait_seconds > 0 else RunStatus.PROCESSING
    async with runtime.database.writer.begin() as connection:
        if not await advance(
            connection, run, position=next_position, status=status, step_results=step_results
        ):
            raise Superseded
        await insert_messages(connection, environment_id, result.messages)
        await add_events(connection, environment_id, run.id, [*events, *result.events])
        if next_position is not None:
            scheduled_at = now + timedelta(seconds=result.wait_seconds) if result.wait_seconds > 0 else None
            await runtime.queue.insert(
                connection, step_job(environment_id, run.id, next_position, scheduled_at=scheduled_at)
            )
    return Acknowledged()


async def step_discarded(connection: AsyncConnection, job: JobRecord) -> None:
    """A step failed on its last attempt: the run halts, with the error on it."""
    environment_id = job.args["environment_id"]
    run = await read_run(connection, environment_id, job.args["run_id"])
    if run is None or run.status.value in FINISHED or run.position != job.args["position"]:
        return
    error: Any = job.errors[-1]["error"] if job.errors else "the step failed"
    await advance(connection, run, position=None, status=RunStatus.COMPLETED, errors=1)
    await add_events(
        connection,
        environment_id,
        run.id,
        [
            RunEvent(
                "step_failed", status="error", attempt=job.attempt, data={"error": error.splitlines()[-1]}
            )
        ],
    )

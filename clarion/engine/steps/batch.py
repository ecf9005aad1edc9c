"""The batch step: runs of a workflow for the same recipient (and batch key) within a window become one.

The first run to reach the step opens a batch and carries it: it waits at the step until the window
closes, then flushes the batch and goes on with it, its templates seeing `activities`, `actors`,
`total_activities` and `total_actors` (`clarion.engine.run_scope`) and its data the merged, flattened data
of the rendered activities, as Knock documents. Runs that reach the step while the batch is open add their
activity to it and end there, saying which run carries it. With `flush_leading` the opener goes on at once,
alone, and the second run carries the batch. A batch that fills (`batch_items_max_limit`), or whose sliding
window's cap has passed, closes at once: the run that closed it wakes the carrier with a step job of its
own. A sliding window that moved the close later makes the carrier wait again at its wake-up.

Joining and flushing are the store's (`clarion.store.batches`): one statement per kind for every run at the
step in a pass, in the checkpoint's transaction, so racing triggers make one batch and a batch is flushed
once. The window and key come from `clarion.engine.batch_settings`; a window that cannot be resolved skips
the step, as Knock does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import sqlalchemy as sa

from clarion.engine.batch_settings import BatchOrder, BatchSettings, parse_batch_settings
from clarion.engine.frozen import freeze_object
from clarion.engine.run_scope import serialise_recipient
from clarion.engine.step_definition import DefinitionParser, StepDefinition, condition_group
from clarion.engine.step_protocol import (
    CONTINUE,
    Halt,
    Outcomes,
    RunAtStep,
    StepOutcome,
    StepServices,
    StepType,
    WaitAtStep,
)
from clarion.engine.workflow_jobs import step_job
from clarion.jobs.job import Job
from clarion.schemas.base import format_timestamp
from clarion.store.batch_activities import BatchContents
from clarion.store.batches import (
    BatchFlush,
    BatchJoin,
    FlushOutcome,
    FlushResult,
    JoinOutcome,
    JoinResult,
    flush_batches,
    join_batches,
)
from clarion.store.recipient_resolution import RecipientKey, load_recipients
from clarion.store.tables import workflow_runs
from clarion.store.workflow_runs import RunEvent

MERGED_TEXT_LIMIT: Final = 256
"""Strings of the activities' data longer than this are cut in the data a flushed run goes on with."""


@dataclass(frozen=True, kw_only=True)
class BatchStep(StepDefinition):
    type: ClassVar[str] = "batch"

    settings: BatchSettings


def parse_batch_step(parser: DefinitionParser, data: dict[str, Any], ref: str, field: str) -> BatchStep:
    return BatchStep(
        ref=ref,
        conditions=condition_group(data, field),
        settings=parse_batch_settings(data.get("settings"), f"{field}.settings", renderer=parser.renderer),
    )


def _event(step: BatchStep, name: str, **data: Any) -> RunEvent:
    return RunEvent(name, step_ref=step.ref, step_type="batch", data=data)


def _carried(step: BatchStep, at: RunAtStep) -> str | None:
    """The batch the run carries and waits at this step to flush, if it does."""
    result = at.context.run.step_results.get(step.ref)
    return result["batch_id"] if isinstance(result, dict) and result.get("carrier") else None


async def execute_batch_steps(services: StepServices, step: BatchStep, runs: Sequence[RunAtStep]) -> Outcomes:
    outcomes: dict[int, StepOutcome | Exception] = {}
    joining: list[tuple[int, RunAtStep, BatchJoin]] = []
    flushing: list[tuple[int, RunAtStep, str]] = []
    for index, at in enumerate(runs):
        try:
            batch_id = _carried(step, at)
            if batch_id is not None:
                flushing.append((index, at, batch_id))
                continue
            entry = _entry(services, step, at)
        except Exception as exc:
            outcomes[index] = exc
            continue
        if isinstance(entry, StepOutcome):
            outcomes[index] = entry
        else:
            joining.append((index, at, entry))
    if joining:
        await _join(services, step, joining, outcomes)
    if flushing:
        await _flush(services, step, flushing, outcomes)
    return [outcomes[index] for index in range(len(runs))]


def _entry(services: StepServices, step: BatchStep, at: RunAtStep) -> BatchJoin | StepOutcome:
    run, variables, settings = at.context.run, at.context.variables(), step.settings
    closes_at = settings.window_end(variables, services.now)
    if closes_at is None:
        return StepOutcome.skipped(step.ref, "batch", "invalid_batch_window")
    key = settings.key_value(variables, services.renderer, name=f"{step.ref}.batch_key")
    identity = settings.identity(
        environment_id=run.environment_id,
        workflow_key=run.workflow_key,
        version_id=run.version_id,
        step_ref=step.ref,
        recipient=run.recipient,
        key=key,
    )
    return settings.join(
        run_id=run.id, identity=identity, actor=run.actor, data=run.data, closes_at=closes_at
    )


async def _join(
    services: StepServices,
    step: BatchStep,
    joining: Sequence[tuple[int, RunAtStep, BatchJoin]],
    outcomes: dict[int, StepOutcome | Exception],
) -> None:
    results = await join_batches(services.connection, [entry for _, _, entry in joining], services.now)
    here = {at.context.run.id for _, at, _ in joining}
    # Carriers whose batch a run of this pass closed: those waiting elsewhere are woken by a job now.
    woken = {result.run_id for result in results if result.closed_now and result.run_id is not None}
    environment_id = joining[0][1].context.run.environment_id
    wake_jobs = await _wake_jobs(services, environment_id, [run_id for run_id in woken if run_id not in here])
    for (index, at, _), result in zip(joining, results, strict=True):
        outcomes[index] = _joined(services, step, at, result, woken, wake_jobs)


def _joined(
    services: StepServices,
    step: BatchStep,
    at: RunAtStep,
    result: JoinResult,
    woken: set[str],
    wake_jobs: Mapping[str, Job],
) -> StepOutcome:
    batch = {"batch_id": result.batch_id, "activities": result.activity_count}
    if result.outcome is JoinOutcome.WAIT:
        closes_at = services.now if at.context.run.id in woken else result.closes_at
        name = "batch_opened" if result.opened else "batch_carried"
        return StepOutcome(
            events=[_event(step, name, **batch, closes_at=format_timestamp(closes_at))],
            step_result={"batch_id": result.batch_id, "carrier": True},
            then=WaitAtStep(closes_at),
        )
    if result.outcome is JoinOutcome.CONTINUE:
        # flush_leading: the opener goes on alone, the batch left to the runs after it.
        at.context.batch_flushed(_leading_batch(at))
        return StepOutcome(
            events=[_event(step, "batch_opened", **batch, flushed_leading=True)],
            step_result={"batch_id": result.batch_id, "flushed_leading": True},
        )
    wake = wake_jobs.get(result.run_id) if result.closed_now and result.run_id is not None else None
    return StepOutcome(
        events=[_event(step, "batch_joined", **batch, carried_by=result.run_id)],
        step_result={"batch_id": result.batch_id, "joined": True},
        jobs=[] if wake is None else [wake],
        then=Halt("batched"),
    )


async def _wake_jobs(services: StepServices, environment_id: str, run_ids: Sequence[str]) -> dict[str, Job]:
    """A job due now for each carrier of `run_ids`, at the step it waits at."""
    if not run_ids:
        return {}
    c = workflow_runs.c
    rows = await services.connection.execute(
        sa.select(c.id, c.position).where(
            c.environment_id == environment_id, c.id.in_(list(run_ids)), c.position.is_not(None)
        )
    )
    return {
        row.id: step_job(environment_id, [row.id], row.position, scheduled_at=services.now) for row in rows
    }


async def _flush(
    services: StepServices,
    step: BatchStep,
    flushing: Sequence[tuple[int, RunAtStep, str]],
    outcomes: dict[int, StepOutcome | Exception],
) -> None:
    settings = step.settings
    environment_id = flushing[0][1].context.run.environment_id
    requests = [
        BatchFlush(
            batch_id=batch_id,
            run_id=at.context.run.id,
            render_limit=settings.render_limit,
            newest=settings.order is BatchOrder.DESC,
        )
        for _, at, batch_id in flushing
    ]
    results = await flush_batches(services.connection, environment_id, requests, services.now)
    people = await _people(services, environment_id, [result.contents for result in results])
    for (index, at, batch_id), result in zip(flushing, results, strict=True):
        outcomes[index] = _flushed(step, at, batch_id, result, people)


async def _people(
    services: StepServices, environment_id: str, contents: Sequence[BatchContents]
) -> dict[RecipientKey, dict[str, Any]]:
    """The actors of the flushed batches, as templates see them, read together."""
    keys = {actor for each in contents for actor in each.actors}
    keys |= {
        activity.actor for each in contents for activity in each.activities if activity.actor is not None
    }
    found = await load_recipients(services.connection, environment_id, keys)
    return {key: serialise_recipient(record) for key, record in found.items()}


def _flushed(
    step: BatchStep,
    at: RunAtStep,
    batch_id: str,
    result: FlushResult,
    people: Mapping[RecipientKey, dict[str, Any]],
) -> StepOutcome:
    if result.outcome is FlushOutcome.WAIT:
        assert result.closes_at is not None
        return StepOutcome(
            events=[
                _event(
                    step, "batch_extended", batch_id=batch_id, closes_at=format_timestamp(result.closes_at)
                )
            ],
            step_result={"batch_id": batch_id, "carrier": True},
            then=WaitAtStep(result.closes_at),
        )
    if result.outcome is FlushOutcome.GONE:
        return StepOutcome(events=[_event(step, "batch_gone", batch_id=batch_id)], then=Halt("batch_gone"))
    if result.total_activities == 0:  # every activity was cancelled: nothing to send (Knock's rule)
        return StepOutcome(
            events=[_event(step, "batch_flushed", batch_id=batch_id, total_activities=0)],
            then=Halt("batch_empty"),
        )
    contents = result.contents
    batch = {
        "batch_id": batch_id,
        "total_activities": result.total_activities,
        "total_actors": contents.total_actors,
        "activities": [
            {
                "id": activity.id,
                "actor": None if activity.actor is None else people.get(activity.actor),
                "data": activity.data,
                "inserted_at": format_timestamp(activity.inserted_at),
            }
            for activity in contents.activities
        ],
        "actors": [people[actor] for actor in contents.actors if actor in people],
    }
    at.context.batch_flushed(batch)
    summary = {
        "batch_id": batch_id,
        "total_activities": result.total_activities,
        "total_actors": contents.total_actors,
    }
    return StepOutcome(
        events=[_event(step, "batch_flushed", **summary)],
        step_result=batch,
        data=freeze_object(merged_data([activity.data for activity in contents.activities])),
        then=CONTINUE,
    )


def _leading_batch(at: RunAtStep) -> dict[str, Any]:
    """What a `flush_leading` opener goes on with: its own activity alone."""
    context = at.context
    view = context.activity_view
    return {
        "batch_id": None,  # its message is no message of the batch's
        "total_activities": 1,
        "total_actors": view["total_actors"],
        "activities": [
            {
                "id": context.run.id,
                "actor": context.actor_wire,
                "data": context.run.data,
                "inserted_at": format_timestamp(context.run.inserted_at),
            }
        ],
        "actors": view["actors"],
    }


def merged_data(activities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The data a flushed run goes on with, as Knock makes it: the rendered activities' data merged, the
    later over the earlier, scalars only, strings cut at `MERGED_TEXT_LIMIT` characters."""
    merged: dict[str, Any] = {}
    for data in activities:
        for key, value in data.items():
            if isinstance(value, str):
                merged[key] = value[:MERGED_TEXT_LIMIT]
            elif value is None or isinstance(value, bool | int | float):
                merged[key] = value
    return merged


STEP_TYPE = StepType("batch", parse_batch_step, execute_batch_steps)

"""Executing runs: every run goes through its steps for as long as they take no time, then records where it
got to, in ONE transaction with what its steps produced (messages, events, `refs` results, the jobs they
enqueue, and what steps wrote as they decided) and the job of the step it waits at.

Runs are executed many at once: a trigger's fan-out executes the first steps of all its runs before
writing a single one (`clarion.engine.trigger`), and the runs that wait at the same step until the same
moment (a trigger's runs after a fixed delay) share one step job, which executes them together. Each step
type (`clarion.engine.steps.registry`) gets all the runs at one of its steps in one call and reads what it
needs for all of them in one query per kind (`clarion.engine.run_scope`, the channel step), so that a
thousand recipients cost a handful of queries and one transaction, not a thousand of each. What a step
changes is seen by the steps after it in the same pass: a run's new data, and the users, objects and
tenants it wrote, shown to every run of the pass that has them as recipient, actor or tenant. A run waits,
and gets a job, only where time must pass (a delay, a batch's window) or where its step raised: a failure
is one run's alone, and that run goes on in a job of its own, whose attempts retry the step. Where a run
goes after each step is the step's outcome (`clarion.engine.step_protocol`); where it is, a position that
may lead into nested step lists (`clarion.engine.run_positions`).

The transaction is what makes a crash harmless: before its commit nothing of the steps is recorded and
they run again; after it, they are done and the waiting step's job is queued. A run is created together
with its first steps' results, so it is never seen half started. A step's job completes itself first in
that transaction (`complete_in`), so that an attempt that is no longer the job's writes nothing and a
rescue skips the job while it commits, and then locks its runs; the run moves on only from the position
it was read at (`clarion.store.workflow_runs.advance`).

Before its first step a run checks the workflow's trigger conditions; at every step, that the workflow is
still active and the recipient still exists, and ends otherwise, as Knock does. A step's job that raises is
retried by the queue (three attempts); when its last attempt fails, `step_discarded` ends its runs in the
discarding transaction with the error recorded on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.engine.conditions import ConditionScope, conditions_hold
from clarion.engine.run_positions import (
    Position,
    format_position,
    nested_position,
    next_position,
    parse_position,
    settle,
    step_at,
)
from clarion.engine.run_scope import (
    RunContext,
    condition_scope,
    load_contexts,
    refs_entry,
    show_written_entities,
)
from clarion.engine.step_protocol import (
    EnterBranch,
    Halt,
    OutsideServices,
    RunAtStep,
    StepOutcome,
    StepServices,
    WaitAtStep,
    WaitUntil,
)
from clarion.engine.steps.registry import STEP_TYPES
from clarion.engine.workflow_definition import WorkflowDefinition
from clarion.engine.workflow_jobs import RUNS_PER_STEP_JOB, step_job, step_job_runs
from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import Acknowledged, Job, JobRecord, Outcome, Superseded
from clarion.store.clock import utcnow
from clarion.store.membership_rules import MembershipRules
from clarion.store.messages import NewMessage, insert_messages, prepare_messages
from clarion.store.recipient_resolution import RecipientKey, record_key
from clarion.store.recipients import RecipientRecord
from clarion.store.workflow_runs import (
    FINISHED,
    FIRST_POSITION,
    RunEvent,
    RunEventRecord,
    RunRecord,
    RunStatus,
    advance,
    insert_runs,
    read_runs,
)

if TYPE_CHECKING:
    from clarion.observability.metrics import Metrics
    from clarion.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class RunProgress:
    """Where one run got to in one pass of execution, and what its steps produced on the way."""

    context: RunContext
    scope: ConditionScope
    position: Position | None
    """The step the run is at; None once it has finished."""
    status: RunStatus
    step_results: dict[str, Any]
    events: list[RunEvent] = field(default_factory=list)
    messages: list[NewMessage] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    """What its steps enqueue with its checkpoint (`StepOutcome.jobs`)."""
    data_changed: bool = False
    """A step gave the run new data, which its checkpoint stores."""
    wait_until: datetime | None = None
    """The run pauses at `position` until then."""
    error: Exception | None = None
    """The step at `position` raised: the run waits there for its job to retry it."""

    @property
    def run(self) -> RunRecord:
        return self.context.run

    @property
    def runnable(self) -> bool:
        return self.position is not None and self.wait_until is None and self.error is None

    def end(self, reason: str) -> None:
        self.events.append(RunEvent("run_ended", data={"reason": reason}))
        self.position, self.status = None, RunStatus.COMPLETED

    def go_to(self, position: Position) -> None:
        """On to the step at `position`, or past it where the list ends; completed at the workflow's end."""
        settled = settle(self.context.definition.steps, position)
        if settled is None:
            self.events.append(RunEvent("run_completed"))
            self.position, self.status = None, RunStatus.COMPLETED
        else:
            self.position, self.status = settled, RunStatus.PROCESSING

    def record(self, position: Position, ref: str, outcome: StepOutcome) -> None:
        """The step at `position` (whose ref is `ref`) produced `outcome`: the run goes where it says."""
        self.events.extend(outcome.events)
        self.messages.extend(outcome.messages)
        self.jobs.extend(outcome.jobs)
        if outcome.data is not None:
            # The run's own record, built for this pass: later steps, and the checkpoint, read the new data.
            self.run.data, self.data_changed = outcome.data, True
        if outcome.step_result is not None:
            self.step_results[ref] = outcome.step_result
            self.context.refs[ref] = refs_entry([(message.status, []) for message in outcome.messages])
        then = outcome.then
        if isinstance(then, Halt):
            self.end(then.reason)
        elif isinstance(then, WaitUntil):
            # Past the step at once, though the list may end there: the run stays open until it is over.
            self.position, self.wait_until = next_position(position), then.moment
            self.status = RunStatus.PAUSED
        elif isinstance(then, WaitAtStep):
            self.position, self.wait_until, self.status = position, then.moment, RunStatus.PAUSED
        elif isinstance(then, EnterBranch):
            self.go_to(nested_position(position, then.index))
        else:
            self.go_to(next_position(position))

    def moved(self, now: datetime) -> RunRecord:
        """The run as it stands after this pass."""
        run = self.run
        return run.moved(
            position=None if self.position is None else format_position(self.position),
            status=self.status,
            step_results=self.step_results,
            events=(*run.events, *(RunEventRecord(event, now) for event in self.events)),
            error_count=run.error_count,
            updated_at=now,
        )


async def _run_step(
    services: StepServices, position: Position, progress: Sequence[RunProgress]
) -> dict[RecipientKey, RecipientRecord]:
    """The step at `position` for each run of `progress`, which all stand at it. Returns the users,
    objects and tenants it wrote, as they stand after it."""
    step = step_at(progress[0].context.definition.steps, position)
    held: list[RunProgress] = []
    for each in progress:
        try:
            if await conditions_hold(step.conditions, each.scope):
                held.append(each)
            else:
                skipped = StepOutcome.skipped(step.ref, step.type, "conditions_not_met")
                each.record(position, step.ref, skipped)
        except Exception as exc:
            each.error = exc
    if not held:
        return {}
    outcomes = await STEP_TYPES[step.type].execute(
        services, step, [RunAtStep(each.context, each.scope) for each in held]
    )
    written: dict[RecipientKey, RecipientRecord] = {}
    for each, outcome in zip(held, outcomes, strict=True):
        if isinstance(outcome, Exception):
            each.error = outcome
        else:
            each.record(position, step.ref, outcome)
            # In run order, as the step wrote them: an entity written for several runs ends as the last.
            written.update((record_key(entity), entity) for entity in outcome.entities)
    return written


async def execute_runs(
    services: StepServices, runs: Sequence[RunRecord], definition: WorkflowDefinition, *, active: bool
) -> list[RunProgress]:
    """Take each of `runs` (unfinished, of one environment and workflow version) through its steps until
    it finishes or must wait, in the pass's transaction (`services.connection`), writing only what the
    steps themselves write; `record_progress` then records where each run got to."""
    if not runs:
        return []
    connection, now = services.connection, services.now
    contexts = await load_contexts(connection, runs[0].environment_id, runs, definition, now)
    progress: list[RunProgress] = []
    for context in contexts:
        run = context.run
        assert run.position is not None
        each = RunProgress(
            context=context,
            scope=ConditionScope(variables={}, now=now),
            position=parse_position(run.position),
            status=run.status,
            step_results=dict(run.step_results),
        )
        progress.append(each)
        starting = run.position == FIRST_POSITION and run.status is RunStatus.QUEUED
        conditions_met = True
        try:
            each.scope = condition_scope(context, connection, services.renderer)
            if starting and active and context.recipient is not None:
                conditions_met = await conditions_hold(definition.conditions, each.scope)
        except Exception as exc:
            each.error = exc  # it stays as it was, for its job to take it up afresh
            continue
        if starting:
            each.events.append(RunEvent("run_started"))
            each.status = RunStatus.PROCESSING
        if not active:
            each.end("workflow_inactive")
        elif context.recipient is None:
            each.end("recipient_missing")
        elif not conditions_met:
            each.end("trigger_conditions_not_met")
        else:
            assert each.position is not None
            each.go_to(each.position)
    while runnable := [each for each in progress if each.runnable]:
        at_step: dict[Position, list[RunProgress]] = defaultdict(list)
        for each in runnable:
            assert each.position is not None
            at_step[each.position].append(each)
        for position in sorted(at_step):
            entities = await _run_step(services, position, at_step[position])
            if entities:
                show_written_entities([each.context for each in progress], entities)
    failed = [each for each in progress if each.error is not None]
    if failed:
        logger.warning(
            "%s: a step raised for %d of %d runs, which wait at it to be retried; the first error: %r",
            definition.key,
            len(failed),
            len(progress),
            failed[0].error,
        )
    return progress


async def record_progress(
    connection: AsyncConnection,
    queue: QueueEngine,
    progress: Sequence[RunProgress],
    *,
    created: bool,
    now: datetime,
) -> list[RunProgress]:
    """Write, in the caller's transaction, where each run got to and what it produced (its data too where a
    step changed it), with the job of the step it waits at and the jobs its steps enqueue
    (`StepOutcome.jobs`), all in one insert. `created`: the runs are new and inserted as they stand (those
    a trigger job already inserted before a crash are left as they are); else each moves on from the
    position it was read at, unless it moved meanwhile. Returns the runs written, for `count_committed`
    once the transaction commits."""
    if not progress:
        return []
    environment_id = progress[0].run.environment_id
    if created:
        written = await _insert_created(connection, environment_id, progress, now)
    else:
        in_lock_order = sorted(progress, key=lambda each: each.run.id)
        written = [
            each
            for each in in_lock_order
            if await advance(connection, each.run, each.moved(now), write_data=each.data_changed)
        ]
        await insert_messages(connection, environment_id, [m for each in written for m in each.messages])
    await queue.insert_all(connection, [*_step_jobs(environment_id, written), *_outcome_jobs(written)])
    return written


def count_committed(metrics: Metrics, written: Sequence[RunProgress], *, created: bool) -> None:
    """Count in the metrics what `record_progress` wrote, once committed: every new run has started."""
    metrics.runs_progressed(
        started=len(written) if created else 0,
        completed=sum(1 for each in written if each.position is None),
        channel_ids=[message.channel_id for each in written for message in each.messages],
    )


async def _insert_created(
    connection: AsyncConnection, environment_id: str, progress: Sequence[RunProgress], now: datetime
) -> list[RunProgress]:
    """Insert new runs and their messages; returns those inserted. The runs' INSERT is sent first, and the
    messages' rows are bound while the database runs it: on PostgreSQL the two overlap; on SQLite, whose
    calls run inline, they follow each other."""
    runs = [each.moved(now) for each in progress]
    insertion = asyncio.ensure_future(insert_runs(connection, environment_id, runs))
    try:
        await asyncio.sleep(0)  # the INSERT goes out
        messages = prepare_messages(
            connection.dialect, environment_id, [m for each in progress for m in each.messages]
        )
    except BaseException:
        with contextlib.suppress(BaseException):
            await insertion  # the connection is the caller's again before the error goes up
        raise
    inserted = set(await insertion)
    written = [each for each in progress if each.run.id in inserted]
    if len(written) < len(progress):  # the recipients a crashed attempt started keep its runs and messages
        messages = prepare_messages(
            connection.dialect, environment_id, [m for each in written for m in each.messages]
        )
    await messages(connection)
    return written


def _step_jobs(environment_id: str, waiting: Sequence[RunProgress]) -> list[Job]:
    """The jobs of the steps the runs wait at: one for the runs waiting at the same step until the same
    moment, up to `RUNS_PER_STEP_JOB`; one of its own for each run whose step raised."""
    together: dict[tuple[Position, datetime | None, str | None], list[str]] = defaultdict(list)
    for each in waiting:
        if each.position is not None:
            alone = each.run.id if each.error is not None else None
            together[each.position, each.wait_until, alone].append(each.run.id)
    return [
        step_job(
            environment_id,
            run_ids[start : start + RUNS_PER_STEP_JOB],
            format_position(position),
            scheduled_at=wait_until,
        )
        for (position, wait_until, _), run_ids in together.items()
        for start in range(0, len(run_ids), RUNS_PER_STEP_JOB)
    ]


def _outcome_jobs(written: Sequence[RunProgress]) -> list[Job]:
    """The jobs the steps of the runs written enqueue, each once though several runs' outcomes share it."""
    jobs = {id(job): job for each in written for job in each.jobs}
    return list(jobs.values())


def _waiting(runs: Sequence[RunRecord], position: str) -> list[RunRecord]:
    """Those of `runs` still waiting at `position` (not finished, not moved on), in id order: the order
    every transaction that updates many runs locks them in, so that two never deadlock."""
    return sorted(
        (run for run in runs if run.status.value not in FINISHED and run.position == position),
        key=lambda run: run.id,
    )


def step_services(
    runtime: Runtime,
    connection: AsyncConnection,
    now: datetime,
    audience_rules: MembershipRules,
    prepared: Mapping[tuple[str, str], Any] | None = None,
) -> StepServices:
    """What the steps of a pass in `connection`'s transaction may use; `audience_rules` are the
    environment's, looked up before the transaction."""
    return StepServices(
        connection=connection,
        now=now,
        channels=runtime.channels,
        renderer=runtime.renderer,
        prepared=prepared or {},
        audience_rules=audience_rules,
    )


async def _prepare(
    runtime: Runtime,
    environment_id: str,
    run_ids: Sequence[str],
    position: str,
    definition: WorkflowDefinition,
    now: datetime,
) -> dict[tuple[str, str], Any]:
    """What the step at `position` prepares outside any transaction for the runs waiting there whose
    conditions hold (a fetch's response), by (step ref, run id); nothing for a step type that prepares
    nothing."""
    at = settle(definition.steps, parse_position(position))
    if at is None or format_position(at) != position:
        return {}
    step = step_at(definition.steps, at)
    prepare = STEP_TYPES[step.type].prepare
    if prepare is None:
        return {}
    held: list[RunAtStep] = []
    async with runtime.database.reader.connect() as connection:
        waiting = _waiting(await read_runs(connection, environment_id, run_ids), position)
        for context in await load_contexts(connection, environment_id, waiting, definition, now):
            scope = condition_scope(context, connection, runtime.renderer)
            with contextlib.suppress(Exception):  # the pass evaluates them again, and records the error
                if await conditions_hold(step.conditions, scope):
                    held.append(RunAtStep(context, scope))
    outside = OutsideServices(now=now, renderer=runtime.renderer, http=runtime.outbound_http)
    results = await prepare(outside, step, held)
    return {(step.ref, at.context.run.id): result for at, result in zip(held, results, strict=True)}


async def execute_step(runtime: Runtime, job: JobRecord) -> Outcome:
    """The `workflow_step` job: its runs go on from the step they waited at, in one transaction that
    completes the job first (so that an attempt that is no longer the job's writes nothing, and a rescue
    skips the job while it commits), then locks the runs, executes their steps and records where they got
    to. A job of one run whose own step raises fails, for the queue to retry it; in a job of many, that
    run goes on in a job of its own."""
    environment_id, position = job.args["environment_id"], job.args["position"]
    run_ids = step_job_runs(job)
    # Looked up before the step's connection is taken: a second checkout while holding one could wait
    # forever on a pool that concurrent steps have emptied the same way. A job's runs are one trigger's,
    # so they share its workflow version.
    found = await runtime.workflow_runs.version_of(environment_id, run_ids)
    if found is None:
        return None
    workflow_key, version_id = found
    definition = await runtime.workflows.definition(environment_id, version_id)
    if definition is None:
        raise LookupError(f"runs {run_ids} name workflow version {version_id}, which does not exist")
    current = await runtime.workflows.current(environment_id, workflow_key)
    now = utcnow()
    prepared = await _prepare(runtime, environment_id, run_ids, position, definition, now)
    audience_rules = await runtime.audience_catalog.rules(
        environment_id, adding_members=definition.adds_audience_members
    )
    async with runtime.database.writer.begin() as connection:
        if not await runtime.queue.complete_in(connection, job):
            raise Superseded
        stored = await read_runs(connection, environment_id, run_ids, for_update=True)
        waiting = _waiting(stored, position)
        progress = await execute_runs(
            step_services(runtime, connection, now, audience_rules, prepared),
            waiting,
            definition,
            active=current is None or current.active,
        )
        if len(run_ids) == 1 and progress:
            [only] = progress
            if only.error is not None and only.position == parse_position(position):
                raise only.error  # this job's own step failed: the queue retries it
        written = await record_progress(connection, runtime.queue, progress, created=False, now=now)
    count_committed(runtime.metrics, written, created=False)
    return Acknowledged()


async def step_discarded(queue: QueueEngine, connection: AsyncConnection, job: JobRecord) -> None:
    """A step's job failed on its last attempt. Its one run halts, with the error on it; the runs of a
    job of many each go on in a job of their own instead, so that a run that fails the whole job (it
    crashes the worker, say) halts alone."""
    environment_id, position = job.args["environment_id"], job.args["position"]
    waiting = _waiting(await read_runs(connection, environment_id, step_job_runs(job)), position)
    if len(step_job_runs(job)) > 1:
        await queue.insert_all(connection, [step_job(environment_id, [run.id], position) for run in waiting])
        return
    error: Any = job.errors[-1]["error"] if job.errors else "the step failed"
    failed = RunEvent(
        "step_failed", status="error", attempt=job.attempt, data={"error": error.splitlines()[-1]}
    )
    now = utcnow()
    for run in waiting:
        halted = run.moved(
            position=None,
            status=RunStatus.COMPLETED,
            step_results=run.step_results,
            events=(*run.events, RunEventRecord(failed, now)),
            error_count=run.error_count + 1,
            updated_at=now,
        )
        await advance(connection, run, halted)

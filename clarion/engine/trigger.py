"""Triggering a workflow: accepting the request, then starting one run per recipient.

`accept_trigger` does at request time what must fail the request: the workflow exists and is active, the
`data` satisfies the workflow's `trigger_data_json_schema`, inline channel data fits its channels, and an
actor given by id exists. It then enqueues one `workflow_trigger` job carrying the request and the version
current now (the run pins it), and answers with the trigger's `workflow_run_id`. Nothing else happens in
the request, which keeps the intake to one insert. A `trigger_workflow` step makes the same job
(`clarion.engine.workflow_jobs.trigger_job`, `trigger_source` `workflow_step`) with its run's checkpoint,
and the depth of its chain of nested triggers, which the runs it starts keep in their settings.

The job (`start_runs`) identifies the inline recipients, actor and tenant, fans object recipients out to
their subscribers (two levels, each recipient once, the actor never reached through a subscription),
executes every run's steps up to the first that must wait (`clarion.engine.run_executor`), and writes the
runs as they stand then, with their messages and the jobs of the steps they wait at, completing itself in
that same transaction: a crash before the commit leaves the job to run again with nothing written, and
after it nothing to redo. A fan-out larger than `RUNS_PER_TRANSACTION` is executed and written a chunk per
transaction, the job completing with the last. Runs are unique per (trigger, recipient), so a job that
stopped midway, or lost its lease and ran twice, starts each run once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.engine.frozen import FrozenDict, freeze, freeze_object
from clarion.engine.run_executor import (
    RunProgress,
    count_committed,
    execute_runs,
    record_progress,
    step_services,
)
from clarion.engine.trigger_data import check_trigger_data
from clarion.engine.workflow_definition import EVERY_TRIGGER, ONCE_PER_RECIPIENT_PER_TENANT
from clarion.engine.workflow_jobs import TRIGGER_DEPTH, trigger_job
from clarion.errors import FieldError, InvalidInputError, NotFoundError
from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import Acknowledged, Cancel, Job, JobRecord, Superseded
from clarion.schemas.recipient_references import InlineIdentifyObjectRequest, recipient_inputs
from clarion.schemas.tenants import TenantRequest
from clarion.schemas.users import InlineIdentifyUserRequest
from clarion.schemas.workflows import TRIGGER_DATA_KEY, TriggerWorkflowRequest
from clarion.store import json_codec
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.first_runs import NO_TENANT, record_first_runs
from clarion.store.group_commit import GroupCommitter
from clarion.store.idempotency_keys import claim
from clarion.store.ids import new_uuid
from clarion.store.recipient_resolution import (
    RecipientInput,
    RecipientKey,
    key_of,
    load_recipients,
    upsert_recipients,
)
from clarion.store.recipients import ensure_recipients
from clarion.store.subscriptions import subscribers_of
from clarion.store.tables import TENANTS_COLLECTION
from clarion.store.tenants import TenantEntry, upsert_tenants
from clarion.store.workflow_runs import FIRST_POSITION, RunRecord, RunStatus, started_recipients
from clarion.store.workflows import document_sha

if TYPE_CHECKING:
    from clarion.runtime import Runtime

logger = logging.getLogger(__name__)

RUNS_PER_TRANSACTION = 1000
"""How many runs one transaction of a trigger's fan-out executes and writes at most: the recipients one
trigger may name, so that only subscribers reached through objects make a fan-out take several."""
SUBSCRIPTION_DEPTH = 2
"""Object recipients notify their subscribers, and subscribed objects theirs: parent → child → user."""


@dataclass(slots=True)  # made per request: not frozen, which costs more to build (docs/decisions.md)
class PreparedTrigger:
    recipients: list[RecipientInput]
    recipient_data: dict[RecipientKey, dict[str, Any]]
    """Per recipient, its `$trigger_data`: shallow-merged over `data` for its run."""
    actor: RecipientInput | None
    tenant: TenantEntry | None
    tenant_is_inline: bool
    """The tenant was given as an object, to set; an id alone only makes sure the tenant exists."""
    data: dict[str, Any]


_INLINE_RECIPIENTS = (InlineIdentifyUserRequest, InlineIdentifyObjectRequest)


def _trigger_data(recipient: Any, index: int) -> dict[str, Any] | None:
    if not isinstance(recipient, _INLINE_RECIPIENTS):
        return None
    extra = recipient.model_extra or {}
    if TRIGGER_DATA_KEY not in extra:
        return None
    value = extra.pop(TRIGGER_DATA_KEY)
    if not isinstance(value, dict):
        raise InvalidInputError.field(f"recipients.{index}.{TRIGGER_DATA_KEY}", "must be an object")
    return value


def prepare_trigger(runtime: Runtime, body: TriggerWorkflowRequest) -> PreparedTrigger:
    """The request's recipients, actor and tenant as the store takes them, checked against the channels."""
    recipient_data: dict[int, dict[str, Any]] = {}
    for index, recipient in enumerate(body.recipients):
        data = _trigger_data(recipient, index)
        if data is not None:
            recipient_data[index] = data
    recipients = recipient_inputs(body.recipients, runtime.channels)
    actor = None
    if body.actor is not None:
        actor = recipient_inputs([body.actor], runtime.channels, field="actor")[0]
    tenant = None
    if isinstance(body.tenant, TenantRequest):
        tenant = body.tenant.entry(body.tenant.id)
    elif isinstance(body.tenant, str):
        tenant = TenantEntry(id=body.tenant, properties={})
    return PreparedTrigger(
        recipients=recipients,
        recipient_data={key_of(recipients[index]): data for index, data in recipient_data.items()},
        actor=actor,
        tenant=tenant,
        tenant_is_inline=isinstance(body.tenant, TenantRequest),
        data=body.data or {},
    )


@dataclass(slots=True)  # made per request
class AcceptedTrigger:
    workflow_run_id: str
    replayed: bool
    """The response is the one first given to the same `Idempotency-Key`; nothing was enqueued now."""


async def accept_trigger(
    runtime: Runtime,
    environment_id: str,
    key: str,
    body: TriggerWorkflowRequest,
    body_json: bytes,
    *,
    idempotency_key: str | None = None,
    source: str = "api",
) -> AcceptedTrigger:
    """Check the trigger (`body`, parsed from `body_json`) and enqueue it. With an `idempotency_key`
    already used in the last 24 hours, the first response is replayed instead (a different request under
    the same key is refused)."""
    workflow = await runtime.workflows.current(environment_id, key)
    if workflow is None:
        raise NotFoundError(
            f"No workflow with key {key!r} is committed to this environment", code="workflow_missing"
        )
    if not workflow.active:
        raise InvalidInputError(f"The workflow {key!r} is inactive", code="workflow_inactive")
    prepared = prepare_trigger(runtime, body)
    if workflow.definition.trigger_data_json_schema is not None:
        check_trigger_data(workflow.definition.trigger_data_json_schema, prepared.data)
    if isinstance(prepared.actor, RecipientKey):
        async with runtime.database.reader.connect() as connection:
            found = await load_recipients(connection, environment_id, [prepared.actor])
        if prepared.actor not in found:
            raise InvalidInputError(
                f"The actor {prepared.actor.id!r} has not been identified",
                code="actor_missing",
                errors=[FieldError("actor", "names a recipient that does not exist")],
            )
    workflow_run_id = new_uuid()
    job = trigger_job(
        environment_id,
        workflow_run_id,
        key,
        workflow.version_id,
        source=source,
        # The request as it came and was checked, rather than the parsed model dumped again.
        request=orjson.Fragment(body_json),
    )
    if idempotency_key is None:
        await runtime.trigger_intake.submit(job)
        return AcceptedTrigger(workflow_run_id, replayed=False)
    fingerprint = document_sha({"workflow": key, "request": json_codec.loads(body_json)})
    async with runtime.database.writer.begin() as connection:
        response = {"workflow_run_id": workflow_run_id}
        stored = await claim(connection, environment_id, idempotency_key, fingerprint, response)
        if stored is None:
            await runtime.queue.insert(connection, job)
    if stored is not None:
        if stored.fingerprint != fingerprint:
            raise InvalidInputError.field(
                "Idempotency-Key", "was already used with a different request in the last 24 hours"
            )
        return AcceptedTrigger(stored.response["workflow_run_id"], replayed=True)
    return AcceptedTrigger(workflow_run_id, replayed=False)


class TriggerIntake:
    """Enqueues accepted triggers by group commit: the trigger jobs of requests arriving together are
    inserted in one transaction, since a transaction per trigger (SQLite's single writer above all) would
    cap intake far below the API's own rate. A trigger with an `Idempotency-Key` is enqueued on its own,
    with its key, instead."""

    def __init__(self, database: Database, queue: QueueEngine) -> None:
        self.database = database
        self.queue = queue
        self._committer: GroupCommitter[Job, None] = GroupCommitter(
            self._insert, gathers_one_turn=database.write_batches_gather
        )

    async def _insert(self, jobs: Sequence[Job]) -> list[None]:
        await self.queue.enqueue_all(jobs)
        return [None] * len(jobs)

    async def submit(self, job: Job) -> None:
        """Return once `job` is committed."""
        await self._committer.submit(job)


async def _fan_out(
    connection: AsyncConnection,
    environment_id: str,
    recipients: Sequence[RecipientKey],
    actor: RecipientKey | None,
) -> list[tuple[RecipientKey, dict[str, Any] | None]]:
    """The explicit recipients, then the subscribers they reach, each once: (recipient, the subscription
    that reached it, if any)."""
    reached: dict[RecipientKey, dict[str, Any] | None] = dict.fromkeys(recipients)
    frontier = [key for key in reached if not key.is_user]
    for _ in range(SUBSCRIPTION_DEPTH):
        if not frontier:
            break
        subscribers = await subscribers_of(connection, environment_id, frontier)
        frontier = []
        for subscriber in subscribers:
            if subscriber.recipient in reached or subscriber.recipient == actor:
                continue
            reached[subscriber.recipient] = {
                "object": {"collection": subscriber.object.collection, "id": subscriber.object.id},
                "properties": subscriber.properties or {},
            }
            if not subscriber.recipient.is_user:
                frontier.append(subscriber.recipient)
    return list(reached.items())


def _request(job: JobRecord) -> TriggerWorkflowRequest:
    try:
        return TriggerWorkflowRequest.model_validate_json(json_codec.dumps(job.args["request"]))
    except ValidationError as exc:
        # Accepted once, so only a release that changed the schema under a queued trigger gets here.
        raise ValueError(f"the queued trigger no longer parses: {exc}") from exc


async def start_runs(runtime: Runtime, job: JobRecord) -> Acknowledged | Cancel:
    """The `workflow_trigger` job: identify, fan out, execute the runs' first steps and write the runs as
    they stand after them. A trigger that no longer passes its checks (the channels file changed under
    it, say) is cancelled with the reason rather than retried: trying again cannot make it pass."""
    args = job.args
    environment_id = args["environment_id"]
    try:
        prepared = prepare_trigger(runtime, _request(job))
    except (InvalidInputError, ValueError) as exc:
        logger.error(
            "trigger %s of %s refused at run time: %s", args["workflow_run_id"], args["workflow_key"], exc
        )
        return Cancel(f"the trigger no longer passes its checks: {exc}")
    # Looked up before the transaction's connection is taken (see `execute_step`).
    definition = await runtime.workflows.definition(environment_id, args["version_id"])
    if definition is None:
        raise LookupError(f"trigger {args['workflow_run_id']} names a workflow version that does not exist")
    current = await runtime.workflows.current(environment_id, args["workflow_key"])
    active = current is None or current.active
    audience_rules = await runtime.audience_catalog.rules(
        environment_id, adding_members=definition.adds_audience_members
    )
    actor = None if prepared.actor is None else key_of(prepared.actor)
    tenant = None if prepared.tenant is None else prepared.tenant.id
    # Frozen (`clarion.engine.frozen`), as the runs share them: no run can change them under another.
    data = freeze_object(prepared.data)
    settings = args["request"].get("settings") or {}
    if TRIGGER_DEPTH in args:
        settings = {**settings, TRIGGER_DEPTH: args[TRIGGER_DEPTH]}
    settings = freeze_object(settings)

    def run_data(recipient: RecipientKey) -> dict[str, Any]:
        # The trigger's own object for every run without data of its own: what is shared renders once
        # (`clarion.engine.templates.SharedRenders`) and is encoded once.
        own = prepared.recipient_data.get(recipient)
        return data if own is None else FrozenDict({**data, **freeze_object(own)})

    def new_run(recipient: RecipientKey, via: dict[str, Any] | None, now: datetime) -> RunRecord:
        return RunRecord(
            id=new_uuid(),
            environment_id=environment_id,
            workflow_run_id=args["workflow_run_id"],
            workflow_key=args["workflow_key"],
            version_id=args["version_id"],
            recipient=recipient,
            actor=actor,
            tenant=tenant,
            cancellation_key=args["request"].get("cancellation_key"),
            data=run_data(recipient),
            # Shared by the runs that add nothing to it, like their data.
            settings=settings if via is None else FrozenDict({**settings, "subscription": freeze(via)}),
            trigger_source=args["trigger_source"],
            status=RunStatus.QUEUED,
            position=FIRST_POSITION,
            step_results={},
            events=(),
            error_count=0,
            inserted_at=now,
            updated_at=now,
        )

    async def start(
        connection: AsyncConnection, reached: Sequence[tuple[RecipientKey, Any]], *, last: bool
    ) -> list[RunProgress]:
        """Start the runs of `reached` in the transaction of `connection`, completing the job with the
        `last` chunk. A chunk before the last holds the job instead, so that an attempt that is no longer
        the job's commits nothing. Steps write inside the transaction (a batch joined, a throttle counted),
        so a later attempt leaves out the recipients whose runs an earlier one committed."""
        if not last and not await runtime.queue.hold_in(connection, job):
            raise Superseded
        if job.attempt > 1:
            reached = await _not_started(connection, environment_id, args["workflow_run_id"], reached)
        now = utcnow()  # each chunk's own: its delays count from when its runs start
        if definition.trigger_frequency != EVERY_TRIGGER:
            reached = await _first_runs_only(
                connection, job, definition.trigger_frequency, tenant, reached, now
            )
        runs = [new_run(recipient, via, now) for recipient, via in reached]
        progress = await execute_runs(
            step_services(runtime, connection, now, audience_rules), runs, definition, active=active
        )
        written = await record_progress(connection, runtime.queue, progress, created=True, now=now)
        if last and not await runtime.queue.complete_in(connection, job):
            raise Superseded
        return written

    async with runtime.database.writer.begin() as connection:
        inline = [*prepared.recipients, *([] if prepared.actor is None else [prepared.actor])]
        # The users identified inline move in and out of dynamic audiences with their properties.
        await audience_rules.users_written(
            connection, await upsert_recipients(connection, environment_id, inline)
        )
        if prepared.tenant is not None:
            if prepared.tenant_is_inline:
                await upsert_tenants(connection, environment_id, [prepared.tenant])
            else:
                await ensure_recipients(connection, environment_id, TENANTS_COLLECTION, [prepared.tenant.id])
        reached = await _fan_out(connection, environment_id, [key_of(r) for r in prepared.recipients], actor)
        size = RUNS_PER_TRANSACTION
        chunks = [reached[at : at + size] for at in range(0, len(reached), size)]
        written = await start(connection, chunks[0] if chunks else [], last=len(chunks) <= 1)
    count_committed(runtime.metrics, written, created=True)
    # A large fan-out commits its runs a chunk at a time, so that no transaction (SQLite's single writer
    # least of all) grows with it. A job that stops midway starts the rest when run again: runs are
    # unique per (trigger, recipient), and those already started are left out.
    for index in range(1, len(chunks)):
        async with runtime.database.writer.begin() as connection:
            written = await start(connection, chunks[index], last=index == len(chunks) - 1)
        count_committed(runtime.metrics, written, created=True)
    return Acknowledged()


async def _first_runs_only(
    connection: AsyncConnection,
    job: JobRecord,
    frequency: str,
    tenant: str | None,
    reached: Sequence[tuple[RecipientKey, Any]],
    now: datetime,
) -> list[tuple[RecipientKey, Any]]:
    """Those of `reached` whose first run through the workflow this is (per tenant too with
    `once_per_recipient_per_tenant`), recorded as such."""
    scope = (tenant or NO_TENANT) if frequency == ONCE_PER_RECIPIENT_PER_TENANT else NO_TENANT
    args = job.args
    first = await record_first_runs(
        connection,
        args["environment_id"],
        args["workflow_key"],
        args["workflow_run_id"],
        [(recipient, scope) for recipient, _ in reached],
        now,
    )
    return [(recipient, via) for recipient, via in reached if (recipient, scope) in first]


async def _not_started(
    connection: AsyncConnection,
    environment_id: str,
    workflow_run_id: str,
    reached: Sequence[tuple[RecipientKey, Any]],
) -> list[tuple[RecipientKey, Any]]:
    """Those of `reached` for whom the trigger has no run yet."""
    started = set(await started_recipients(connection, environment_id, workflow_run_id))
    return [(recipient, via) for recipient, via in reached if recipient not in started]

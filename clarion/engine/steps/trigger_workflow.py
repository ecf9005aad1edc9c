"""The trigger workflow step: each run at it triggers the workflow `workflow_key` names, as a trigger through
the API would, with the version current at that moment pinned.

Every setting is Liquid (Knock's); one left out takes Knock's default, taken from the run itself rather
than rendered, so that an object recipient or actor stays an object: `recipients` the run's recipient,
`actor` its actor, `tenant` its tenant, `data` its data (as earlier steps left it), `cancellation_key`
its own. A rendered `recipients` is a user id, or JSON: one recipient or a list of them, each a user id,
an `{id, collection}` object or an inline identify; `actor` and `tenant` likewise read as an id or a JSON
object; `data` must render a JSON object. The trigger carries the run's `sandbox_mode` and `skip_delay`.

As in Knock, a target that does not exist or is inactive skips the step (`workflow_missing`,
`workflow_inactive`); a trigger that would be refused by the API (a bad recipient, data failing the
target's `trigger_data_json_schema`, an actor that was never identified) or a render that fails fails
the step, which its job retries and then halts the run. Knock documents no limit on nesting; Clarion
stops a chain of triggers `MAX_TRIGGER_DEPTH` deep (a workflow triggering itself, say), skipping the
step with `trigger_depth_exceeded`.

The triggers of all the runs at the step become `workflow_trigger` jobs that the run executor inserts
with the runs' checkpoint, in one insert: a trigger commits with its run's move past the step, or not
at all, and its unique key (run, step) keeps a pass that ran twice from triggering twice. The runs they
start say `trigger_source` `workflow_step`; the parent's `workflow_triggered` run event names the
trigger's `workflow_run_id`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError

from clarion.engine.json_templates import has_liquid
from clarion.engine.run_scope import RunContext
from clarion.engine.step_definition import (
    WORKFLOW_KEY,
    DefinitionError,
    DefinitionParser,
    StepDefinition,
    condition_group,
    settings_object,
    text_field,
)
from clarion.engine.step_protocol import Outcomes, RunAtStep, StepOutcome, StepServices, StepType
from clarion.engine.templates import SharedRenders, TemplateError
from clarion.engine.trigger_data import check_trigger_data
from clarion.engine.workflow_jobs import TRIGGER_DEPTH, TRIGGER_JOB, trigger_job
from clarion.errors import InvalidInputError
from clarion.schemas.recipient_references import recipient_inputs
from clarion.schemas.workflows import TriggerSettings, TriggerWorkflowRequest
from clarion.store import json_codec
from clarion.store.ids import new_uuid
from clarion.store.recipient_resolution import RecipientKey, load_recipients
from clarion.store.workflow_runs import RunEvent, RunRecord
from clarion.store.workflows import read_current

MAX_TRIGGER_DEPTH = 10
"""How many `trigger_workflow` steps may lead one to another: the runs of the tenth nested trigger skip
theirs."""
TRIGGER_SOURCE = "workflow_step"
TRIGGER_FIELDS = ("recipients", "actor", "tenant", "data", "cancellation_key")
"""The Liquid settings that build the trigger, besides `workflow_key`."""


class NestedTriggerError(ValueError):
    """A trigger a step rendered that the API would refuse."""


@dataclass(frozen=True, kw_only=True)
class TriggerWorkflowStep(StepDefinition):
    type: ClassVar[str] = "trigger_workflow"

    workflow_key: str
    recipients: str | None
    actor: str | None
    tenant: str | None
    data: str | None
    cancellation_key: str | None
    """Each Liquid; None takes the run's own (Knock's defaults)."""


def parse_trigger_workflow_step(
    parser: DefinitionParser, data: dict[str, Any], ref: str, field: str
) -> TriggerWorkflowStep:
    settings = settings_object(data, field, "`workflow_key`")
    where = f"{field}.settings"
    key = text_field(settings, "workflow_key", where, required=True)
    assert key is not None
    parser.liquid(key, f"{where}.workflow_key")
    if not has_liquid(key) and not WORKFLOW_KEY.match(key):
        raise DefinitionError(f"{where}.workflow_key", "must be 3 to 255 characters of a-z, 0-9, _ and -")
    sources: dict[str, str | None] = {}
    for name in TRIGGER_FIELDS:
        source = sources[name] = text_field(settings, name, where)
        if source is not None:
            parser.liquid(source, f"{where}.{name}")
    data_source = sources["data"]
    if data_source is not None and not has_liquid(data_source) and data_source.strip():
        try:
            written = json_codec.loads(data_source)
        except ValueError:
            written = None
        if not isinstance(written, dict):
            raise DefinitionError(f"{where}.data", "must be a JSON object, or Liquid that renders one")
    return TriggerWorkflowStep(
        ref=ref,
        conditions=condition_group(data, field),
        workflow_key=key,
        recipients=sources["recipients"],
        actor=sources["actor"],
        tenant=sources["tenant"],
        data=sources["data"],
        cancellation_key=sources["cancellation_key"],
    )


@dataclass(slots=True)
class _Trigger:
    """A run's trigger, rendered and checked as far as the run alone can tell."""

    index: int
    """The run's place among the runs at the step."""
    run: RunRecord
    workflow_key: str
    request: dict[str, Any]
    body: TriggerWorkflowRequest
    actor: RecipientKey | None
    """The actor when given by reference, which must exist."""


async def execute_trigger_workflow_steps(
    services: StepServices, step: TriggerWorkflowStep, runs: Sequence[RunAtStep]
) -> Outcomes:
    renders = SharedRenders(services.renderer)
    outcomes: dict[int, StepOutcome | Exception] = {}
    triggers: list[_Trigger] = []
    for index, (context, _) in enumerate(runs):
        try:
            if context.run.settings.get(TRIGGER_DEPTH, 0) >= MAX_TRIGGER_DEPTH:
                outcomes[index] = StepOutcome.skipped(
                    step.ref, step.type, "trigger_depth_exceeded", max_depth=MAX_TRIGGER_DEPTH
                )
                continue
            triggers.append(_render(services, step, renders, index, context))
        except Exception as exc:
            outcomes[index] = exc
    if triggers:
        connection = services.connection
        environment_id = runs[0].context.run.environment_id
        targets = await read_current(connection, environment_id, {each.workflow_key for each in triggers})
        actors = {each.actor for each in triggers if each.actor is not None}
        found = await load_recipients(connection, environment_id, actors) if actors else {}
        for each in triggers:
            target = targets.get(each.workflow_key)
            try:
                if target is None or not target.active:
                    reason = "workflow_missing" if target is None else "workflow_inactive"
                    skipped = StepOutcome.skipped(step.ref, step.type, reason, workflow=each.workflow_key)
                    outcomes[each.index] = skipped
                    continue
                if each.actor is not None and each.actor not in found:
                    raise NestedTriggerError(
                        f"{step.ref}: the actor {each.actor.id!r} has not been identified"
                    )
                schema = target.current.document.get("trigger_data_json_schema")
                if schema is not None:
                    with _refusal_fails_the_step(step.ref):
                        check_trigger_data(schema, each.body.data or {})
                outcomes[each.index] = _triggered(step, each, target.current.id)
            except Exception as exc:
                outcomes[each.index] = exc
    return [outcomes[index] for index in range(len(runs))]


def _render(
    services: StepServices,
    step: TriggerWorkflowStep,
    renders: SharedRenders,
    index: int,
    context: RunContext,
) -> _Trigger:
    run = context.run
    scope = context.template_scope()

    def render(name: str, source: str) -> str:
        return renders.render(source, scope, name=f"{step.ref}.{name}").strip()

    key = render("workflow_key", step.workflow_key)
    request: dict[str, Any] = {
        "recipients": [run.recipient.reference()]
        if step.recipients is None
        else _recipients(render("recipients", step.recipients), f"{step.ref}.recipients")
    }
    actor = run.actor.reference() if run.actor is not None else None
    if step.actor is not None:
        actor = _one(render("actor", step.actor), f"{step.ref}.actor")
    tenant: Any = run.tenant
    if step.tenant is not None:
        tenant = _one(render("tenant", step.tenant), f"{step.ref}.tenant")
    data: Any = run.data
    if step.data is not None:
        data = _data(render("data", step.data), f"{step.ref}.data")
    cancellation_key = run.cancellation_key
    if step.cancellation_key is not None:
        cancellation_key = render("cancellation_key", step.cancellation_key) or None
    settings = {name: run.settings[name] for name in TriggerSettings.model_fields if name in run.settings}
    for name, value in (
        ("actor", actor),
        ("tenant", tenant),
        ("data", data),
        ("cancellation_key", cancellation_key),
        ("settings", settings or None),
    ):
        if value is not None:
            request[name] = value
    given_actor = None
    with _refusal_fails_the_step(step.ref):
        body = TriggerWorkflowRequest.model_validate(request)
        if not recipient_inputs(body.recipients, services.channels):
            raise NestedTriggerError(f"{step.ref}.recipients: renders no recipient")
        if body.actor is not None:
            [given] = recipient_inputs([body.actor], services.channels, field="actor")
            given_actor = given if isinstance(given, RecipientKey) else None
    return _Trigger(index, run, key, request, body, given_actor)


@contextmanager
def _refusal_fails_the_step(ref: str) -> Iterator[None]:
    """The API's refusal of the trigger, raised inside, turned into the step's failure naming the field."""
    try:
        yield
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join([ref, *map(str, error["loc"])])
        raise NestedTriggerError(f"{where}: {error['msg']}") from None
    except InvalidInputError as exc:
        detail = "; ".join(f"{error.field}: {error.message}" for error in exc.errors) or str(exc)
        raise NestedTriggerError(f"{ref}: {exc} ({detail})") from None


def _rendered_json(text: str, name: str) -> Any:
    try:
        return json_codec.loads(text)
    except ValueError as exc:
        raise TemplateError(f"does not render to JSON: {exc}", name=name) from None


def _recipients(text: str, name: str) -> list[Any]:
    if not text:
        return []
    if text[0] in "[{":
        value = _rendered_json(text, name)
        return value if isinstance(value, list) else [value]
    return [text]


def _one(text: str, name: str) -> Any:
    """An actor or tenant as rendered: nothing, an id, or a JSON object."""
    if not text:
        return None
    return _rendered_json(text, name) if text[0] == "{" else text


def _data(text: str, name: str) -> dict[str, Any]:
    if not text:
        return {}
    value = _rendered_json(text, name)
    if not isinstance(value, dict):
        raise TemplateError("does not render to a JSON object", name=name)
    return value


def _triggered(step: TriggerWorkflowStep, trigger: _Trigger, version_id: str) -> StepOutcome:
    run = trigger.run
    workflow_run_id = new_uuid()
    job = trigger_job(
        run.environment_id,
        workflow_run_id,
        trigger.workflow_key,
        version_id,
        source=TRIGGER_SOURCE,
        request=trigger.request,
        depth=run.settings.get(TRIGGER_DEPTH, 0) + 1,
        unique_key=f"{TRIGGER_JOB}:{run.id}:{step.ref}",
    )
    event = RunEvent(
        "workflow_triggered",
        step_ref=step.ref,
        step_type=step.type,
        data={
            "workflow": trigger.workflow_key,
            "workflow_run_id": workflow_run_id,
            "recipients": trigger.request["recipients"],
        },
    )
    return StepOutcome(events=[event], jobs=[job])


STEP_TYPE = StepType(TriggerWorkflowStep.type, parse_trigger_workflow_step, execute_trigger_workflow_steps)

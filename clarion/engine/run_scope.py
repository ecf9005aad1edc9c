"""What a step of a run sees: the run's recipient, actor and tenant as they stand when the step executes,
the run's data, and the workflow; turned into the variables of conditions (`data.`, `recipient.`, …) and the
scope of templates (`recipient`, `actor`, `data`, `tenant`, `vars`, `workflow`, `timestamp`, …).

Entities are serialised as Knock serialises them (`__typename`, `id`, custom properties, `created_at`,
`updated_at`); an object's custom properties are also reachable at its top level, as for users, so that
`recipient.name` reads the same for both. A recipient reached through a subscription carries it as
`recipient.subscription` (`properties` and the parent `object`). What a step writes of them is shown to the
steps after it in the same pass (`show_written_entities`); a run that waited loads them afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.engine.conditions import ConditionScope
from clarion.engine.frozen import FrozenDict, freeze_object
from clarion.engine.templates import TemplateRenderer
from clarion.schemas.base import format_timestamp
from clarion.schemas.objects import Object
from clarion.schemas.users import User
from clarion.store.audiences import is_member as is_audience_member
from clarion.store.messages import message_statuses
from clarion.store.recipient_resolution import RecipientKey, load_recipients
from clarion.store.recipients import RecipientRecord
from clarion.store.tables import TENANTS_COLLECTION, USERS_COLLECTION
from clarion.store.workflow_runs import RunRecord

if TYPE_CHECKING:
    from clarion.engine.workflow_definition import WorkflowDefinition


def serialise_recipient(record: RecipientRecord) -> dict[str, Any]:
    if record.collection == USERS_COLLECTION:
        return User.from_record(record).to_wire()
    wire = Object.from_record(record).to_wire()
    return {**wire.get("properties", {}), **wire}


NO_VARS: Final[dict[str, Any]] = FrozenDict()
"""The environment's variables (`vars.*`), of which Clarion has none yet; one object for every run, so that
templates that read them still render once for a fan-out (`clarion.engine.templates.SharedRenders`)."""


@dataclass  # made per run: not frozen, which costs more to build (docs/decisions.md)
class RunContext:
    run: RunRecord
    definition: WorkflowDefinition
    recipient: RecipientRecord | None
    actor_wire: dict[str, Any] | None
    """The actor as templates and conditions see it, serialised once for all the runs it acts in, and
    frozen (`clarion.engine.frozen`) like the tenant's."""
    tenant_wire: dict[str, Any] | None
    now: datetime
    refs: dict[str, dict[str, Any]]
    """Per earlier step ref, the current statuses of the messages it made (`refs.<ref>.…` conditions);
    the run executor adds the steps it executes."""
    batch: dict[str, Any] | None = None
    """The batch the run flushed (`clarion.engine.steps.batch`), as its step result stores it: what
    `activities`, `actors` and their totals read from then on; None for a run that was not batched."""

    def batch_flushed(self, batch: dict[str, Any]) -> None:
        """The run's batch step just flushed `batch`: later steps see its activities."""
        self.batch = batch
        self.__dict__.pop("activity_view", None)

    @cached_property
    def activity_view(self) -> dict[str, Any]:
        """`activities`, `actors`, `total_activities` and `total_actors`, as templates and conditions see
        them: a batch's, or for a run that was not batched its trigger alone, one activity by its actor."""
        recipient = self.serialised_recipient
        if self.batch is not None:
            activities = [
                {**activity["data"], **activity, "recipient": recipient}
                for activity in self.batch["activities"]
            ]
            actors = list(self.batch["actors"])
            return {
                "activities": activities,
                "actors": actors,
                "total_activities": self.batch["total_activities"],
                "total_actors": self.batch["total_actors"],
            }
        run = self.run
        activity = {
            **run.data,
            "id": run.id,
            "actor": self.actor_wire,
            "recipient": recipient,
            "data": run.data,
            "inserted_at": format_timestamp(run.inserted_at),
        }
        actors = [] if self.actor_wire is None else [self.actor_wire]
        return {
            "activities": [activity],
            "actors": actors,
            "total_activities": 1,
            "total_actors": len(actors),
        }

    def recipient_written(self, record: RecipientRecord) -> None:
        """The run's recipient as a step just wrote it; serialised afresh when next read."""
        self.recipient = record
        self.__dict__.pop("serialised_recipient", None)

    @cached_property
    def serialised_recipient(self) -> dict[str, Any] | None:
        if self.recipient is None:
            return None
        serialised = serialise_recipient(self.recipient)
        subscription = self.run.settings.get("subscription")
        if subscription is not None:
            serialised["subscription"] = subscription
        return serialised

    @cached_property
    def workflow(self) -> dict[str, Any]:
        return {
            "id": self.run.version_id,
            "key": self.definition.key,
            "name": self.definition.name,
            "categories": list(self.definition.categories),
            "commercial": self.definition.is_commercial,
            "override_preferences": self.definition.override_preferences,
            "cancellation_key": self.run.cancellation_key,
        }

    def variables(self) -> RunNamespaces:
        """The namespaces conditions read: `data`, `recipient`, `actor`, `tenant`, `vars`, `workflow`,
        `refs` (what earlier steps produced); an absent entity reads as `{}`."""
        return RunNamespaces(self, _VARIABLES)

    def template_scope(self, extra: Mapping[str, Any] | None = None) -> RunNamespaces:
        """What templates see: `data`, `recipient`, `actor`, `tenant`, `vars`, `workflow`, `timestamp`,
        and `extra`; an absent entity reads as nil."""
        return RunNamespaces(self, _TEMPLATE_SCOPE, extra)


_Namespace = Callable[[RunContext], Any]
ACTIVITY_VARIABLES = ("activities", "actors", "total_activities", "total_actors")


def _activity_variable(name: str) -> _Namespace:
    def read(context: RunContext) -> Any:
        return context.activity_view[name]

    return read


_VARIABLES: dict[str, _Namespace] = {
    "data": lambda context: context.run.data,
    "recipient": lambda context: context.serialised_recipient or {},
    "actor": lambda context: context.actor_wire or {},
    "tenant": lambda context: context.tenant_wire or {},
    "vars": lambda context: NO_VARS,
    "workflow": lambda context: context.workflow,
    "refs": lambda context: context.refs,
    **{name: _activity_variable(name) for name in ACTIVITY_VARIABLES},
}
_TEMPLATE_SCOPE: dict[str, _Namespace] = {
    "data": lambda context: context.run.data,
    "recipient": lambda context: context.serialised_recipient,
    "actor": lambda context: context.actor_wire,
    "tenant": lambda context: context.tenant_wire,
    "vars": lambda context: NO_VARS,
    "workflow": lambda context: context.workflow,
    "timestamp": lambda context: format_timestamp(context.now),
    **{name: _activity_variable(name) for name in ACTIVITY_VARIABLES},
}


class RunNamespaces(Mapping[str, Any]):
    """A run's namespaces, each built when first read: a template that reads nothing of its recipient,
    or a step without conditions, never serialises the recipient."""

    def __init__(
        self,
        context: RunContext,
        namespaces: Mapping[str, _Namespace],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._context = context
        self._namespaces = namespaces
        self._extra = extra or {}

    def __getitem__(self, name: str) -> Any:
        if name in self._extra:
            return self._extra[name]
        return self._namespaces[name](self._context)

    def get(self, name: str, default: Any = None) -> Any:
        # What `SharedRenders` asks of every run's scope: the mixin's version goes through a KeyError.
        if name in self._extra:
            return self._extra[name]
        namespace = self._namespaces.get(name)
        return default if namespace is None else namespace(self._context)

    def __iter__(self) -> Iterator[str]:
        yield from self._extra
        yield from (name for name in self._namespaces if name not in self._extra)

    def __len__(self) -> int:
        return len(self._extra) + sum(1 for name in self._namespaces if name not in self._extra)


def condition_scope(
    context: RunContext, connection: AsyncConnection, renderer: TemplateRenderer
) -> ConditionScope:
    """What the run's conditions are evaluated against; audience membership is looked up through
    `connection` as a condition asks for it."""
    run = context.run

    async def is_member(audience_key: str) -> bool:
        if not run.recipient.is_user:
            return False
        return await is_audience_member(
            connection, run.environment_id, audience_key, run.recipient.id, run.tenant
        )

    return ConditionScope(
        variables=context.variables(),
        now=context.now,
        is_audience_member=is_member,
        render=lambda source: renderer.render(source, context.template_scope()),
    )


def refs_entry(statuses: Sequence[tuple[str, Sequence[str]]]) -> dict[str, Any]:
    """What `refs.<ref>` reads for a step whose messages stand at `statuses` (delivery status, engagement
    statuses), each message's; a step that made no message has no delivery status."""
    return {
        "delivery_status": statuses[0][0] if statuses else None,
        "engagement_status": sorted({status for _, engaged in statuses for status in engaged}),
    }


def _refs(run: RunRecord, current: Mapping[str, tuple[str, list[str]]]) -> dict[str, dict[str, Any]]:
    """What each earlier step made, with its messages' statuses as they stand now: a message read since
    its step ran counts as read."""
    refs: dict[str, dict[str, Any]] = {}
    for ref, result in run.step_results.items():
        ids = result.get("message_ids", [])
        statuses = [current[message_id] for message_id in ids if message_id in current]
        if ids and not statuses:
            continue  # its messages are gone: conditions on them are false
        refs[ref] = refs_entry(statuses)
    return refs


def tenant_key(run: RunRecord) -> RecipientKey | None:
    return None if run.tenant is None else RecipientKey(TENANTS_COLLECTION, run.tenant)


def show_written_entities(
    contexts: Iterable[RunContext], written: Mapping[RecipientKey, RecipientRecord]
) -> None:
    """Show the users, objects and tenants a step just wrote (`written`) to every run of `contexts` that has
    one as its recipient, actor or tenant; an actor or tenant is serialised once for all the runs that
    share it, as `load_contexts` does."""
    wires: dict[RecipientKey, dict[str, Any]] = {}

    def wire(key: RecipientKey) -> dict[str, Any]:
        if key not in wires:
            wires[key] = freeze_object(serialise_recipient(written[key]))
        return wires[key]

    for context in contexts:
        run = context.run
        if run.recipient in written:
            context.recipient_written(written[run.recipient])
        if run.actor is not None and run.actor in written:
            context.actor_wire = wire(run.actor)
        tenant = tenant_key(run)
        if tenant is not None and tenant in written:
            context.tenant_wire = wire(tenant)


async def load_contexts(
    connection: AsyncConnection,
    environment_id: str,
    runs: Sequence[RunRecord],
    definition: WorkflowDefinition,
    now: datetime,
) -> list[RunContext]:
    """What the steps of `runs` (of one environment and workflow version) see: their recipients, actors
    and tenants as they stand now, and their earlier messages' statuses, in one query per kind."""
    keys = {key for run in runs for key in (run.recipient, run.actor, tenant_key(run)) if key is not None}
    found = await load_recipients(connection, environment_id, keys)
    made = [i for run in runs for result in run.step_results.values() for i in result.get("message_ids", [])]
    current = await message_statuses(connection, environment_id, made)

    wires: dict[RecipientKey, dict[str, Any]] = {}

    def wire(key: RecipientKey | None) -> dict[str, Any] | None:
        record = None if key is None else found.get(key)
        if key is None or record is None:
            return None
        if key not in wires:
            wires[key] = freeze_object(serialise_recipient(record))
        return wires[key]

    return [
        RunContext(
            run=run,
            definition=definition,
            recipient=found.get(run.recipient),
            actor_wire=wire(run.actor),
            tenant_wire=wire(tenant_key(run)),
            now=now,
            refs=_refs(run, current),
            batch=flushed_batch(run.step_results),
        )
        for run in runs
    ]


def flushed_batch(step_results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The last batch the run flushed, as its batch step's result holds it, or None."""
    for result in reversed(list(step_results.values())):
        if isinstance(result, dict) and "activities" in result:
            return result
    return None

"""What the update user, update object and update tenant steps share (`clarion.engine.steps.update_user`,
`update_object`, `update_tenant`): their settings, and writing the updates of every run at one step.

A step names its target by `recipient_mode`: `current` (the default, Knock's) is the run's recipient, or
its tenant; `reference` renders `recipient_gid` with Liquid, `gid://Object/{collection}/{id}` (a user's
or tenant's bare id also does), so `gid://Object/$users/{{ actor.id }}` updates the actor. An object step
always names its object. `update_properties` is a JSON template (`clarion.engine.json_templates`) checked
as the identify or set request of the kind checks its body, `preferences` (a tenant's
`settings.preference_set`) included, and written with the same upsert: created when missing, properties
and preferences deep-merged. Channel data cannot be set, as in Knock. A target the run lacks (no tenant,
a recipient that is not a user, a gid rendering empty) skips the step with the reason; a gid or
properties that render wrong fail it, like a template error.

The updates of all the runs at the step are written as if one after another in run order, with one
upsert per kind: the updates of one entity fold into one (`clarion.store.json_merge.compose_merges`)
wherever two merges in a row equal one, which is everywhere but where a later update puts an object at
a key an earlier one set to something else; only such an update takes a second round. Each run records
its update as a run event, and its outcome carries the entity as written, for the run executor to show
the steps after this one (`clarion.engine.run_scope.show_written_entities`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from pydantic import ValidationError

from clarion.engine.json_templates import (
    JsonTemplate,
    has_liquid,
    parse_json_template,
    render_json_template,
)
from clarion.engine.step_definition import (
    DefinitionError,
    DefinitionParser,
    StepDefinition,
    condition_group,
    settings_object,
    text_field,
)
from clarion.engine.step_protocol import Outcomes, RunAtStep, StepOutcome, StepServices, StepType
from clarion.engine.templates import SharedRenders
from clarion.errors import InvalidInputError
from clarion.schemas.objects import validate_collection
from clarion.schemas.recipients import RecipientUpsertRequest
from clarion.store.json_merge import compose_merges
from clarion.store.preferences import PersistenceStrategy
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.recipients import RecipientRecord
from clarion.store.tenants import DefaultPreferencesWrite
from clarion.store.workflow_runs import RunEvent, RunRecord

GID_PREFIX = "gid://Object/"
MAX_ID_LENGTH = 255
RECIPIENT_MODES = ("current", "reference")


class InvalidUpdateError(ValueError):
    """A target or properties an update cannot take; `field` is the dotted path of what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class EntityUpdateStep(StepDefinition):
    target: str | None
    """`recipient_gid` (Liquid); None for the run's own recipient or tenant."""
    properties: JsonTemplate


@dataclass(frozen=True)
class EntityPatch:
    """One update of an entity, as its upsert takes it."""

    properties: dict[str, Any]
    preferences: dict[str, dict[str, Any]] | None = None
    """Preference sets by id, deep-merged into the stored ones."""
    default_preferences: DefaultPreferencesWrite | None = None
    """A tenant's default preference set (`settings.preference_set`)."""

    def then(self, later: EntityPatch) -> EntityPatch | None:
        """The one patch with the effect of this one and then `later`, or None when there is none."""
        properties = compose_merges(self.properties, later.properties)
        if properties is None:
            return None
        preferences = later.preferences if self.preferences is None else self.preferences
        if self.preferences is not None and later.preferences is not None:
            preferences = compose_merges(self.preferences, later.preferences)
            if preferences is None:
                return None
        folds, default_preferences = _then_default(self.default_preferences, later.default_preferences)
        return EntityPatch(properties, preferences, default_preferences) if folds else None


def _then_default(
    first: DefaultPreferencesWrite | None, later: DefaultPreferencesWrite | None
) -> tuple[bool, DefaultPreferencesWrite | None]:
    """Two writes of a tenant's default preference set as one, and whether they fold at all: two merges
    fold, a later replace or removal wins, nothing else folds."""
    if first is None or later is None:
        return True, later if first is None else first
    if later.body is None or later.strategy is PersistenceStrategy.REPLACE:
        return True, later
    if first.body is None or first.strategy is not PersistenceStrategy.MERGE:
        return False, None
    body = compose_merges(first.body, later.body)
    return body is not None, None if body is None else DefaultPreferencesWrite(body)


R = TypeVar("R", bound=RecipientUpsertRequest)

Written = Callable[
    [StepServices, str, Sequence[tuple[RecipientKey, EntityPatch]]], Awaitable[list[RecipientRecord]]
]
"""(the pass's services, environment, (entity, patch) in order) -> each entity as it stood right after
its patch, written through `StepServices.connection`."""


class CurrentTarget(NamedTuple):
    """A kind's `current` mode: the run's own target, None when it has none, which skips the step for
    `missing`."""

    of: Callable[[RunRecord], RecipientKey | None]
    missing: str


@dataclass(frozen=True)
class EntityKind(Generic[R]):
    """What one of the update steps writes and how."""

    step_type: str
    event: str
    """The run event recording an update."""
    collection: str | None
    """The one collection the step writes (`$users`, `$tenants`); None for objects, named by the gid."""
    current: CurrentTarget | None
    """The `current` mode; None for a kind without it (objects)."""
    request: type[R]
    """The body of the kind's identify or set request, which checks the rendered properties."""
    patch: Callable[[R], EntityPatch]
    write: Written
    describe: Callable[[RecipientKey], dict[str, Any]]
    """The target as the run event names it."""


def parse_gid(kind: EntityKind[Any], text: str, field: str) -> RecipientKey:
    """The entity `text` names: `gid://Object/{collection}/{id}`, or a bare id for a kind of one
    collection."""
    if text.startswith(GID_PREFIX):
        collection, slash, entity_id = text.removeprefix(GID_PREFIX).partition("/")
        if not slash or not collection or not entity_id:
            raise InvalidUpdateError(field, "must read gid://Object/{collection}/{id}")
        if kind.collection is not None and collection != kind.collection:
            raise InvalidUpdateError(field, f"must name an entity of the {kind.collection} collection")
        if kind.collection is None:
            if collection.startswith("$"):
                raise InvalidUpdateError(field, f"{collection!r} is a reserved collection")
            try:
                validate_collection(collection)
            except InvalidInputError as exc:
                raise InvalidUpdateError(field, exc.errors[0].message) from None
    elif kind.collection is None:
        raise InvalidUpdateError(field, "must read gid://Object/{collection}/{id}")
    else:
        collection, entity_id = kind.collection, text
    if len(entity_id) > MAX_ID_LENGTH:
        raise InvalidUpdateError(field, f"names an id longer than {MAX_ID_LENGTH} characters")
    return RecipientKey(collection, entity_id)


def checked_patch(kind: EntityKind[Any], update: dict[str, Any], field: str) -> EntityPatch:
    """`update` (the rendered `update_properties`) checked as the kind's request checks its body."""
    if "channel_data" in update:
        raise InvalidUpdateError(f"{field}.channel_data", "channel data cannot be set by an update step")
    try:
        request = kind.request.model_validate(update)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join([field, *map(str, error["loc"])])
        raise InvalidUpdateError(where, error["msg"]) from None
    return kind.patch(request)


def parse_entity_update(
    kind: EntityKind[Any], parser: DefinitionParser, data: dict[str, Any], field: str
) -> tuple[str | None, JsonTemplate]:
    """The step's target (`recipient_gid`, None for the current one) and `update_properties`, checked."""
    settings = settings_object(data, field, "`update_properties`")
    where = f"{field}.settings"
    gid = text_field(settings, "recipient_gid", where)
    if kind.current is not None:
        mode = settings.get("recipient_mode") or "current"
        if mode not in RECIPIENT_MODES:
            raise DefinitionError(f"{where}.recipient_mode", f"must be one of {', '.join(RECIPIENT_MODES)}")
        if mode == "current":
            gid = None
        elif gid is None:
            raise DefinitionError(f"{where}.recipient_gid", "is required when recipient_mode is reference")
    elif gid is None:
        raise DefinitionError(f"{where}.recipient_gid", "is required")
    if gid is not None:
        parser.liquid(gid, f"{where}.recipient_gid")
        if not has_liquid(gid):
            try:
                parse_gid(kind, gid, f"{where}.recipient_gid")
            except InvalidUpdateError as exc:
                raise DefinitionError(exc.field, exc.message) from None
    if settings.get("update_properties") is None:
        raise DefinitionError(f"{where}.update_properties", "is required")
    properties = parse_json_template(parser, settings["update_properties"], f"{where}.update_properties")
    if properties.static:
        assert properties.document is not None
        try:
            checked_patch(kind, properties.document, f"{where}.update_properties")
        except InvalidUpdateError as exc:
            raise DefinitionError(exc.field, exc.message) from None
    elif properties.document is not None and "channel_data" in properties.document:
        field_name = f"{where}.update_properties.channel_data"
        raise DefinitionError(field_name, "channel data cannot be set by an update step")
    return gid, properties


S = TypeVar("S", bound=EntityUpdateStep)


def entity_update_step_type(step_class: type[S], kind: EntityKind[Any]) -> StepType[S]:
    """The step type of an update step: its class (with its `type`) and what it writes."""

    def parse(parser: DefinitionParser, data: dict[str, Any], ref: str, field: str) -> S:
        target, properties = parse_entity_update(kind, parser, data, field)
        return step_class(
            ref=ref, conditions=condition_group(data, field), target=target, properties=properties
        )

    async def execute(services: StepServices, step: S, runs: Sequence[RunAtStep]) -> Outcomes:
        return await execute_entity_updates(kind, services, step, runs)

    return StepType(step_class.type, parse, execute)


@dataclass(frozen=True)
class _Planned:
    """A run's update, rendered and checked, waiting to be written with the others."""

    index: int
    """The run's place among the runs at the step."""
    target: RecipientKey
    patch: EntityPatch
    update: dict[str, Any]
    """`update_properties` as rendered, which the run event records."""


async def execute_entity_updates(
    kind: EntityKind[Any], services: StepServices, step: EntityUpdateStep, runs: Sequence[RunAtStep]
) -> Outcomes:
    renders = SharedRenders(services.renderer)
    outcomes: dict[int, StepOutcome | Exception] = {}
    planned: list[_Planned] = []
    for index, (context, _) in enumerate(runs):
        try:
            scope = context.template_scope()
            if step.target is None:
                assert kind.current is not None
                target, missing = kind.current.of(context.run), kind.current.missing
            else:
                text = renders.render(step.target, scope, name=f"{step.ref}.recipient_gid").strip()
                target = parse_gid(kind, text, f"{step.ref}.recipient_gid") if text else None
                missing = "recipient_gid_empty"
            if target is None:
                outcomes[index] = StepOutcome.skipped(step.ref, kind.step_type, missing)
                continue
            name = f"{step.ref}.update_properties"
            update = render_json_template(step.properties, renders, scope, name)
            planned.append(_Planned(index, target, checked_patch(kind, update, name), update))
        except Exception as exc:
            outcomes[index] = exc
    if planned:
        entries, entry_of = _fold(planned)
        environment_id = runs[0].context.run.environment_id
        written = await kind.write(services, environment_id, entries)
        for each in planned:
            event = RunEvent(
                kind.event,
                step_ref=step.ref,
                step_type=kind.step_type,
                data={**kind.describe(each.target), "update": each.update},
            )
            outcomes[each.index] = StepOutcome(events=[event], entities=(written[entry_of[each.index]],))
    return [outcomes[index] for index in range(len(runs))]


def _fold(planned: Sequence[_Planned]) -> tuple[list[tuple[RecipientKey, EntityPatch]], dict[int, int]]:
    """The upserts that write `planned` as if one after another: per entity, its runs' patches folded
    wherever they fold. Returns the upserts, in order for each entity, and each run's upsert by its place."""
    by_entity: dict[RecipientKey, list[_Planned]] = defaultdict(list)
    for each in planned:
        by_entity[each.target].append(each)
    entries: list[tuple[RecipientKey, EntityPatch]] = []
    entry_of: dict[int, int] = {}
    for target, updates in by_entity.items():
        folded: EntityPatch | None = None
        for each in updates:
            together = None if folded is None else folded.then(each.patch)
            if together is None:
                if folded is not None:
                    entries.append((target, folded))
                folded = each.patch
            else:
                folded = together
            entry_of[each.index] = len(entries)  # the upsert that `folded` becomes
        assert folded is not None
        entries.append((target, folded))
    return entries, entry_of

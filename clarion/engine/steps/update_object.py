"""The update object step: upserts the object `recipient_gid` names (`gid://Object/{collection}/{id}`,
rendered with Liquid; Knock has no "current object" mode) with the properties and preferences the step
renders, as setting an object does (`clarion.engine.entity_updates`); the collection need not exist
before. An `object_updated` run event records each."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from clarion.engine.entity_updates import EntityKind, EntityPatch, EntityUpdateStep, entity_update_step_type
from clarion.engine.step_protocol import StepServices
from clarion.schemas.objects import SetObjectRequest
from clarion.store.objects import upsert_objects
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.recipients import InlineRecipientData, RecipientRecord


@dataclass(frozen=True, kw_only=True)
class UpdateObjectStep(EntityUpdateStep):
    type: ClassVar[str] = "update_object"


def _patch(request: SetObjectRequest) -> EntityPatch:
    return EntityPatch(request.properties(), request.preferences)


async def _write(
    services: StepServices, environment_id: str, entries: Sequence[tuple[RecipientKey, EntityPatch]]
) -> list[RecipientRecord]:
    """One upsert per collection, in collection order, as every writer of many collections takes them."""
    by_collection: dict[str, list[int]] = defaultdict(list)
    for position, (key, _) in enumerate(entries):
        by_collection[key.collection].append(position)
    written: dict[int, RecipientRecord] = {}
    for collection in sorted(by_collection):
        positions = by_collection[collection]
        records = await upsert_objects(
            services.connection,
            environment_id,
            collection,
            [
                (
                    entries[p][0].id,
                    entries[p][1].properties,
                    InlineRecipientData(preferences=entries[p][1].preferences),
                )
                for p in positions
            ],
        )
        written.update(zip(positions, records, strict=True))
    return [written[position] for position in range(len(entries))]


def _describe(key: RecipientKey) -> dict[str, Any]:
    return {"object": {"collection": key.collection, "id": key.id}}


OBJECTS = EntityKind(
    step_type=UpdateObjectStep.type,
    event="object_updated",
    collection=None,
    current=None,
    request=SetObjectRequest,
    patch=_patch,
    write=_write,
    describe=_describe,
)

STEP_TYPE = entity_update_step_type(UpdateObjectStep, OBJECTS)

"""The update user step: upserts the run's recipient (when a user), or the user `recipient_gid` names
(`gid://Object/$users/{{ actor.id }}` for the actor), with the properties and preferences the step
renders, as identify does (`clarion.engine.entity_updates`). A `user_updated` run event records each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from clarion.engine.entity_updates import (
    CurrentTarget,
    EntityKind,
    EntityPatch,
    EntityUpdateStep,
    entity_update_step_type,
)
from clarion.engine.step_protocol import StepServices
from clarion.schemas.users import IdentifyUserRequest
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.recipients import InlineRecipientData, RecipientRecord
from clarion.store.tables import USERS_COLLECTION
from clarion.store.users import upsert_users
from clarion.store.workflow_runs import RunRecord


@dataclass(frozen=True, kw_only=True)
class UpdateUserStep(EntityUpdateStep):
    type: ClassVar[str] = "update_user"


def _current(run: RunRecord) -> RecipientKey | None:
    return run.recipient if run.recipient.is_user else None


def _patch(request: IdentifyUserRequest) -> EntityPatch:
    return EntityPatch(request.properties(), request.preferences)


async def _write(
    services: StepServices, environment_id: str, entries: Sequence[tuple[RecipientKey, EntityPatch]]
) -> list[RecipientRecord]:
    users = await upsert_users(
        services.connection,
        environment_id,
        [
            (key.id, patch.properties, InlineRecipientData(preferences=patch.preferences))
            for key, patch in entries
        ],
    )
    # The users updated move in and out of dynamic audiences with their properties, as on identify.
    await services.audience_rules.users_written(services.connection, users)
    return users


def _describe(key: RecipientKey) -> dict[str, Any]:
    return {"user": key.id}


USERS = EntityKind(
    step_type=UpdateUserStep.type,
    event="user_updated",
    collection=USERS_COLLECTION,
    current=CurrentTarget(_current, "recipient_not_a_user"),
    request=IdentifyUserRequest,
    patch=_patch,
    write=_write,
    describe=_describe,
)

STEP_TYPE = entity_update_step_type(UpdateUserStep, USERS)

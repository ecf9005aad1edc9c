"""The update tenant step: upserts the run's tenant, or the tenant `recipient_gid` names
(`gid://Object/$tenants/{id}`), with the properties the step renders, as setting a tenant does
(`clarion.engine.entity_updates`): `settings.preference_set` deep-merged into the tenant's default
preference set, `settings.branding` with its properties. A run without a tenant skips a `current` step
(`no_tenant`). A `tenant_updated` run event records each."""

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
from clarion.engine.run_scope import tenant_key
from clarion.engine.step_protocol import StepServices
from clarion.schemas.tenants import SetTenantRequest
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.recipients import InlineRecipientData, RecipientRecord
from clarion.store.tables import TENANTS_COLLECTION
from clarion.store.tenants import TenantEntry, upsert_tenants


@dataclass(frozen=True, kw_only=True)
class UpdateTenantStep(EntityUpdateStep):
    type: ClassVar[str] = "update_tenant"


def _patch(request: SetTenantRequest) -> EntityPatch:
    # The entry's id is the target's, given when it is written.
    entry = request.entry("")
    return EntityPatch(entry.properties, entry.inline.preferences, entry.default_preferences)


async def _write(
    services: StepServices, environment_id: str, entries: Sequence[tuple[RecipientKey, EntityPatch]]
) -> list[RecipientRecord]:
    tenants = await upsert_tenants(
        services.connection,
        environment_id,
        [
            TenantEntry(
                id=key.id,
                properties=patch.properties,
                inline=InlineRecipientData(preferences=patch.preferences),
                default_preferences=patch.default_preferences,
            )
            for key, patch in entries
        ],
    )
    # As runs see tenants: the objects of `$tenants` (`clarion.engine.run_scope.load_contexts`).
    return [
        RecipientRecord(
            TENANTS_COLLECTION, tenant.id, tenant.properties, tenant.inserted_at, tenant.updated_at
        )
        for tenant in tenants
    ]


def _describe(key: RecipientKey) -> dict[str, Any]:
    return {"tenant": key.id}


TENANTS = EntityKind(
    step_type=UpdateTenantStep.type,
    event="tenant_updated",
    collection=TENANTS_COLLECTION,
    current=CurrentTarget(tenant_key, "no_tenant"),
    request=SetTenantRequest,
    patch=_patch,
    write=_write,
    describe=_describe,
)

STEP_TYPE = entity_update_step_type(UpdateTenantStep, TENANTS)

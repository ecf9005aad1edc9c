"""Tenants on the wire: `SetTenantRequest`, `TenantRequest` (bulk and inline), `Tenant` and its list.

A request's name, custom properties and `settings.branding` become the tenant's properties; its
`settings.preference_set` becomes a write of the tenant's default preference set (merge unless
`__persistence_strategy__` says replace, removal when null), see `clarion.store.tenants`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from clarion.schemas.base import (
    PageInfo,
    RequestModel,
    ResponseModel,
    TypedResponseModel,
    custom_properties,
)
from clarion.schemas.omittable import Omittable
from clarion.schemas.preferences import PreferenceSet, PreferenceSetRequest
from clarion.schemas.recipients import ObjectUpsertRequest, RecipientUpsertRequest
from clarion.schemas.users import RecipientId
from clarion.store.preferences import DEFAULT_SET_ID, PersistenceStrategy, PreferenceSetRecord
from clarion.store.recipients import InlineRecipientData
from clarion.store.tenants import DefaultPreferencesWrite, TenantEntry, TenantRecord


class TenantBranding(RequestModel):
    dark_icon_url: str | None = None
    dark_logo_url: str | None = None
    dark_primary_color: str | None = None
    dark_primary_color_contrast: str | None = None
    icon_url: str | None = None
    logo_url: str | None = None
    primary_color: str | None = None
    primary_color_contrast: str | None = None


class TenantSettingsRequest(RequestModel):
    branding: TenantBranding | None = None
    preference_set: PreferenceSetRequest | None = None


class SetTenantRequest(RecipientUpsertRequest):
    settings: Omittable[TenantSettingsRequest] = None

    def entry(self, tenant_id: str) -> TenantEntry:
        properties = self.properties(exclude=frozenset({"settings"}))
        default_preferences = None
        if self.settings is not None:
            if "branding" in self.settings.model_fields_set:
                branding = self.settings.branding
                properties["settings"] = {
                    "branding": branding.model_dump(mode="json", exclude_unset=True) if branding else None
                }
            if "preference_set" in self.settings.model_fields_set:
                preference_set = self.settings.preference_set
                default_preferences = (
                    DefaultPreferencesWrite(
                        preference_set.body(),
                        preference_set.persistence_strategy or PersistenceStrategy.MERGE,
                    )
                    if preference_set is not None
                    else DefaultPreferencesWrite(None)
                )
        return TenantEntry(
            id=tenant_id,
            properties=properties,
            inline=InlineRecipientData(channel_data=self.channel_data, preferences=self.preferences),
            default_preferences=default_preferences,
        )


class TenantRequest(ObjectUpsertRequest, SetTenantRequest):
    id: RecipientId

    def properties(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        return super().properties(exclude=exclude | {"id"})


class TenantSettings(ResponseModel):
    branding: dict[str, Any] | None = None
    preference_set: PreferenceSet | None = None


class Tenant(TypedResponseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    typename: str = Field(default="Tenant", alias="__typename")
    id: str
    name: str | None = None
    settings: TenantSettings

    @classmethod
    def from_record(cls, record: TenantRecord) -> Tenant:
        properties = dict(record.properties)
        # Settings may also have been written through the objects API as any JSON; show what fits the
        # Tenant shape rather than fail the read.
        stored_settings = properties.pop("settings", None)
        branding = stored_settings.get("branding") if isinstance(stored_settings, dict) else None
        preference_set = (
            PreferenceSet.from_record(PreferenceSetRecord(DEFAULT_SET_ID, record.default_preferences))
            if record.default_preferences is not None
            else None
        )
        settings = TenantSettings.trusted(
            {"branding": branding if isinstance(branding, dict) else None, "preference_set": preference_set}
        )
        return cls.trusted(
            {"id": record.id, "name": properties.get("name"), "settings": settings},
            custom_properties(cls, properties),
        )


class ListTenantsResponse(ResponseModel):
    entries: list[Tenant]
    page_info: PageInfo

"""What users, objects and tenants share on the wire: inline channel data and preferences on upserts, and
the conversion of stored recipient records into Knock's entities."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

from clarion.schemas.base import OpenRequestModel
from clarion.schemas.omittable import Omittable
from clarion.schemas.preferences import validate_inline_set

InlineChannelData = dict[str, dict[str, Any]]
# Set id → set, each checked as a PreferenceSetRequest and kept as its stored body.
InlinePreferences = dict[str, Annotated[dict[str, Any], BeforeValidator(validate_inline_set)]]

INLINE_FIELDS = frozenset({"channel_data", "preferences"})


class RecipientUpsertRequest(OpenRequestModel):
    """Fields every recipient upsert may carry; everything else becomes a custom property."""

    channel_data: InlineChannelData | None = None
    preferences: InlinePreferences | None = None
    created_at: datetime | None = None
    name: str | None = None
    timezone: str | None = None
    locale: str | None = None

    def properties(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """What to merge onto the stored recipient: every field the caller sent, inline data aside."""
        return self.model_dump(mode="json", exclude_unset=True, exclude=set(INLINE_FIELDS | exclude))


class ObjectUpsertRequest(RecipientUpsertRequest):
    """An upsert of an object (tenants included, the objects of `$tenants`): Knock's spec lets a user's inline
    channel data and preferences be null, an object's only be left out."""

    channel_data: Omittable[InlineChannelData] = None
    preferences: Omittable[InlinePreferences] = None

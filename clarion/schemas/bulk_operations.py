"""Bulk operations on the wire: `BulkOperation`, and the bulk request bodies of objects, tenants, user
preferences and subscriptions (the users' own bulk bodies live in `clarion.schemas.users`).

Every bulk body is validated whole before anything is queued, with Knock's limit of 1,000 entries; a bad
entry is a 422 naming it (`objects.3.channel_data…`). The rows are then processed by
`clarion.engine.bulk`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from clarion.channels import ChannelRegistry
from clarion.errors import FieldError, InvalidInputError
from clarion.schemas.base import RequestModel, ResponseModel, Timestamp, TypedResponseModel
from clarion.schemas.channel_data import validate_inline_channel_data
from clarion.schemas.omittable import Omittable
from clarion.schemas.preferences import PreferenceSetRequest
from clarion.schemas.recipient_references import RecipientReference, RecipientRequest, recipient_inputs
from clarion.schemas.recipients import ObjectUpsertRequest, RecipientUpsertRequest
from clarion.schemas.subscriptions import MAX_RECIPIENTS
from clarion.schemas.tenants import TenantRequest
from clarion.schemas.users import RecipientId
from clarion.store.bulk_operations import BulkOperationRecord, BulkOperationStatus

MAX_BULK_ENTRIES = 1000


class BulkSetObjectRequest(ObjectUpsertRequest):
    id: RecipientId

    def properties(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        return super().properties(exclude=exclude | {"id"})


class BulkSetObjectsRequest(RequestModel):
    objects: list[BulkSetObjectRequest] = Field(min_length=1, max_length=MAX_BULK_ENTRIES)


class BulkDeleteObjectsRequest(RequestModel):
    object_ids: list[RecipientId] = Field(min_length=1, max_length=MAX_BULK_ENTRIES)


def _tenant_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "id"
    if isinstance(value, dict | TenantRequest):
        return "tenant"
    return None


InlineTenantRequest = Annotated[
    Annotated[RecipientId, Tag("id")] | Annotated[TenantRequest, Tag("tenant")],
    Discriminator(
        _tenant_kind,
        custom_error_type="invalid_tenant",
        custom_error_message="must be a tenant id or a tenant with an id",
    ),
]
"""A tenant id, or a tenant to set (`TenantRequest`); decided by the value's shape, so that each error names
the field that is wrong (`tenants.0.tenant.id`)."""


class BulkSetTenantsRequest(RequestModel):
    tenants: list[InlineTenantRequest] = Field(min_length=1, max_length=MAX_BULK_ENTRIES)


class BulkPreferenceSetRequest(PreferenceSetRequest):
    """A whole preference set for every user of the request; `id` names the set (`default` or a tenant
    id) and the set always replaces the stored one."""

    id: Omittable[RecipientId] = None


class BulkSetUserPreferencesRequest(RequestModel):
    preferences: BulkPreferenceSetRequest
    user_ids: list[RecipientId] = Field(min_length=1, max_length=MAX_BULK_ENTRIES)


class BulkUpsertSubscription(RequestModel):
    id: RecipientId
    recipients: list[RecipientRequest] = Field(max_length=MAX_RECIPIENTS)
    properties: dict[str, Any] | None = None


class BulkUpsertSubscriptionsRequest(RequestModel):
    subscriptions: list[BulkUpsertSubscription] = Field(min_length=1, max_length=MAX_BULK_ENTRIES)


class BulkDeleteSubscription(RequestModel):
    id: RecipientId
    recipients: list[RecipientReference] = Field(max_length=MAX_RECIPIENTS)


class BulkDeleteSubscriptionsRequest(RequestModel):
    subscriptions: list[BulkDeleteSubscription] = Field(min_length=1, max_length=MAX_BULK_ENTRIES)


def check_inline_channel_data(
    channels: ChannelRegistry, entries: Iterable[RecipientUpsertRequest | str], *, field: str
) -> None:
    """Refuse the whole request (one 422 naming `field.<index>.channel_data…`) when any entry's inline
    channel data does not fit its channel."""
    errors: list[FieldError] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            continue
        try:
            validate_inline_channel_data(channels, entry.channel_data, field=f"{field}.{index}.channel_data")
        except InvalidInputError as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInputError(errors=errors)


def check_subscription_recipients(
    channels: ChannelRegistry, subscriptions: Iterable[BulkUpsertSubscription]
) -> None:
    """Refuse the whole bulk add (one 422 naming `subscriptions.<index>.recipients.<index>…`) when any inline
    recipient's channel data does not fit its channel."""
    errors: list[FieldError] = []
    for index, entry in enumerate(subscriptions):
        try:
            recipient_inputs(entry.recipients, channels, field=f"subscriptions.{index}.recipients")
        except InvalidInputError as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInputError(errors=errors)


class BulkOperationErrorItem(ResponseModel):
    id: str
    collection: str | None = None


class BulkOperation(TypedResponseModel):
    typename: str = Field(default="BulkOperation", alias="__typename")
    id: str
    name: str
    status: BulkOperationStatus
    estimated_total_rows: int
    processed_rows: int
    success_count: int
    error_count: int
    error_items: list[BulkOperationErrorItem]
    progress_path: str
    started_at: Timestamp | None
    completed_at: Timestamp | None
    failed_at: Timestamp | None
    inserted_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_record(cls, record: BulkOperationRecord, *, progress_path: str) -> BulkOperation:
        return cls(
            id=record.id,
            name=record.name,
            status=record.status,
            estimated_total_rows=record.estimated_total_rows,
            processed_rows=record.processed_rows,
            success_count=record.success_count,
            error_count=record.error_count,
            error_items=[
                BulkOperationErrorItem(id=item.id, collection=item.collection) for item in record.error_items
            ],
            progress_path=progress_path,
            started_at=record.started_at,
            completed_at=record.completed_at,
            failed_at=record.failed_at,
            inserted_at=record.inserted_at,
            updated_at=record.updated_at,
        )

"""Workflow triggers and cancels on the wire: `TriggerWorkflowRequest` (and the legacy `/v1/notify`
body) and `CancelWorkflowRequest`. Their responses are a single id each, written by the routes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from clarion.schemas.base import RequestModel
from clarion.schemas.bulk_operations import InlineTenantRequest
from clarion.schemas.omittable import Omittable
from clarion.schemas.recipient_references import RecipientReference, RecipientRequest

MAX_TRIGGER_RECIPIENTS = 1_000
TRIGGER_DATA_KEY = "$trigger_data"
"""On an inline recipient: data shallow-merged over the trigger's `data` for that recipient's run only."""

CancellationKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class TriggerSettings(RequestModel):
    sandbox_mode: bool | None = None
    skip_delay: bool | None = None


class TriggerWorkflowRequest(RequestModel):
    recipients: list[RecipientRequest] = Field(max_length=MAX_TRIGGER_RECIPIENTS)
    actor: RecipientRequest | None = None
    data: dict[str, Any] | None = None
    tenant: InlineTenantRequest | None = None
    cancellation_key: CancellationKey | None = None
    settings: TriggerSettings | None = None


class NotifyRequest(RequestModel):
    """The legacy trigger: the workflow's key travels as `name`, recipients and actor as references."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    actor: RecipientReference
    recipients: list[RecipientReference] = Field(max_length=MAX_TRIGGER_RECIPIENTS)
    data: dict[str, Any] | None = None
    cancellation_key: CancellationKey | None = None


class CancelWorkflowRequest(RequestModel):
    cancellation_key: CancellationKey
    recipients: list[RecipientReference] | None = Field(default=None, max_length=MAX_TRIGGER_RECIPIENTS)


class LegacyCancelRequest(CancelWorkflowRequest):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    # Nullable on the workflow's cancel, not on the legacy one (Knock's `Cancel Request`).
    recipients: Omittable[list[RecipientReference]] = Field(default=None, max_length=MAX_TRIGGER_RECIPIENTS)

"""How requests name recipients: Knock's `RecipientRequest` (a user id, an inline user, or an inline object)
and `RecipientReference` (a user id or an `{id, collection}` object reference).

The kind is decided by the value's shape before any field is validated (a string is a user id, an object
with `collection` an object, any other object a user), so an inline object's custom properties are never
mistaken for a user's and each error names the field that is wrong (`recipients.0.object.collection`).
An inline object carrying only `id` and `collection` is a reference to an existing object, as in Knock.
Collections follow `clarion.schemas.objects.validate_collection`. `recipient_inputs` and `recipient_key`
turn parsed values into the store's `RecipientKey` / `RecipientUpsert` (`clarion.store.recipient_resolution`),
checking inline channel data against the installation's channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, Discriminator, Tag

from clarion.channels import ChannelRegistry
from clarion.errors import FieldError, InvalidInputError
from clarion.schemas.base import RequestModel
from clarion.schemas.channel_data import validate_inline_channel_data
from clarion.schemas.objects import validate_collection
from clarion.schemas.recipients import ObjectUpsertRequest
from clarion.schemas.users import InlineIdentifyUserRequest, RecipientId
from clarion.store.recipient_resolution import RecipientInput, RecipientKey, RecipientUpsert
from clarion.store.recipients import InlineRecipientData


def _collection(value: str) -> str:
    try:
        return validate_collection(value)
    except InvalidInputError as exc:
        raise ValueError(exc.errors[0].message) from exc


class InlineIdentifyObjectRequest(ObjectUpsertRequest):
    """An object set inline: created or deep-merged before the request uses it."""

    id: RecipientId
    collection: Annotated[str, AfterValidator(_collection)]

    def properties(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        return super().properties(exclude=exclude | {"id", "collection"})

    def is_reference(self) -> bool:
        """Only `id` and `collection`: Knock reads this as a reference to an existing object and upserts
        an object only when it carries more (concepts/objects.mdx, "Set objects inline")."""
        return self.model_fields_set == {"id", "collection"} and not self.model_extra


class ObjectReference(RequestModel):
    id: RecipientId
    collection: Annotated[str, AfterValidator(_collection)]


def _kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "user_id"
    if isinstance(value, dict):
        return "object" if "collection" in value else "user"
    if isinstance(value, InlineIdentifyObjectRequest):
        return "object"
    if isinstance(value, InlineIdentifyUserRequest):
        return "user"
    return None


def _reference_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "user_id"
    if isinstance(value, dict | ObjectReference):
        return "object"
    return None


_NOT_A_RECIPIENT = "must be a user id or an object with an id"

RecipientRequest = Annotated[
    Annotated[RecipientId, Tag("user_id")]
    | Annotated[InlineIdentifyUserRequest, Tag("user")]
    | Annotated[InlineIdentifyObjectRequest, Tag("object")],
    Discriminator(_kind, custom_error_type="invalid_recipient", custom_error_message=_NOT_A_RECIPIENT),
]

RecipientReference = Annotated[
    Annotated[RecipientId, Tag("user_id")] | Annotated[ObjectReference, Tag("object")],
    Discriminator(
        _reference_kind, custom_error_type="invalid_recipient", custom_error_message=_NOT_A_RECIPIENT
    ),
]


def recipient_inputs(
    recipients: Sequence[str | InlineIdentifyUserRequest | InlineIdentifyObjectRequest],
    channels: ChannelRegistry,
    *,
    field: str = "recipients",
) -> list[RecipientInput]:
    """Parsed `RecipientRequest`s as the store takes them, the inline channel data of each checked against
    its channels; one 422 lists every bad entry as `field.<index>.channel_data…`."""
    inputs: list[RecipientInput] = []
    errors: list[FieldError] = []
    for index, recipient in enumerate(recipients):
        if isinstance(recipient, str):
            inputs.append(RecipientKey.user(recipient))
            continue
        if isinstance(recipient, InlineIdentifyObjectRequest) and recipient.is_reference():
            inputs.append(RecipientKey(recipient.collection, recipient.id))
            continue
        try:
            channel_data = validate_inline_channel_data(
                channels, recipient.channel_data, field=f"{field}.{index}.channel_data"
            )
        except InvalidInputError as exc:
            errors.extend(exc.errors)
            continue
        if isinstance(recipient, InlineIdentifyObjectRequest):
            key = RecipientKey(recipient.collection, recipient.id)
        else:
            key = RecipientKey.user(recipient.id)
        inline = InlineRecipientData(channel_data=channel_data, preferences=recipient.preferences)
        inputs.append(RecipientUpsert(key, recipient.properties(), inline))
    if errors:
        raise InvalidInputError(errors=errors)
    return inputs


def recipient_key(reference: str | ObjectReference) -> RecipientKey:
    """A parsed `RecipientReference` as the store takes it."""
    if isinstance(reference, str):
        return RecipientKey.user(reference)
    return RecipientKey(reference.collection, reference.id)

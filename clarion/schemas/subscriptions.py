"""Subscriptions on the wire: the add/delete requests, `Subscription` and its list response.

A subscription carries its object and its recipient as full entities: the object as Knock's `Object`
(`clarion.schemas.objects`), the recipient as a `User` or an `Object`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from clarion.schemas.base import PageInfo, RequestModel, ResponseModel, Timestamp, TypedResponseModel
from clarion.schemas.objects import Object
from clarion.schemas.recipient_references import RecipientReference, RecipientRequest
from clarion.schemas.users import User
from clarion.store.subscriptions import SubscriptionRecord
from clarion.store.tables import USERS_COLLECTION

MAX_RECIPIENTS = 100


class UpsertSubscriptionsRequest(RequestModel):
    recipients: list[RecipientRequest] = Field(max_length=MAX_RECIPIENTS)
    properties: dict[str, Any] | None = None


class DeleteSubscriptionsRequest(RequestModel):
    recipients: list[RecipientReference] = Field(max_length=MAX_RECIPIENTS)


class Subscription(TypedResponseModel):
    typename: str = Field(default="Subscription", alias="__typename")
    object: Object
    recipient: User | Object
    properties: dict[str, Any] | None
    inserted_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_record(cls, record: SubscriptionRecord) -> Subscription:
        recipient = record.recipient
        return cls.trusted(
            {
                "object": Object.from_record(record.object),
                "recipient": User.from_record(recipient)
                if recipient.collection == USERS_COLLECTION
                else Object.from_record(recipient),
                "properties": record.properties,
                "inserted_at": record.inserted_at,
                "updated_at": record.updated_at,
            }
        )


class ListSubscriptionsResponse(ResponseModel):
    entries: list[Subscription]
    page_info: PageInfo

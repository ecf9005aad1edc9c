"""Messages on the wire: `Message`, `MessageEvent`, their lists, and the engagement requests: one message,
a batch by id, and a channel's messages in bulk (`BulkMessageAction`, `BulkUpdateMessagesForChannelRequest`),
whose filters become the store's `MessageFilter` here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints

from clarion.channels import Channel
from clarion.schemas.base import PageInfo, RequestModel, ResponseModel, Timestamp, TypedResponseModel
from clarion.schemas.omittable import Omittable
from clarion.store.messages import (
    ArchivedFilter,
    Engagement,
    MessageEventRecord,
    MessageFilter,
    MessageRecord,
)
from clarion.store.recipient_resolution import RecipientKey

MAX_INTERACTED_METADATA_KEYS = 5
MAX_BATCH_MESSAGES = 1_000
MAX_FILTER_VALUES = 1_000
"""Clarion's bound on each list filter of a bulk update (Knock documents none)."""


def _flat_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_INTERACTED_METADATA_KEYS:
        raise ValueError(f"may have at most {MAX_INTERACTED_METADATA_KEYS} keys")
    if any(isinstance(item, dict | list) for item in value.values()):
        raise ValueError("must be flat: its values may not be objects or lists")
    return value


InteractedMetadata = Annotated[Omittable[dict[str, Any]], AfterValidator(_flat_metadata)]


class MessageInteractedRequest(RequestModel):
    metadata: InteractedMetadata = None


class BatchMessagesRequest(RequestModel):
    message_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_BATCH_MESSAGES
    )


class BatchMessagesInteractedRequest(BatchMessagesRequest):
    metadata: InteractedMetadata = None


class BulkMessageAction(StrEnum):
    """What `POST /v1/channels/{channel_id}/messages/bulk/{action}` does to each message it selects."""

    SEEN = "seen"
    UNSEEN = "unseen"
    READ = "read"
    UNREAD = "unread"
    ARCHIVED = "archived"
    UNARCHIVED = "unarchived"
    INTERACTED = "interacted"
    ARCHIVE = "archive"
    UNARCHIVE = "unarchive"
    DELETE = "delete"

    @property
    def change(self) -> tuple[Engagement, bool] | None:
        """The engagement status the action sets (True) or clears (False); None for `delete`."""
        return BULK_ACTION_CHANGES.get(self)


BULK_ACTION_CHANGES: dict[BulkMessageAction, tuple[Engagement, bool]] = {
    BulkMessageAction.SEEN: (Engagement.SEEN, True),
    BulkMessageAction.UNSEEN: (Engagement.SEEN, False),
    BulkMessageAction.READ: (Engagement.READ, True),
    BulkMessageAction.UNREAD: (Engagement.READ, False),
    BulkMessageAction.ARCHIVED: (Engagement.ARCHIVED, True),
    BulkMessageAction.ARCHIVE: (Engagement.ARCHIVED, True),
    BulkMessageAction.UNARCHIVED: (Engagement.ARCHIVED, False),
    BulkMessageAction.UNARCHIVE: (Engagement.ARCHIVED, False),
    BulkMessageAction.INTERACTED: (Engagement.INTERACTED, True),
}


MAX_FILTER_INTEGER = 2**63 - 1


def parse_trigger_data(value: str) -> dict[str, Any]:
    """A `trigger_data` filter: a JSON object of scalar values, matched exactly against message data.
    Integers must fit 64 bits, as the stores compare them; raises ValueError saying what is wrong."""
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        raise ValueError("must be a JSON object") from None
    if not isinstance(data, dict) or any(isinstance(item, dict | list) for item in data.values()):
        raise ValueError("must be a JSON object of scalar values")
    if any(isinstance(item, int) and abs(item) > MAX_FILTER_INTEGER for item in data.values()):
        raise ValueError(f"may hold integers up to {MAX_FILTER_INTEGER} only")
    return data


def _flat_trigger_data(value: str) -> str:
    parse_trigger_data(value)
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


FilterValues = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=255)]], Field(max_length=MAX_FILTER_VALUES)
]
"""Ids of users, tenants or workflows."""
UTCTimestamp = Annotated[datetime, AfterValidator(_utc)]


class BulkUpdateMessagesForChannelRequest(RequestModel):
    """The filters of a channel's bulk update; each one given narrows the messages, an empty list does not.
    `user_ids` (the JS client's name) and `recipient_ids` (the spec's) both name users."""

    archived: Omittable[ArchivedFilter] = None
    delivery_status: Omittable[
        Literal["queued", "sent", "delivered", "delivery_attempted", "undelivered", "not_sent", "bounced"]
    ] = None
    engagement_status: Omittable[
        Literal["seen", "unseen", "read", "unread", "archived", "unarchived", "link_clicked", "interacted"]
    ] = None
    has_tenant: Omittable[bool] = None
    newer_than: Omittable[UTCTimestamp] = None
    older_than: Omittable[UTCTimestamp] = None
    recipient_ids: Omittable[FilterValues] = None
    user_ids: Omittable[FilterValues] = None
    tenants: Omittable[FilterValues] = None
    trigger_data: Omittable[Annotated[str, AfterValidator(_flat_trigger_data)]] = None
    workflows: Omittable[FilterValues] = None

    def message_filter(self, channel_id: str, action: BulkMessageAction, *, until: datetime) -> MessageFilter:
        """The messages the action is still to change: the channel's messages inserted by `until` that
        the filters select, less those already standing as the action leaves them. Tenants narrow as the
        feed's `tenant` does: messages without a tenant stay in unless `has_tenant` is true."""
        user_ids = sorted({*(self.user_ids or ()), *(self.recipient_ids or ())})
        change = action.change
        return MessageFilter(
            channel_id=channel_id,
            recipients=tuple(RecipientKey.user(user_id) for user_id in user_ids),
            workflows=tuple(self.workflows or ()),
            tenants=tuple(self.tenants or ()),
            only_tenant=bool(self.has_tenant),
            has_tenant=self.has_tenant if not self.tenants else None,
            statuses=(self.delivery_status,) if self.delivery_status else (),
            engagement=(self.engagement_status,) if self.engagement_status else (),
            trigger_data=json.loads(self.trigger_data) if self.trigger_data else {},
            inserted_after=self.newer_than,
            inserted_before=self.older_than,
            inserted_until=until,
            archived=self.archived or ArchivedFilter.INCLUDE,
            engaged=() if change is None else ((change[0], not change[1]),),
        )


class MessageChannel(ResponseModel):
    id: str
    key: str | None
    name: str | None
    provider: str
    type: str
    created_at: Timestamp
    updated_at: Timestamp


class Message(TypedResponseModel):
    typename: str = Field(default="Message", alias="__typename")
    id: str
    channel: MessageChannel | None
    channel_id: str
    recipient: str | dict[str, str]
    actors: list[str | dict[str, str]]
    workflow: str
    source: dict[str, Any]
    tenant: str | None
    data: dict[str, Any] | None
    status: str
    engagement_statuses: list[str]
    seen_at: Timestamp | None
    read_at: Timestamp | None
    interacted_at: Timestamp | None
    link_clicked_at: Timestamp | None
    clicked_at: Timestamp | None
    archived_at: Timestamp | None
    scheduled_at: Timestamp | None
    metadata: dict[str, Any] | None
    inserted_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_record(cls, record: MessageRecord, channel: Channel | None) -> Message:
        channel_model = None
        if channel is not None:
            channel_model = MessageChannel(
                id=channel.id,
                key=channel.key,
                name=channel.name,
                provider=channel.provider.value,
                type=channel.type.value,
                # A channel is configuration, not a stored row: it exists as long as the message does.
                created_at=record.inserted_at,
                updated_at=record.inserted_at,
            )
        return cls.trusted(
            {
                "id": record.id,
                "channel": channel_model,
                "channel_id": record.channel_id,
                "recipient": record.recipient.reference(),
                "actors": record.actors,
                "workflow": record.workflow_key,
                "source": {"__typename": "NotificationSource", **record.source},
                "tenant": record.tenant,
                "data": record.data,
                "status": record.status,
                "engagement_statuses": record.engagement_statuses,
                "seen_at": record.seen_at,
                "read_at": record.read_at,
                "interacted_at": record.interacted_at,
                "link_clicked_at": record.link_clicked_at,
                "clicked_at": record.link_clicked_at,
                "archived_at": record.archived_at,
                "scheduled_at": record.scheduled_at,
                "metadata": record.metadata,
                "inserted_at": record.inserted_at,
                "updated_at": record.updated_at,
            }
        )


class ListMessagesResponse(ResponseModel):
    items: list[Message]
    page_info: PageInfo


class MessageEvent(TypedResponseModel):
    typename: str = Field(default="MessageEvent", alias="__typename")
    id: str
    type: str
    recipient: str | dict[str, str]
    data: dict[str, Any] | None
    inserted_at: Timestamp

    @classmethod
    def from_record(cls, record: MessageEventRecord, recipient: RecipientKey) -> MessageEvent:
        return cls.trusted(
            {
                "id": str(record.id),
                "type": record.type,
                "recipient": recipient.reference(),
                "data": record.data,
                "inserted_at": record.inserted_at,
            }
        )


class ListMessageEventsResponse(ResponseModel):
    items: list[MessageEvent]
    page_info: PageInfo


class MessageContents(TypedResponseModel):
    typename: str = Field(default="MessageContent", alias="__typename")
    message_id: str
    data: dict[str, Any]
    inserted_at: Timestamp

    @classmethod
    def from_record(cls, record: MessageRecord) -> MessageContents:
        return cls.trusted(
            {"message_id": record.id, "data": record.content, "inserted_at": record.inserted_at}
        )

"""Messages on the wire: `Message`, `MessageEvent`, their lists, and the engagement requests."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from clarion.channels import Channel
from clarion.schemas.base import PageInfo, RequestModel, ResponseModel, Timestamp, TypedResponseModel
from clarion.store.messages import MessageEventRecord, MessageRecord
from clarion.store.recipient_resolution import RecipientKey

MAX_INTERACTED_METADATA_KEYS = 5
MAX_BATCH_MESSAGES = 1_000


def _flat_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_INTERACTED_METADATA_KEYS:
        raise ValueError(f"may have at most {MAX_INTERACTED_METADATA_KEYS} keys")
    if any(isinstance(item, dict | list) for item in value.values()):
        raise ValueError("must be flat: its values may not be objects or lists")
    return value


InteractedMetadata = Annotated[dict[str, Any] | None, AfterValidator(_flat_metadata)]


class MessageInteractedRequest(RequestModel):
    metadata: InteractedMetadata = None


class BatchMessagesRequest(RequestModel):
    message_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_BATCH_MESSAGES
    )


class BatchMessagesInteractedRequest(BatchMessagesRequest):
    metadata: InteractedMetadata = None


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

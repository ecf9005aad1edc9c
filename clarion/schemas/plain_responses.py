"""The responses built as plain dicts rather than response models (the trigger and the feed, where a model
cost several times as much to build and encode, and the error body), described as TypedDicts for Clarion's
OpenAPI document (`clarion.api.contract`).

The feed's `exclude` parameter removes any field by its path, so no field of the feed's shapes is required.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict

from clarion.schemas.base import PageInfo


class TriggerAccepted(TypedDict):
    workflow_run_id: str


class NotifyAccepted(TypedDict):
    """The legacy `/v1/notify` answer: the workflow run's id."""

    result_id: str


class FeedFeatures(TypedDict):
    branding_required: bool


class FeedSettings(TypedDict):
    features: FeedFeatures


Activity = TypedDict(
    "Activity",
    {
        "__typename": str,
        "id": str,
        "actor": dict[str, Any] | None,
        "recipient": dict[str, Any] | None,
        "data": dict[str, Any] | None,
        "inserted_at": str,
        "updated_at": str,
    },
    total=False,
)

NotificationSource = TypedDict(
    "NotificationSource",
    {"__typename": str, "key": str, "version_id": str, "categories": list[str]},
    total=False,
)

FeedItem = TypedDict(
    "FeedItem",
    {
        "__typename": str,
        "__cursor": str,
        "id": str,
        "actors": list[dict[str, Any]],
        "activities": list[Activity],
        "blocks": list[dict[str, Any]],
        "data": dict[str, Any] | None,
        "source": NotificationSource,
        "tenant": str | None,
        "total_activities": int,
        "total_actors": int,
        "seen_at": str | None,
        "read_at": str | None,
        "interacted_at": str | None,
        "link_clicked_at": str | None,
        "clicked_at": str | None,
        "archived_at": str | None,
        "inserted_at": str,
        "updated_at": str,
    },
    total=False,
)

FeedMetadata = TypedDict(
    "FeedMetadata",
    {"__typename": str, "total_count": int, "unread_count": int, "unseen_count": int},
    total=False,
)

FeedPageInfo = TypedDict(
    "FeedPageInfo",
    {"__typename": str, "after": str | None, "before": str | None, "page_size": int},
    total=False,
)


class Feed(TypedDict, total=False):
    entries: list[FeedItem]
    meta: FeedMetadata
    page_info: FeedPageInfo
    vars: dict[str, Any]


class MessageActivities(TypedDict):
    items: list[Activity]
    page_info: PageInfo


class MessageDeliveryLogs(TypedDict):
    """Always empty: a delivery log records a provider call, and Clarion makes none yet."""

    items: list[dict[str, Any]]
    page_info: PageInfo


class FieldErrorBody(TypedDict):
    field: str
    message: str
    type: str | None
    """Pydantic's error type (`string_type`, …) when the request's schema refused it, else null."""


class ErrorBody(TypedDict):
    """Knock's error body, which every refusal carries (`clarion.api.errors.error_body`)."""

    code: str
    message: str
    status: int
    type: str
    errors: list[FieldErrorBody]

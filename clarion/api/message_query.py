"""The query parameters that narrow lists of messages and feeds, shared by `/v1/messages`, the user and
object message lists and the in-app feed: each parsed into `clarion.store.messages.MessageFilter`, with a
422 naming the parameter when its value is not one Knock accepts."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request

from clarion.api.query import query_bool, query_choices, query_list, query_uuid, timestamp_param
from clarion.errors import InvalidInputError
from clarion.schemas.messages import parse_trigger_data
from clarion.store.messages import ArchivedFilter, MessageFilter

DELIVERY_STATUSES = frozenset(
    {"queued", "sent", "delivered", "delivery_attempted", "undelivered", "not_sent", "bounced"}
)
ENGAGEMENT_STATUSES = frozenset(
    {"seen", "unseen", "read", "unread", "archived", "unarchived", "link_clicked", "interacted"}
)
FEED_STATUSES = {
    "unread": ("read", False),
    "read": ("read", True),
    "unseen": ("seen", False),
    "seen": ("seen", True),
}
INSERTED_AT = {
    "gt": "inserted_after",
    "gte": "inserted_from",
    "lt": "inserted_before",
    "lte": "inserted_until",
}


def _trigger_data(request: Request) -> dict[str, Any]:
    raw = request.query_params.get("trigger_data")
    if not raw:
        return {}
    try:
        return parse_trigger_data(raw)
    except ValueError as exc:
        raise InvalidInputError.field("trigger_data", str(exc)) from None


def _inserted_at(request: Request) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for suffix, attribute in INSERTED_AT.items():
        name = f"inserted_at.{suffix}"
        value = request.query_params.get(name) or request.query_params.get(f"inserted_at[{suffix}]")
        if value:
            bounds[attribute] = timestamp_param(name, value)
    return bounds


def _one_of(request: Request, name: str, allowed: frozenset[str] | set[str], default: str) -> str:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise InvalidInputError.field(name, f"must be one of: {', '.join(sorted(allowed))}")
    return value


def message_list_filter(request: Request, **fixed: Any) -> MessageFilter:
    """The filters of Knock's message lists (`GET /v1/messages` and the per-recipient lists)."""
    query = request.query_params
    filters = MessageFilter(
        channel_id=query.get("channel_id") or None,
        source=query.get("source") or None,
        tenant=query.get("tenant") or None,
        only_tenant=True,
        statuses=tuple(sorted(query_choices(request, "status", DELIVERY_STATUSES))),
        engagement=tuple(sorted(query_choices(request, "engagement_status", ENGAGEMENT_STATUSES))),
        message_ids=tuple(query_list(request, "message_ids")),
        workflow_categories=tuple(query_list(request, "workflow_categories")),
        trigger_data=_trigger_data(request),
        workflow_run_id=query_uuid(request, "workflow_run_id"),
        workflow_recipient_run_id=query_uuid(request, "workflow_recipient_run_id"),
    )
    return dataclasses.replace(filters, **_inserted_at(request), **fixed)


def feed_filter(request: Request, **fixed: Any) -> MessageFilter:
    """The filters of the in-app feed: `status`, `archived`, `tenant` (untenanted items included unless
    `has_tenant=true`), `source`, `workflow_categories[]`, `trigger_data`, `inserted_at.*`. A message still
    `queued` (held for a send window) is not in the feed until it is delivered."""
    query = request.query_params
    status = _one_of(request, "status", {*FEED_STATUSES, "all"}, "all")
    archived = _one_of(request, "archived", {a.value for a in ArchivedFilter}, ArchivedFilter.EXCLUDE.value)
    has_tenant = query_bool(request, "has_tenant") if "has_tenant" in query else None
    engaged: dict[str, Any] = {}
    if status in FEED_STATUSES:
        field, value = FEED_STATUSES[status]
        engaged[field] = value
    tenant = query.get("tenant") or None
    filters = MessageFilter(
        source=query.get("source") or None,
        tenant=tenant,
        only_tenant=bool(has_tenant),
        has_tenant=has_tenant if tenant is None else None,
        workflow_categories=tuple(query_list(request, "workflow_categories")),
        trigger_data=_trigger_data(request),
        archived=ArchivedFilter(archived),
        excluded_statuses=("queued",),
    )
    return dataclasses.replace(filters, **engaged, **_inserted_at(request), **fixed)

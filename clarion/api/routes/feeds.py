"""The in-app feed: a user's in-app messages on one channel (`/v1/users/{user_id}/feeds/{channel_id}`),
newest first with badge counts, and the feed's settings."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from clarion.api.contract import FEED_FILTERS, QueryParameter
from clarion.api.endpoint import RequestContext, path_param, route
from clarion.api.message_query import feed_filter
from clarion.api.pagination import encode_cursor, page_info, page_request
from clarion.api.responses import JSONResponse
from clarion.channels import ChannelType
from clarion.engine.run_scope import serialise_recipient
from clarion.errors import InvalidInputError, NotFoundError
from clarion.schemas.feeds import MAX_EXCLUDE_DEPTH, feed_item, feed_response, referenced_keys
from clarion.schemas.plain_responses import Feed, FeedSettings
from clarion.store.messages import MessageRecord
from clarion.store.pagination import Page
from clarion.store.recipient_resolution import RecipientKey, read_recipients
from clarion.store.recipients import RecipientRecord

MAX_FEED_PAGE_SIZE = 200
MODES = ("rich", "compact")


def _feed_channel(context: RequestContext, request: Request) -> str:
    channel_id = path_param(request, "channel_id")
    channel = context.runtime.channels.get(channel_id)
    if channel is None or channel.type is not ChannelType.IN_APP_FEED:
        raise NotFoundError(
            f"No in-app feed channel with id {channel_id!r} is configured", code="channel_invalid"
        )
    return channel.id


def _exclude(request: Request) -> list[list[str]]:
    raw = request.query_params.get("exclude") or ""
    paths = [part.strip().split(".") for part in raw.split(",") if part.strip()]
    if any(len(path) > MAX_EXCLUDE_DEPTH for path in paths):
        raise InvalidInputError.field("exclude", f"paths may be at most {MAX_EXCLUDE_DEPTH} levels deep")
    return paths


async def get_feed(request: Request, context: RequestContext) -> Response:
    user = RecipientKey.user(path_param(request, "user_id"))
    channel_id = _feed_channel(context, request)
    mode = request.query_params.get("mode") or "rich"
    if mode not in MODES:
        raise InvalidInputError.field("mode", "must be one of: compact, rich")
    exclude = _exclude(request)
    page = page_request(request, max_page_size=MAX_FEED_PAGE_SIZE)
    filters = feed_filter(request, recipient=user, channel_id=channel_id)
    runtime = context.runtime

    async def page_with_entities() -> tuple[list[MessageRecord], Page, dict[RecipientKey, RecipientRecord]]:
        records, result = await runtime.messages.page(context.environment_id, filters, page)
        keys = referenced_keys(records)
        return records, result, await read_recipients(runtime.database, context.environment_id, keys)

    # The counts go over all the user's messages, the page over 50: on PostgreSQL the store counts while
    # this process reads and decodes the page.
    (records, result, entities), counts = await asyncio.gather(
        page_with_entities(),
        runtime.messages.counts(context.environment_id, dataclasses.replace(filters, read=None, seen=None)),
    )
    serialised = {key: serialise_recipient(record) for key, record in entities.items()}
    entries = [
        feed_item(record, encode_cursor(record.pk), serialised.get, compact=mode == "compact")
        for record in records
    ]
    return JSONResponse(feed_response(entries, counts, page_info(result, page).to_wire(), exclude))


async def get_feed_settings(request: Request, context: RequestContext) -> Response:
    path_param(request, "user_id")
    _feed_channel(context, request)
    return JSONResponse({"features": {"branding_required": False}})


routes = [
    route(
        "/v1/users/{user_id}/feeds/{channel_id}",
        "GET",
        get_feed,
        tier=2,
        client=True,
        query=[
            QueryParameter("after", str, "The cursor of the page to read after."),
            QueryParameter("before", str, "The cursor of the page to read before."),
            QueryParameter("page_size", int, f"Items per page, 1 to {MAX_FEED_PAGE_SIZE} (default 50)."),
            *FEED_FILTERS,
            QueryParameter("mode", Literal["rich", "compact"], "compact drops activities and nested data."),
            QueryParameter("exclude", str, "Comma-separated dotted paths of fields to leave out."),
            QueryParameter("locale", str, "Accepted and ignored (no translations yet)."),
        ],
        response=Feed,
        note="`locale` is accepted and ignored; `vars` is empty; the realtime socket is not served.",
    ),
    route(
        "/v1/users/{user_id}/feeds/{channel_id}/settings",
        "GET",
        get_feed_settings,
        tier=4,
        client=True,
        response=FeedSettings,
    ),
]

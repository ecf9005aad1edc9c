"""What a route declares about its wire contract, for Clarion's OpenAPI document (`clarion.api.openapi`).

Each `route(...)` names the type its handler reads from the body, the type it answers with and the query
parameters it reads; the document is generated from those declarations and the route table, so it cannot
list an operation Clarion does not serve. Types are anything Pydantic can describe (models, lists of them,
TypedDicts). A body declared as `Model | None` may be left out; a route answering no type answers 204.

The query parameters shared by several routes are declared here once, beside the parsers they describe
(`clarion.api.pagination`, `clarion.api.message_query`, `clarion.api.query`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import WithJsonSchema

from clarion.api.message_query import DELIVERY_STATUSES, ENGAGEMENT_STATUSES, FEED_STATUSES
from clarion.api.pagination import DEFAULT_PAGE_SIZE
from clarion.store.messages import ArchivedFilter

QueryBool = Literal["true", "false"]
"""How `query_bool` reads a flag ("1", "0" and an empty value too, which the document leaves out)."""


@dataclass(frozen=True, slots=True)
class QueryParameter:
    name: str
    schema: Any
    """A type Pydantic can describe; its JSON schema is the parameter's."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Contract:
    body: Any = None
    response: Any = None
    query: tuple[QueryParameter, ...] = ()
    note: str = ""
    """Where Clarion differs from Knock on this operation (docs/compatibility.md), for its description."""


def choices(values: Iterable[str]) -> Any:
    """A list of some of `values`, as `clarion.api.query.query_choices` reads it."""
    schema = {"type": "array", "items": {"type": "string", "enum": sorted(values)}}
    return Annotated[list[str], WithJsonSchema(schema)]


def flag(name: str, description: str) -> QueryParameter:
    """A true/false parameter, as `clarion.api.query.query_bool` reads it."""
    return QueryParameter(name, QueryBool, description)


PAGINATION = (
    QueryParameter("after", str, "The cursor of the page to read after (a `page_info.after`)."),
    QueryParameter("before", str, "The cursor of the page to read before (a `page_info.before`)."),
    QueryParameter("page_size", int, f"Entries per page, 1 to 50 (default {DEFAULT_PAGE_SIZE})."),
)

INCLUDE_PREFERENCES = QueryParameter(
    "include[]",
    choices(["preferences"]),
    "`preferences` adds each recipient's `default` preference set as `preferences`.",
)

INSERTED_AT = tuple(
    QueryParameter(f"inserted_at.{bound}", str, f"Only items inserted {meaning} this ISO-8601 time.")
    for bound, meaning in (
        ("gt", "after"),
        ("gte", "at or after"),
        ("lt", "before"),
        ("lte", "at or before"),
    )
)

TRIGGER_DATA = QueryParameter(
    "trigger_data", str, "A JSON object of scalar values the trigger's data must hold exactly."
)

MESSAGE_FILTERS = (
    QueryParameter("channel_id", str, "Only messages of this channel."),
    QueryParameter("source", str, "Only messages of this workflow key."),
    QueryParameter("tenant", str, "Only messages of this tenant."),
    QueryParameter(
        "status[]",
        choices(DELIVERY_STATUSES),
        "Only messages with one of these delivery statuses.",
    ),
    QueryParameter(
        "engagement_status[]",
        choices(ENGAGEMENT_STATUSES),
        "Only messages with one of these engagement statuses.",
    ),
    QueryParameter("message_ids[]", list[str], "Only these messages."),
    QueryParameter("workflow_categories[]", list[str], "Only messages of workflows in these categories."),
    TRIGGER_DATA,
    QueryParameter("workflow_run_id", str, "Only messages of this workflow run."),
    QueryParameter("workflow_recipient_run_id", str, "Only messages of this workflow recipient run."),
    *INSERTED_AT,
)

FEED_FILTERS = (
    QueryParameter(
        "status",
        Annotated[str, WithJsonSchema({"type": "string", "enum": sorted({*FEED_STATUSES, "all"})})],
        "Which items by engagement (default all).",
    ),
    QueryParameter("archived", ArchivedFilter, "Archived items: left out (default), kept or alone."),
    QueryParameter("tenant", str, "Only items of this tenant (and items without a tenant)."),
    flag("has_tenant", "true: only items with a tenant; false: only items without one."),
    QueryParameter("source", str, "Only items of this workflow key."),
    QueryParameter("workflow_categories[]", list[str], "Only items of workflows in these categories."),
    TRIGGER_DATA,
    *INSERTED_AT,
)

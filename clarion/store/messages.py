"""Messages: what a channel step produced for one recipient on one channel, with its delivery status, its
engagement (seen, read, interacted, link clicked, archived, each a timestamp) and its events.

A message is unique per (run, step, channel), so a step executed twice after a crash finds the message it
made the first time instead of making a second. Ids are 27-character, time-ordered base62 strings like
Knock's (KSUID layout: 4 bytes of seconds since 2014-05-13, 16 random bytes). Lists come newest first,
paged by the insertion-ordered `pk`. A message's events are a JSON array on its row, oldest first; an
engagement change appends one `message.<status>` event to each message it changes, in the same UPDATE;
setting a status a message already has changes nothing and records nothing.

Bulk operations over a channel's messages (`clarion.engine.bulk`) read what a `MessageFilter` selects in
pages of ids by `pk` (`select_ids`) and change or delete each page by id, so a page written twice changes
nothing the second time.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batching import chunks
from clarion.store.bulk_insert import BulkInsert, PreparedRows
from clarion.store.clock import utc_text, utcnow
from clarion.store.db import Database
from clarion.store.ids import stable_ksuid
from clarion.store.pagination import Page, PageRequest, fetch_page, page_of_list
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import messages


class Engagement(StrEnum):
    SEEN = "seen"
    READ = "read"
    INTERACTED = "interacted"
    LINK_CLICKED = "link_clicked"
    ARCHIVED = "archived"

    @property
    def column(self) -> sa.Column[Any]:
        return messages.c[f"{self.value}_at"]


UNDO_EVENTS = {Engagement.SEEN: "unseen", Engagement.READ: "unread", Engagement.ARCHIVED: "unarchived"}
"""The engagement statuses that can be taken back, and the event their removal records."""


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class NewMessage:
    id: str
    channel_id: str
    recipient: RecipientKey
    workflow_key: str
    run_id: str
    workflow_run_id: str
    step_ref: str
    source: dict[str, Any]
    tenant: str | None
    actors: list[dict[str, str]]
    activities: list[dict[str, Any]]
    data: dict[str, Any]
    content: dict[str, Any]
    status: str
    events: tuple[str, ...] = ("message.created",)
    scheduled_at: datetime | None = None
    """When a message held for its step's send window is due to go."""
    batch_id: str | None = None
    total_activities: int | None = None
    total_actors: int | None = None
    """The batch whose activities the message shows, for a message made after a batch step."""


@dataclass(frozen=True)
class MessageRecord:
    pk: int
    id: str
    environment_id: str
    channel_id: str
    recipient: RecipientKey
    workflow_key: str
    run_id: str
    step_ref: str
    batch_id: str | None
    """The batch whose activities the message shows (`clarion.store.batches.activities_page`); None for a
    message of one trigger, whose one activity is `activities`."""
    total_activities: int
    """All the batch's activities, of which `activities` holds those rendered; 1 for one trigger's."""
    total_actors: int
    source: dict[str, Any]
    tenant: str | None
    actors: list[dict[str, str]]
    activities: list[dict[str, Any]]
    data: dict[str, Any]
    content: dict[str, Any]
    status: str
    seen_at: datetime | None
    read_at: datetime | None
    interacted_at: datetime | None
    link_clicked_at: datetime | None
    archived_at: datetime | None
    metadata: dict[str, Any] | None
    scheduled_at: datetime | None
    inserted_at: datetime
    updated_at: datetime

    @property
    def engagement_statuses(self) -> list[str]:
        return [status.value for status in Engagement if getattr(self, f"{status.value}_at") is not None]


@dataclass(frozen=True)
class MessageEventRecord:
    id: str
    message_id: str
    type: str
    data: dict[str, Any] | None
    inserted_at: datetime


def _event_entry(event_type: str, data: dict[str, Any] | None, at: datetime) -> dict[str, Any]:
    """An event as a message stores it; without data, the key is left out."""
    entry = {"type": event_type, "inserted_at": utc_text(at)}
    return entry if data is None else {**entry, "data": data}


def _event_records(message_id: str, stored: Sequence[dict[str, Any]]) -> list[MessageEventRecord]:
    """A message's stored events, oldest first. An event's id is derived from the message and its place
    there, unless it kept the one it had before events moved onto messages."""
    records = []
    for index, entry in enumerate(stored):
        at = datetime.fromisoformat(entry["inserted_at"])
        event_id = entry.get("id") or stable_ksuid(at, f"{message_id}:{index}")
        records.append(MessageEventRecord(event_id, message_id, entry["type"], entry.get("data"), at))
    return records


def message_record(row: sa.Row[Any]) -> MessageRecord:
    m = row._mapping
    return MessageRecord(
        pk=m["pk"],
        id=m["id"],
        environment_id=m["environment_id"],
        channel_id=m["channel_id"],
        recipient=RecipientKey(m["recipient_collection"], m["recipient_id"]),
        workflow_key=m["workflow_key"],
        run_id=m["run_id"],
        step_ref=m["step_ref"],
        batch_id=m["batch_id"],
        total_activities=len(m["activities"]) if m["total_activities"] is None else m["total_activities"],
        total_actors=len(m["actors"]) if m["total_actors"] is None else m["total_actors"],
        source=m["source"],
        tenant=m["tenant"],
        actors=m["actors"],
        activities=m["activities"],
        data=m["data"],
        content=m["content"],
        status=m["status"],
        seen_at=m["seen_at"],
        read_at=m["read_at"],
        interacted_at=m["interacted_at"],
        link_clicked_at=m["link_clicked_at"],
        archived_at=m["archived_at"],
        metadata=m["metadata"],
        scheduled_at=m["scheduled_at"],
        inserted_at=m["inserted_at"],
        updated_at=m["updated_at"],
    )


# Nothing has happened to a new message yet. Left out rather than bound: Python 3.11's sqlite3 binds a None
# through an AttributeError it formats and drops, dearer than any other value.
_UNSET_WHEN_NEW = ("seen_at", "read_at", "interacted_at", "link_clicked_at", "archived_at", "metadata")
_SET_BY_SOME = ("scheduled_at", "batch_id", "total_activities", "total_actors")
"""What only some new messages have (held for a send window, made after a batch): bound only for the
inserts of a pass where some message sets them, so that most passes bind neither for each message."""


@functools.cache
def _message_insert(bound: frozenset[str]) -> BulkInsert:
    """The insert of new messages binding the `_SET_BY_SOME` columns in `bound` (leaving the others NULL)."""
    return BulkInsert(
        messages,
        shared=["environment_id", "inserted_at", "updated_at"],
        unset=[*_UNSET_WHEN_NEW, *(name for name in _SET_BY_SOME if name not in bound)],
        skip_conflicts_on=["run_id", "step_ref", "channel_id"],
    )


MESSAGE_COLUMNS = tuple(column for column in messages.c if column.name != "events")
"""What a `MessageRecord` holds: every column but the events, which only the events list reads."""


async def insert_messages(
    connection: AsyncConnection, environment_id: str, new: Sequence[NewMessage]
) -> None:
    """Insert messages with their first events in the caller's transaction; a message whose (run, step,
    channel) already has one is skipped."""
    await prepare_messages(connection.dialect, environment_id, new)(connection)


def prepare_messages(sa_dialect: sa.Dialect, environment_id: str, new: Sequence[NewMessage]) -> PreparedRows:
    """`insert_messages`, its rows bound now and written when called with the connection."""
    now = utcnow()
    # The messages of one step share their first events, as they share their moment: one list of them
    # per kind, which the insert encodes once (`clarion.store.bulk_insert`).
    first_events: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for message in new:
        if message.events not in first_events:
            first_events[message.events] = [_event_entry(event, None, now) for event in message.events]
    shared = {"environment_id": environment_id, "inserted_at": now, "updated_at": now}
    bound = frozenset(name for name in _SET_BY_SOME if any(getattr(m, name) is not None for m in new))
    rows = [_message_row(message, first_events[message.events], bound) for message in new]
    return _message_insert(bound).prepare(sa_dialect, rows, **shared)


def _message_row(
    message: NewMessage, first_events: list[dict[str, Any]], bound: frozenset[str]
) -> dict[str, Any]:
    row = {
        "id": message.id,
        "channel_id": message.channel_id,
        "recipient_collection": message.recipient.collection,
        "recipient_id": message.recipient.id,
        "workflow_key": message.workflow_key,
        "run_id": message.run_id,
        "workflow_run_id": message.workflow_run_id,
        "step_ref": message.step_ref,
        "source": message.source,
        "tenant": message.tenant,
        "actors": message.actors,
        "activities": message.activities,
        "data": message.data,
        "content": message.content,
        "status": message.status,
        "events": first_events,
    }
    for name in bound:
        row[name] = getattr(message, name)
    return row


async def message_statuses(
    connection: AsyncConnection, environment_id: str, message_ids: Sequence[str]
) -> dict[str, tuple[str, list[str]]]:
    """For each existing message of `message_ids`: its delivery status and engagement statuses."""
    c = messages.c
    engagements = list(Engagement)
    found: dict[str, tuple[str, list[str]]] = {}
    for chunk in chunks(list(message_ids)):
        rows = await connection.execute(
            sa.select(c.id, c.status, *(engagement.column for engagement in engagements)).where(
                c.environment_id == environment_id, c.id.in_(list(chunk))
            )
        )
        found.update(
            (
                row.id,
                (row.status, [e.value for e, at in zip(engagements, row[2:], strict=True) if at is not None]),
            )
            for row in rows
        )
    return found


class ArchivedFilter(StrEnum):
    EXCLUDE = "exclude"
    INCLUDE = "include"
    ONLY = "only"


@dataclass(frozen=True)
class MessageFilter:
    """What a list of messages is narrowed to; unset fields do not narrow it."""

    recipient: RecipientKey | None = None
    channel_id: str | None = None
    source: str | None = None
    tenant: str | None = None
    only_tenant: bool = False
    """With `tenant`: only that tenant's messages; without, messages with no tenant are included too."""
    has_tenant: bool | None = None
    statuses: tuple[str, ...] = ()
    excluded_statuses: tuple[str, ...] = ()
    """None of these delivery statuses (the feed leaves out `queued` messages, not delivered yet)."""
    engagement: tuple[str, ...] = ()
    """Any of: an Engagement value, or `unseen`/`unread`/`unarchived` for its absence."""
    message_ids: tuple[str, ...] = ()
    workflow_categories: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    """Any of these workflow keys."""
    recipients: tuple[RecipientKey, ...] = ()
    """Any of these recipients."""
    tenants: tuple[str, ...] = ()
    """Any of these tenants; like `tenant`, messages with no tenant are included unless `only_tenant`."""
    trigger_data: dict[str, Any] = field(default_factory=dict)
    workflow_run_id: str | None = None
    workflow_recipient_run_id: str | None = None
    inserted_after: datetime | None = None
    inserted_from: datetime | None = None
    inserted_before: datetime | None = None
    inserted_until: datetime | None = None
    archived: ArchivedFilter = ArchivedFilter.INCLUDE
    read: bool | None = None
    seen: bool | None = None
    engaged: tuple[tuple[Engagement, bool], ...] = ()
    """Every one of: (status, whether the message has it)."""


def _engagement_condition(name: str) -> sa.ColumnElement[bool]:
    if name in Engagement.__members__.values():
        return Engagement(name).column.is_not(None)
    undone = {undo: status for status, undo in UNDO_EVENTS.items()}
    return undone[name].column.is_(None)


def _conditions(
    environment_id: str, filters: MessageFilter, dialect_name: str
) -> list[sa.ColumnElement[bool]]:
    c = messages.c
    conditions: list[sa.ColumnElement[bool]] = [c.environment_id == environment_id]
    if filters.recipient is not None:
        conditions += [
            c.recipient_collection == filters.recipient.collection,
            c.recipient_id == filters.recipient.id,
        ]
    if filters.channel_id is not None:
        conditions.append(c.channel_id == filters.channel_id)
    if filters.source is not None:
        conditions.append(c.workflow_key == filters.source)
    if filters.recipients:
        by_collection: dict[str, list[str]] = {}
        for recipient in filters.recipients:
            by_collection.setdefault(recipient.collection, []).append(recipient.id)
        conditions.append(
            sa.or_(
                *(
                    sa.and_(c.recipient_collection == collection, c.recipient_id.in_(ids))
                    for collection, ids in sorted(by_collection.items())
                )
            )
        )
    if filters.workflows:
        conditions.append(c.workflow_key.in_(filters.workflows))
    if filters.tenant is not None:
        conditions.append(_tenant_condition(c.tenant == filters.tenant, filters.only_tenant))
    if filters.tenants:
        conditions.append(_tenant_condition(c.tenant.in_(filters.tenants), filters.only_tenant))
    if filters.has_tenant is not None:
        conditions.append(c.tenant.is_not(None) if filters.has_tenant else c.tenant.is_(None))
    if filters.statuses:
        conditions.append(c.status.in_(filters.statuses))
    if filters.excluded_statuses:
        conditions.append(c.status.not_in(filters.excluded_statuses))
    if filters.engagement:
        conditions.append(sa.or_(*(_engagement_condition(name) for name in filters.engagement)))
    if filters.message_ids:
        conditions.append(c.id.in_(filters.message_ids))
    if filters.workflow_categories:
        conditions.append(
            dialect.json_array_overlaps(c.source, "categories", filters.workflow_categories, dialect_name)
        )
    for key, value in filters.trigger_data.items():
        conditions.append(dialect.json_scalar_equals(c.data, key, value, dialect_name))
    if filters.workflow_run_id is not None:
        conditions.append(c.workflow_run_id == filters.workflow_run_id)
    if filters.workflow_recipient_run_id is not None:
        conditions.append(c.run_id == filters.workflow_recipient_run_id)
    if filters.inserted_after is not None:
        conditions.append(c.inserted_at > filters.inserted_after)
    if filters.inserted_from is not None:
        conditions.append(c.inserted_at >= filters.inserted_from)
    if filters.inserted_before is not None:
        conditions.append(c.inserted_at < filters.inserted_before)
    if filters.inserted_until is not None:
        conditions.append(c.inserted_at <= filters.inserted_until)
    if filters.archived is ArchivedFilter.EXCLUDE:
        conditions.append(c.archived_at.is_(None))
    elif filters.archived is ArchivedFilter.ONLY:
        conditions.append(c.archived_at.is_not(None))
    if filters.read is not None:
        conditions.append(c.read_at.is_not(None) if filters.read else c.read_at.is_(None))
    if filters.seen is not None:
        conditions.append(c.seen_at.is_not(None) if filters.seen else c.seen_at.is_(None))
    for status, has in filters.engaged:
        conditions.append(status.column.is_not(None) if has else status.column.is_(None))
    return conditions


def _tenant_condition(named: sa.ColumnElement[bool], only_tenant: bool) -> sa.ColumnElement[bool]:
    return named if only_tenant else sa.or_(named, messages.c.tenant.is_(None))


def _named(
    environment_id: str, message_ids: Sequence[str], recipient: RecipientKey | None
) -> list[sa.ColumnElement[bool]]:
    """The messages of `message_ids` in the environment, of `recipient` only when given."""
    conditions = [messages.c.environment_id == environment_id, messages.c.id.in_(list(message_ids))]
    if recipient is not None:
        conditions += [
            messages.c.recipient_collection == recipient.collection,
            messages.c.recipient_id == recipient.id,
        ]
    return conditions


async def _write_engagement(
    connection: AsyncConnection,
    environment_id: str,
    message_ids: Sequence[str],
    status: Engagement,
    *,
    on: bool,
    metadata: dict[str, Any] | None,
    recipient: RecipientKey | None = None,
) -> None:
    """Set (`on`) or clear `status` on the messages that do not stand so yet (of `recipient` only, when
    given), with one event for each, in the caller's transaction."""
    now = utcnow()
    column = status.column
    event = f"message.{status.value}" if on else f"message.{UNDO_EVENTS[status]}"
    values: dict[str, Any] = {
        column.name: now if on else None,
        "updated_at": now,
        "events": dialect.json_append(
            messages.c.events, _event_entry(event, metadata, now), connection.dialect.name
        ),
    }
    if metadata is not None:
        values["metadata"] = metadata
    await connection.execute(
        messages.update()
        .where(
            *_named(environment_id, message_ids, recipient),
            column.is_(None) if on else column.is_not(None),
        )
        .values(**values)
    )


async def mark_delivered(
    connection: AsyncConnection, environment_id: str, message_ids: Sequence[str], channel_ids: Sequence[str]
) -> int:
    """Make `delivered`, with a `message.delivered` event, those of `message_ids` that are on one of
    `channel_ids` and still `queued`, in the caller's transaction and one statement; the others are left
    as they are, so that marking a message twice records one delivery. Returns how many changed."""
    c = messages.c
    now = utcnow()
    event = _event_entry("message.delivered", None, now)
    result = await connection.execute(
        messages.update()
        .where(
            c.environment_id == environment_id,
            c.id.in_(sorted(message_ids)),
            c.channel_id.in_(list(channel_ids)),
            c.status == "queued",
        )
        .values(
            status="delivered",
            updated_at=now,
            events=dialect.json_append(c.events, event, connection.dialect.name),
        )
    )
    return int(result.rowcount)


@dataclass(frozen=True)
class FeedCounts:
    total: int
    unread: int
    unseen: int


class MessageStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, environment_id: str, message_id: str) -> MessageRecord | None:
        async with self.database.reader.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(*MESSAGE_COLUMNS).where(
                        messages.c.environment_id == environment_id, messages.c.id == message_id
                    )
                )
            ).first()
        return None if row is None else message_record(row)

    async def get_many(self, environment_id: str, message_ids: Sequence[str]) -> list[MessageRecord]:
        async with self.database.reader.connect() as connection:
            rows = await connection.execute(
                sa.select(*MESSAGE_COLUMNS)
                .where(messages.c.environment_id == environment_id, messages.c.id.in_(list(message_ids)))
                .order_by(messages.c.pk.desc())
            )
            return [message_record(row) for row in rows]

    async def page(
        self, environment_id: str, filters: MessageFilter, page: PageRequest
    ) -> tuple[list[MessageRecord], Page]:
        query = sa.select(*MESSAGE_COLUMNS).where(
            *_conditions(environment_id, filters, self.database.dialect_name)
        )
        async with self.database.reader.connect() as connection:
            result = await fetch_page(connection, query, messages.c.pk, page, newest_first=True)
        return [message_record(row) for row in result.rows], result

    async def counts(self, environment_id: str, filters: MessageFilter) -> FeedCounts:
        """Badge counts of a feed: every message the filters select, and those not yet read or seen."""
        c = messages.c
        # The read and seen ones are counted, the rest by difference: counting a column's non-null values
        # costs the store less per row than evaluating a condition.
        query = sa.select(sa.func.count(), sa.func.count(c.read_at), sa.func.count(c.seen_at)).where(
            *_conditions(environment_id, filters, self.database.dialect_name)
        )
        async with self.database.reader.connect() as connection:
            total, read, seen = (await connection.execute(query)).one()
        return FeedCounts(int(total), int(total) - int(read), int(total) - int(seen))

    async def events(
        self, environment_id: str, message_id: str, page: PageRequest
    ) -> tuple[list[MessageEventRecord], Page]:
        query = sa.select(messages.c.events).where(
            messages.c.environment_id == environment_id, messages.c.id == message_id
        )
        async with self.database.reader.connect() as connection:
            stored = (await connection.execute(query)).scalar_one_or_none()
        result = page_of_list(_event_records(message_id, stored or []), page, newest_first=True)
        return list(result.rows), result

    async def set_engagement(
        self,
        environment_id: str,
        message_ids: Sequence[str],
        status: Engagement,
        *,
        on: bool,
        metadata: dict[str, Any] | None = None,
        recipient: RecipientKey | None = None,
    ) -> list[MessageRecord]:
        """Set (`on`) or clear an engagement status of the messages (of `recipient` only, when given), in
        one transaction; messages that already stood so are left untouched and record no event. Returns
        every such message as it now stands."""
        async with self.database.writer.begin() as connection:
            await _write_engagement(
                connection, environment_id, message_ids, status, on=on, metadata=metadata, recipient=recipient
            )
            rows = await connection.execute(
                sa.select(*MESSAGE_COLUMNS)
                .where(*_named(environment_id, message_ids, recipient))
                .order_by(messages.c.pk.desc())
            )
            return [message_record(row) for row in rows]

    async def change_engagement(
        self, environment_id: str, message_ids: Sequence[str], status: Engagement, *, on: bool
    ) -> None:
        """`set_engagement` for a page of a bulk operation: the same change and events, nothing read back."""
        async with self.database.writer.begin() as connection:
            await _write_engagement(connection, environment_id, message_ids, status, on=on, metadata=None)

    async def select_ids(
        self, environment_id: str, filters: MessageFilter, *, after: int, limit: int
    ) -> list[tuple[int, str]]:
        """(pk, id) of the first `limit` messages past `pk` `after` that the filters select, oldest first."""
        c = messages.c
        query = (
            sa.select(c.pk, c.id)
            .where(*_conditions(environment_id, filters, self.database.dialect_name), c.pk > after)
            .order_by(c.pk)
            .limit(limit)
        )
        async with self.database.reader.connect() as connection:
            return [(row.pk, row.id) for row in await connection.execute(query)]

    async def delete_many(self, environment_id: str, message_ids: Sequence[str]) -> None:
        """Delete the messages, with their events, in one transaction; ids of no message are skipped."""
        ids = list(message_ids)
        async with self.database.writer.begin() as connection:
            await connection.execute(
                messages.delete().where(messages.c.environment_id == environment_id, messages.c.id.in_(ids))
            )

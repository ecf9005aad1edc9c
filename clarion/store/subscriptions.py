"""Subscriptions: which recipients (users or objects) subscribe to which object, with the properties of
each relationship.

Adding is an upsert: subscribing an existing subscriber again replaces its properties. Inline recipients
are identified in the same transaction as the subscriptions they take part in, and a request that fails
(unknown object, unknown referenced recipient) writes nothing; the users they identify move in and out
of dynamic audiences in that transaction too (`clarion.store.membership_rules`). Every listing costs a
fixed number of queries: the page, then the users and the objects it names
(`clarion.store.recipient_resolution`). Fan-out of a trigger to subscribers belongs to the engine;
deleting a recipient removes its subscriptions in `clarion.store.recipients`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import FieldError, InvalidInputError, NotFoundError
from clarion.store import dialect
from clarion.store.batching import ordered_chunks
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.membership_rules import NO_RULES, MembershipRulebook
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipient_resolution import (
    RecipientInput,
    RecipientKey,
    key_of,
    load_recipients,
    upsert_recipients,
)
from clarion.store.recipients import RecipientRecord
from clarion.store.tables import subscriptions

_UNIQUE = ["environment_id", "object_collection", "object_id", "recipient_collection", "recipient_id"]


@dataclass(frozen=True)
class SubscriptionRecord:
    object: RecipientRecord
    recipient: RecipientRecord
    properties: dict[str, Any] | None
    inserted_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SubscriptionEntry:
    """One item of a bulk add: an object of the collection and the recipients to subscribe to it."""

    object_id: str
    recipients: Sequence[RecipientInput]
    properties: dict[str, Any] | None = None


@dataclass(frozen=True)
class SubscriptionRemoval:
    """One item of a bulk delete: an object of the collection and the subscribers to remove from it."""

    object_id: str
    recipients: Sequence[RecipientKey]


@dataclass(frozen=True)
class BulkSubscriptionResult:
    """What a bulk add did: how many subscriptions it wrote, and the objects and recipients it skipped
    because they do not exist (or because an object was asked to subscribe to itself)."""

    success_count: int
    failed: list[RecipientKey]


def not_found(key: RecipientKey) -> NotFoundError:
    if key.is_user:
        return NotFoundError(f"The user {key.id!r} was not found")
    return NotFoundError(f"The object {key.id!r} was not found in the collection {key.collection!r}")


def _object_key(row: sa.Row[Any]) -> RecipientKey:
    return RecipientKey(row.object_collection, row.object_id)


def _recipient_key(row: sa.Row[Any]) -> RecipientKey:
    return RecipientKey(row.recipient_collection, row.recipient_id)


def _records(
    rows: Iterable[sa.Row[Any]], entities: dict[RecipientKey, RecipientRecord]
) -> list[SubscriptionRecord]:
    """Join subscription rows with their entities. A row whose object or recipient has gone (deleted by a
    concurrent transaction after the page was read) is left out rather than shown half-empty."""
    records = []
    for row in rows:
        subscribed_to = entities.get(_object_key(row))
        subscriber = entities.get(_recipient_key(row))
        if subscribed_to is None or subscriber is None:
            continue
        records.append(
            SubscriptionRecord(subscribed_to, subscriber, row.properties, row.inserted_at, row.updated_at)
        )
    return records


async def _write(
    connection: AsyncConnection,
    environment_id: str,
    pairs: dict[tuple[RecipientKey, RecipientKey], dict[str, Any] | None],
) -> list[sa.Row[Any]]:
    """Upsert one subscription per (object, recipient) pair with its properties, in the store's one write
    order (`clarion.store.batching`)."""
    now = utcnow()
    rows: list[sa.Row[Any]] = []
    for chunk in ordered_chunks(pairs.items(), key=lambda pair: (*pair[0][0], *pair[0][1])):
        statement = dialect.upsert(
            subscriptions,
            connection.dialect.name,
            [
                {
                    "environment_id": environment_id,
                    "object_collection": target.collection,
                    "object_id": target.id,
                    "recipient_collection": subscriber.collection,
                    "recipient_id": subscriber.id,
                    "properties": properties,
                    "inserted_at": now,
                    "updated_at": now,
                }
                for (target, subscriber), properties in chunk
            ],
            conflict=_UNIQUE,
            update=["properties", "updated_at"],
        ).returning(*subscriptions.c)
        rows.extend(await connection.execute(statement))
    return rows


class SubscriptionStore:
    def __init__(self, database: Database, rulebook: MembershipRulebook = NO_RULES) -> None:
        self.database = database
        self.rulebook = rulebook

    async def add(
        self,
        environment_id: str,
        collection: str,
        object_id: str,
        recipients: Sequence[RecipientInput],
        properties: dict[str, Any] | None,
    ) -> list[SubscriptionRecord]:
        """Subscribe `recipients` to an existing object, identifying the inline ones first; returns the
        subscriptions in the order the recipients were given. Errors name recipients by their index:
        `recipients.<i>`."""
        target = RecipientKey(collection, object_id)
        own = [
            FieldError(f"recipients.{index}", "an object cannot subscribe to itself")
            for index, recipient in enumerate(recipients)
            if key_of(recipient) == target
        ]
        if own:
            raise InvalidInputError(errors=own)
        keys = list(dict.fromkeys(key_of(recipient) for recipient in recipients))
        rules = await self.rulebook.rules(environment_id)
        async with self.database.writer.begin() as connection:
            await rules.users_written(
                connection, await upsert_recipients(connection, environment_id, recipients)
            )
            entities = await load_recipients(connection, environment_id, [target, *keys], lock=True)
            if target not in entities:
                raise not_found(target)
            missing = [
                FieldError(f"recipients.{index}", not_found(key_of(recipient)).message)
                for index, recipient in enumerate(recipients)
                if key_of(recipient) not in entities
            ]
            if missing:
                raise InvalidInputError(errors=missing)
            pairs = {(target, key): properties for key in keys}
            rows = await _write(connection, environment_id, pairs)
        by_recipient = {_recipient_key(row): row for row in rows}
        return _records((by_recipient[key] for key in keys), entities)

    async def delete(
        self, environment_id: str, collection: str, object_id: str, recipients: Sequence[RecipientKey]
    ) -> list[SubscriptionRecord]:
        """Unsubscribe `recipients` from an existing object; returns the subscriptions that existed.
        Recipients that were not subscribed are skipped."""
        target = RecipientKey(collection, object_id)
        async with self.database.writer.begin() as connection:
            entities = await load_recipients(connection, environment_id, [target])
            if target not in entities:
                raise not_found(target)
            rows: list[sa.Row[Any]] = []
            for chunk in ordered_chunks(set(recipients), key=lambda key: (key.collection, key.id)):
                rows.extend(
                    await connection.execute(
                        subscriptions.delete()
                        .where(
                            subscriptions.c.environment_id == environment_id,
                            subscriptions.c.object_collection == collection,
                            subscriptions.c.object_id == object_id,
                            sa.tuple_(subscriptions.c.recipient_collection, subscriptions.c.recipient_id).in_(
                                [tuple(key) for key in chunk]
                            ),
                        )
                        .returning(*subscriptions.c)
                    )
                )
            rows.sort(key=lambda row: int(row.pk))
            entities.update(await load_recipients(connection, environment_id, map(_recipient_key, rows)))
        return _records(rows, entities)

    async def page_subscribers(
        self,
        environment_id: str,
        subscribed_to: RecipientKey,
        page: PageRequest,
        recipients: Sequence[RecipientKey] | None = None,
    ) -> tuple[list[SubscriptionRecord], Page]:
        """The subscriptions held on an existing object, optionally only those of `recipients`."""
        query = sa.select(subscriptions).where(
            subscriptions.c.environment_id == environment_id,
            subscriptions.c.object_collection == subscribed_to.collection,
            subscriptions.c.object_id == subscribed_to.id,
        )
        if recipients is not None:
            query = query.where(
                sa.tuple_(subscriptions.c.recipient_collection, subscriptions.c.recipient_id).in_(
                    [tuple(key) for key in recipients]
                )
            )
        return await self._page(environment_id, subscribed_to, query, page, _recipient_key)

    async def page_subscriptions(
        self,
        environment_id: str,
        subscriber: RecipientKey,
        page: PageRequest,
        objects: Sequence[RecipientKey] | None = None,
    ) -> tuple[list[SubscriptionRecord], Page]:
        """The subscriptions an existing user or object holds, newest first as Knock lists a user's,
        optionally only those on `objects`."""
        query = sa.select(subscriptions).where(
            subscriptions.c.environment_id == environment_id,
            subscriptions.c.recipient_collection == subscriber.collection,
            subscriptions.c.recipient_id == subscriber.id,
        )
        if objects is not None:
            query = query.where(
                sa.tuple_(subscriptions.c.object_collection, subscriptions.c.object_id).in_(
                    [tuple(key) for key in objects]
                )
            )
        return await self._page(environment_id, subscriber, query, page, _object_key, newest_first=True)

    async def _page(
        self,
        environment_id: str,
        anchor: RecipientKey,
        query: sa.Select[Any],
        page: PageRequest,
        other_side: Callable[[sa.Row[Any]], RecipientKey],
        *,
        newest_first: bool = False,
    ) -> tuple[list[SubscriptionRecord], Page]:
        async with self.database.reader.connect() as connection:
            entities = await load_recipients(connection, environment_id, [anchor])
            if anchor not in entities:
                raise not_found(anchor)
            result = await fetch_page(connection, query, subscriptions.c.pk, page, newest_first=newest_first)
            entities.update(await load_recipients(connection, environment_id, map(other_side, result.rows)))
        return _records(result.rows, entities), result

    async def add_many(
        self, environment_id: str, collection: str, entries: Sequence[SubscriptionEntry]
    ) -> BulkSubscriptionResult:
        """Bulk add in one transaction: inline recipients are identified, then every (object, recipient)
        pair whose two ends exist is upserted; the rest are reported in `failed`. A pair named twice takes
        the properties of its last entry."""
        rules = await self.rulebook.rules(environment_id)
        async with self.database.writer.begin() as connection:
            named = [recipient for entry in entries for recipient in entry.recipients]
            await rules.users_written(connection, await upsert_recipients(connection, environment_id, named))
            entities = await load_recipients(
                connection,
                environment_id,
                [*(RecipientKey(collection, entry.object_id) for entry in entries), *map(key_of, named)],
                lock=True,
            )
            failed: dict[RecipientKey, None] = {}
            pairs: dict[tuple[RecipientKey, RecipientKey], dict[str, Any] | None] = {}
            for entry in entries:
                target = RecipientKey(collection, entry.object_id)
                if target not in entities:
                    failed[target] = None
                    continue
                for key in map(key_of, entry.recipients):
                    if key not in entities or key == target:
                        failed[key] = None
                        continue
                    pairs[(target, key)] = entry.properties
            await _write(connection, environment_id, pairs)
        return BulkSubscriptionResult(success_count=len(pairs), failed=list(failed))

    async def delete_many(
        self, environment_id: str, collection: str, entries: Sequence[SubscriptionRemoval]
    ) -> int:
        """Bulk delete in one transaction; subscriptions that do not exist are skipped. Returns how many
        were removed."""
        pairs = {
            (collection, entry.object_id, key.collection, key.id)
            for entry in entries
            for key in entry.recipients
        }
        removed = 0
        async with self.database.writer.begin() as connection:
            for chunk in ordered_chunks(pairs, key=lambda pair: pair):
                result = await connection.execute(
                    subscriptions.delete().where(
                        subscriptions.c.environment_id == environment_id,
                        sa.tuple_(
                            subscriptions.c.object_collection,
                            subscriptions.c.object_id,
                            subscriptions.c.recipient_collection,
                            subscriptions.c.recipient_id,
                        ).in_(chunk),
                    )
                )
                removed += int(result.rowcount)
        return removed


@dataclass(frozen=True)
class Subscriber:
    """A recipient reached through its subscription to `object`."""

    object: RecipientKey
    recipient: RecipientKey
    properties: dict[str, Any] | None


async def subscribers_of(
    connection: AsyncConnection, environment_id: str, objects: Iterable[RecipientKey]
) -> list[Subscriber]:
    """Every subscription held on `objects`, in the caller's transaction, in chunks of objects, ordered by
    object and then by when each subscription was made."""
    found: list[Subscriber] = []
    c = subscriptions.c
    for chunk in ordered_chunks(set(objects), key=lambda key: tuple(key)):
        rows = await connection.execute(
            sa.select(c.object_collection, c.object_id, c.recipient_collection, c.recipient_id, c.properties)
            .where(
                c.environment_id == environment_id,
                sa.tuple_(c.object_collection, c.object_id).in_([tuple(key) for key in chunk]),
            )
            .order_by(c.object_collection, c.object_id, c.pk)
        )
        found.extend(
            Subscriber(
                RecipientKey(row.object_collection, row.object_id),
                RecipientKey(row.recipient_collection, row.recipient_id),
                row.properties,
            )
            for row in rows
        )
    return found

"""What users, objects and tenants share as recipients: their record shape, upserts applied as if one
after another, inline channel data and preferences written in the caller's transaction, creating missing
recipients, and the clean-up when a recipient is deleted.

Users are stored in `users`, objects and tenants in `objects`; everything that hangs off a recipient is keyed
by (collection, id) with users in the `$users` collection (`clarion.store.tables`). Every multi-row write
here follows `clarion.store.batching`: rows in key order, repeated ids in rounds, so a batch of upserts has
the outcome of the same upserts run one by one, and concurrent batches never deadlock on PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batching import ROWS_PER_STATEMENT, ordered_chunks, rounds
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.direct import DirectQuery, fetch_in
from clarion.store.tables import (
    USERS_COLLECTION,
    UTCDateTime,
    audience_members,
    channel_data,
    objects,
    preference_sets,
    subscriptions,
    users,
)


@dataclass(frozen=True)
class RecipientRecord:
    collection: str
    id: str
    properties: dict[str, Any]
    inserted_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class InlineRecipientData:
    """Channel data (channel id → data) and preference sets (set id → set) sent along with an upsert."""

    channel_data: dict[str, dict[str, Any]] | None = None
    preferences: dict[str, dict[str, Any]] | None = None


RecipientEntry = tuple[str, dict[str, Any], InlineRecipientData]
"""(id, properties, inline data): one upsert of a user or object."""

RECORD_COLUMNS = ("collection", "id", "properties", "inserted_at", "updated_at")
"""The columns a `RecipientRecord` is read from (users have no `collection`: theirs is implied)."""

RowParameters = Callable[[Sequence[Sequence[Any]]], dict[str, Any]]


def _recipient_table(collection: str) -> tuple[sa.Table, dict[str, Any], list[str]]:
    """The table of a collection's recipients, the columns that scope a row to the collection, and its
    unique key."""
    if collection == USERS_COLLECTION:
        return users, {}, ["environment_id", "id"]
    return objects, {"collection": collection}, ["environment_id", "collection", "id"]


@functools.cache
def _upsert_query(table: sa.Table, dialect_name: str) -> tuple[DirectQuery, RowParameters]:
    """The upsert of a batch of users or objects of one collection, with Knock's deep merge run in the
    database under the row lock: INSERT … SELECT from the rows bound as a fixed set of parameters
    (`clarion.store.dialect.bound_rows`) … ON CONFLICT DO UPDATE … RETURNING. Built and compiled once per
    table and dialect, the same statement for every batch size, and run on the driver within the caller's
    transaction: SQLAlchemy's per-row parameter and result handling for a many-row upsert cost more than
    the database's work."""
    rows, row_parameters = dialect.bound_rows(["id", "properties"], dialect_name, json_names={"properties"})
    scope = [sa.bindparam("collection", type_=sa.String)] if "collection" in table.c else []
    now = sa.bindparam("now", type_=UTCDateTime)
    source = (
        sa.select(
            sa.bindparam("environment_id", type_=sa.String),
            *scope,
            rows.c.id,
            rows.c.properties,
            now,
            now,
        )
        .where(sa.true())  # SQLite reads "FROM … ON CONFLICT" as a join without it
        .order_by(rows.c.bound_row)
    )
    insert = dialect.insert(table, dialect_name).from_select(
        [
            "environment_id",
            *(["collection"] if scope else []),
            "id",
            "properties",
            "inserted_at",
            "updated_at",
        ],
        source,
    )
    statement = insert.on_conflict_do_update(
        index_elements=["environment_id", *(["collection"] if scope else []), "id"],
        set_={
            "properties": dialect.deep_merge(table.c.properties, insert.excluded.properties),
            "updated_at": insert.excluded.updated_at,
        },
    ).returning(*(table.c[name] for name in RECORD_COLUMNS if name in table.c))
    return DirectQuery(statement), row_parameters


def upsert_statement(
    environment_id: str,
    collection: str,
    rows: Sequence[tuple[str, dict[str, Any]]],
    now: datetime,
    dialect_name: str,
) -> tuple[DirectQuery, dict[str, Any]]:
    """The upsert (`_upsert_query`) of `rows` (id, properties; in key order, distinct ids, at most one
    statement's worth) and its parameters."""
    table, scope, _ = _recipient_table(collection)
    query, row_parameters = _upsert_query(table, dialect_name)
    return query, {"environment_id": environment_id, **scope, "now": now, **row_parameters(rows)}


def _single_statement_upsert(
    environment_id: str, collection: str, entries: Sequence[RecipientEntry], dialect_name: str
) -> tuple[DirectQuery, dict[str, Any]] | None:
    """The upsert of `entries` as one statement and its parameters, when that is all they need (distinct
    ids, no more rows than a statement takes, no inline channel data or preferences); None otherwise."""
    if len(entries) > ROWS_PER_STATEMENT or any(
        inline.channel_data or inline.preferences for _, _, inline in entries
    ):
        return None
    if len({recipient_id for recipient_id, _, _ in entries}) < len(entries):
        return None
    rows = sorted(((entry[0], entry[1]) for entry in entries), key=lambda row: row[0])
    return upsert_statement(environment_id, collection, rows, utcnow(), dialect_name)


async def upsert_entries(
    connection: AsyncConnection,
    environment_id: str,
    collection: str,
    entries: Sequence[RecipientEntry],
    record: Callable[[Mapping[str, Any]], RecipientRecord],
) -> list[RecipientRecord]:
    """Upsert users or objects of one collection, with the outcome of upserting `entries` one by one in
    their order; returns, for each entry, the recipient as it stood right after that entry was written."""
    now = utcnow()
    dialect_name = connection.dialect.name
    found: dict[int, RecipientRecord] = {}
    for round_positions in rounds([recipient_id for recipient_id, _, _ in entries]):
        round_rows = [(entries[position][0], entries[position][1]) for position in round_positions]
        written: dict[str, RecipientRecord] = {}
        for chunk in ordered_chunks(round_rows, key=lambda row: (row[0],)):
            query, parameters = upsert_statement(environment_id, collection, chunk, now, dialect_name)
            written.update((row["id"], record(row)) for row in await fetch_in(connection, query, parameters))
        await write_inline_data(
            connection,
            environment_id,
            collection,
            [(entries[position][0], entries[position][2]) for position in round_positions],
            now,
        )
        found.update((position, written[entries[position][0]]) for position in round_positions)
    return [found[position] for position in range(len(entries))]


async def upsert_recipients(
    database: Database,
    environment_id: str,
    collection: str,
    entries: Sequence[RecipientEntry],
    record: Callable[[Mapping[str, Any]], RecipientRecord],
) -> list[RecipientRecord]:
    """`upsert_entries` in a write of its own: one statement atomic by itself when that is all the
    entries need (`Database.write_statement`: on PostgreSQL one round trip, without BEGIN and COMMIT),
    else a writer transaction."""
    statement = _single_statement_upsert(environment_id, collection, entries, database.dialect_name)
    if statement is None:
        async with database.writer.begin() as connection:
            return await upsert_entries(connection, environment_id, collection, entries, record)
    query, parameters = statement
    written = {row["id"]: record(row) for row in await database.write_statement(query, **parameters)}
    return [written[recipient_id] for recipient_id, _, _ in entries]


async def write_inline_data(
    connection: AsyncConnection,
    environment_id: str,
    collection: str,
    entries: Sequence[tuple[str, InlineRecipientData]],
    now: datetime,
) -> None:
    """Set the inline channel data (replacing per channel) and deep-merge the inline preference sets of
    many recipients of one collection, as Knock does on identify: one statement per table and chunk. Each
    recipient appears at most once in `entries` (one round of `upsert_entries`)."""
    name = connection.dialect.name
    key = {"environment_id": environment_id, "recipient_collection": collection}
    data_rows: list[dict[str, Any]] = [
        {**key, "recipient_id": recipient_id, "channel_id": channel_id, "data": data}
        for recipient_id, inline in entries
        for channel_id, data in (inline.channel_data or {}).items()
    ]
    for chunk in ordered_chunks(data_rows, key=lambda row: (row["recipient_id"], row["channel_id"])):
        await connection.execute(
            dialect.upsert(
                channel_data,
                name,
                [{**row, "inserted_at": now, "updated_at": now} for row in chunk],
                conflict=["environment_id", "recipient_collection", "recipient_id", "channel_id"],
                update=["data", "updated_at"],
            )
        )
    set_rows: list[dict[str, Any]] = [
        {**key, "recipient_id": recipient_id, "set_id": set_id, "preferences": body}
        for recipient_id, inline in entries
        for set_id, body in (inline.preferences or {}).items()
    ]
    for chunk in ordered_chunks(set_rows, key=lambda row: (row["recipient_id"], row["set_id"])):
        await connection.execute(
            dialect.upsert(
                preference_sets,
                name,
                [{**row, "inserted_at": now, "updated_at": now} for row in chunk],
                conflict=["environment_id", "recipient_collection", "recipient_id", "set_id"],
                update=lambda excluded: {
                    "preferences": dialect.deep_merge(preference_sets.c.preferences, excluded.preferences),
                    "updated_at": excluded.updated_at,
                },
            )
        )


async def ensure_recipients(
    connection: AsyncConnection, environment_id: str, collection: str, recipient_ids: Sequence[str]
) -> None:
    """Create, with no properties, the recipients of `recipient_ids` that do not exist yet (what Knock does
    when channel data or preferences are written for an unknown recipient); existing ones are left as they
    are."""
    now = utcnow()
    table, scope, conflict = _recipient_table(collection)
    for chunk in ordered_chunks(set(recipient_ids), key=lambda recipient_id: (recipient_id,)):
        rows = [
            {
                "environment_id": environment_id,
                **scope,
                "id": recipient_id,
                "properties": {},
                "inserted_at": now,
                "updated_at": now,
            }
            for recipient_id in chunk
        ]
        await connection.execute(
            dialect.insert_ignore(table, connection.dialect.name, rows, conflict=conflict)
        )


async def delete_recipient_data(
    connection: AsyncConnection, environment_id: str, collection: str, recipient_ids: Sequence[str]
) -> None:
    """Remove everything attached to the given recipients: channel data, preferences, subscriptions held
    by them or on them, and (for users) audience memberships."""
    for chunk in ordered_chunks(set(recipient_ids), key=lambda recipient_id: (recipient_id,)):
        for table in (channel_data, preference_sets):
            await connection.execute(
                table.delete().where(
                    table.c.environment_id == environment_id,
                    table.c.recipient_collection == collection,
                    table.c.recipient_id.in_(chunk),
                )
            )
        await connection.execute(
            subscriptions.delete().where(
                subscriptions.c.environment_id == environment_id,
                sa.or_(
                    sa.and_(
                        subscriptions.c.recipient_collection == collection,
                        subscriptions.c.recipient_id.in_(chunk),
                    ),
                    sa.and_(
                        subscriptions.c.object_collection == collection,
                        subscriptions.c.object_id.in_(chunk),
                    ),
                ),
            )
        )
        if collection == USERS_COLLECTION:
            await connection.execute(
                audience_members.delete().where(
                    audience_members.c.environment_id == environment_id,
                    audience_members.c.user_id.in_(chunk),
                )
            )

"""Resolving the recipients a request names, inside the caller's transaction: inline users and objects are
upserted, and the entities behind a set of (collection, id) keys are loaded.

Upserts go through `clarion.store.users.upsert_users` and `clarion.store.objects.upsert_objects`, one
statement per kind (per collection for objects), round and chunk (`clarion.store.batching`); loading costs
one query on `users` and one on `objects` per chunk, whatever the mix of keys, so callers never query
recipient by recipient. A key whose entity does not exist is simply absent from the loaded mapping;
deciding whether that is an error is the caller's business.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batching import ordered_chunks
from clarion.store.db import Database
from clarion.store.direct import fetch_in
from clarion.store.objects import object_record, upsert_objects
from clarion.store.recipients import InlineRecipientData, RecipientEntry, RecipientRecord
from clarion.store.tables import USERS_COLLECTION, objects, users
from clarion.store.users import USERS_BY_IDS, upsert_users, user_record


class RecipientKey(NamedTuple):
    """A recipient's address: users in the `$users` collection, objects and tenants in their own."""

    collection: str
    id: str

    @classmethod
    def user(cls, user_id: str) -> RecipientKey:
        return cls(USERS_COLLECTION, user_id)

    @property
    def is_user(self) -> bool:
        return self.collection == USERS_COLLECTION

    def reference(self) -> str | dict[str, str]:
        """Knock's `RecipientReference`: a user by id, an object by collection and id."""
        return self.id if self.is_user else {"collection": self.collection, "id": self.id}

    @classmethod
    def from_reference(cls, reference: str | dict[str, str]) -> RecipientKey:
        """The key a stored `reference()` names."""
        if isinstance(reference, str):
            return cls.user(reference)
        return cls(reference["collection"], reference["id"])


@dataclass(frozen=True)
class RecipientUpsert:
    """An inline identify: the recipient is created or deep-merged before it is used."""

    key: RecipientKey
    properties: dict[str, Any]
    inline: InlineRecipientData


RecipientInput = RecipientKey | RecipientUpsert
"""A recipient as a request names it: a reference to an existing one, or an inline identify."""


def key_of(recipient: RecipientInput) -> RecipientKey:
    return recipient.key if isinstance(recipient, RecipientUpsert) else recipient


def record_key(record: RecipientRecord) -> RecipientKey:
    return RecipientKey(record.collection, record.id)


async def upsert_recipients(
    connection: AsyncConnection, environment_id: str, recipients: Iterable[RecipientInput]
) -> list[RecipientRecord]:
    """Upsert every inline recipient of `recipients` (references are left alone); returns the users
    written, each as it stood right after its own upsert (what dynamic audiences follow)."""
    user_entries: list[RecipientEntry] = []
    object_entries: dict[str, list[RecipientEntry]] = defaultdict(list)
    for recipient in recipients:
        if not isinstance(recipient, RecipientUpsert):
            continue
        entry = (recipient.key.id, recipient.properties, recipient.inline)
        if recipient.key.is_user:
            user_entries.append(entry)
        else:
            object_entries[recipient.key.collection].append(entry)
    written = await upsert_users(connection, environment_id, user_entries)
    for collection in sorted(object_entries):
        await upsert_objects(connection, environment_id, collection, object_entries[collection])
    return written


async def load_recipients(
    connection: AsyncConnection, environment_id: str, keys: Iterable[RecipientKey], *, lock: bool = False
) -> dict[RecipientKey, RecipientRecord]:
    """The users and objects behind `keys` that exist in the environment. `lock` holds a shared row lock
    on them until the transaction ends (PostgreSQL; SQLite's single writer needs none), so that a
    concurrent delete cannot remove a recipient the caller is about to link to; the rows are locked in the
    store's one write order (`clarion.store.batching`), so that this never deadlocks with a bulk upsert."""
    wanted = set(keys)
    user_ids = [key.id for key in wanted if key.is_user]
    object_keys = [(key.collection, key.id) for key in wanted if not key.is_user]
    name = connection.dialect.name
    found: dict[RecipientKey, RecipientRecord] = {}
    for user_chunk in ordered_chunks(user_ids, key=lambda user_id: (user_id,)):
        rows: Iterable[Any]
        if lock and name == "postgresql":
            query = (
                sa.select(users)
                .where(users.c.environment_id == environment_id, users.c.id.in_(user_chunk))
                .order_by(dialect.code_point_order(users.c.id, name))
                .with_for_update(read=True)
            )
            rows = await connection.execute(query)
        else:
            # On the driver: for a fan-out's thousand users, SQLAlchemy's rows cost more than the query.
            rows = await fetch_in(
                connection, USERS_BY_IDS, {"environment_id": environment_id, "ids": user_chunk}
            )
        found.update((RecipientKey.user(record.id), record) for record in map(user_record, rows))
    for object_chunk in ordered_chunks(object_keys, key=lambda object_key: object_key):
        query = sa.select(objects).where(
            objects.c.environment_id == environment_id,
            sa.tuple_(objects.c.collection, objects.c.id).in_(object_chunk),
        )
        if lock:
            query = query.order_by(
                dialect.code_point_order(objects.c.collection, name),
                dialect.code_point_order(objects.c.id, name),
            ).with_for_update(read=True)
        rows = await connection.execute(query)
        found.update((record_key(record), record) for record in map(object_record, rows))
    return found


async def read_recipients(
    database: Database, environment_id: str, keys: Iterable[RecipientKey]
) -> dict[RecipientKey, RecipientRecord]:
    """`load_recipients` on a read connection of its own."""
    async with database.reader.connect() as connection:
        return await load_recipients(connection, environment_id, keys)

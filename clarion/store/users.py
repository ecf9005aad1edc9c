"""Users: upsert with Knock's deep merge of properties, read, list, delete and merge.

An identify is an INSERT … ON CONFLICT statement whose merge runs in the database (`clarion_deep_merge`),
so concurrent identifies of one user never lose each other's properties. Concurrent identifies are group
committed (`clarion.store.group_commit`): a batch has the outcome of its identifies run one by one, and each
caller gets the user as it stood right after its own write. Inline channel data and preferences are
written in the same transaction (`clarion.store.recipients`); a batch without them is one statement.
In an environment with dynamic audiences, every write of users (identify, bulk identify, merge) brings
their memberships up to date in its own transaction (`clarion.store.membership_rules`); elsewhere that
costs a cached lookup per batch. Concurrent gets share one query (`clarion.store.coalesced_reads`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import NotFoundError
from clarion.store import dialect
from clarion.store.batching import ordered_chunks
from clarion.store.clock import utcnow
from clarion.store.coalesced_reads import CoalescedReads
from clarion.store.db import Database
from clarion.store.direct import DirectQuery
from clarion.store.group_commit import GroupCommitter
from clarion.store.membership_rules import NO_RULES, MembershipRulebook
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipients import (
    InlineRecipientData,
    RecipientEntry,
    RecipientRecord,
    delete_recipient_data,
    upsert_entries,
    upsert_recipients,
)
from clarion.store.tables import USERS_COLLECTION, channel_data, preference_sets, users


def user_record(row: sa.Row[Any] | Mapping[str, Any]) -> RecipientRecord:
    m = row._mapping if isinstance(row, sa.Row) else row
    return RecipientRecord(USERS_COLLECTION, m["id"], m["properties"], m["inserted_at"], m["updated_at"])


USERS_BY_IDS = DirectQuery(
    lambda dialect_name: dialect.select_by_keys(
        [users.c.id, users.c.properties, users.c.inserted_at, users.c.updated_at],
        users.c.id,
        "ids",
        dialect_name,
        users.c.environment_id == sa.bindparam("environment_id"),
    )
)
"""The users of `environment_id` among `ids`, as `user_record` reads them."""


async def upsert_users(
    connection: AsyncConnection, environment_id: str, entries: Sequence[RecipientEntry]
) -> list[RecipientRecord]:
    """Identify many users in the caller's transaction, with the outcome of identifying them one by one in
    the given order (`clarion.store.recipients.upsert_entries`); returns, for each entry, the user as it
    stood right after that entry."""
    return await upsert_entries(connection, environment_id, USERS_COLLECTION, entries, user_record)


async def user_ids_after(
    connection: AsyncConnection, environment_id: str, after: int, limit: int
) -> list[tuple[int, str]]:
    """(pk, id) of the environment's first `limit` users past the one with pk `after`, in pk order: a walk
    over every user, a chunk at a time."""
    rows = await connection.execute(
        sa.select(users.c.pk, users.c.id)
        .where(users.c.environment_id == environment_id, users.c.pk > after)
        .order_by(users.c.pk)
        .limit(limit)
    )
    return [(row.pk, row.id) for row in rows]


IdentifyItem = tuple[str, str, dict[str, Any], InlineRecipientData]
"""(environment_id, user_id, properties, inline data): one identify waiting for its group commit."""


async def identify_batch(
    database: Database, rulebook: MembershipRulebook, items: Sequence[IdentifyItem]
) -> list[RecipientRecord]:
    """Identify the users of many concurrent requests at once, as if one after another in the given order;
    returns each item's user as it stood right after that item. The usual batch, of one environment
    without dynamic audiences, is written as `clarion.store.recipients.upsert_recipients` writes it (often
    one statement); other batches in one transaction, environment by environment (sorted, so that
    concurrent batches lock rows in one order), with their memberships."""
    by_environment: dict[str, list[int]] = {}
    for position, (environment_id, _, _, _) in enumerate(items):
        by_environment.setdefault(environment_id, []).append(position)
    rules = {environment_id: await rulebook.rules(environment_id) for environment_id in by_environment}
    if len(by_environment) == 1 and not rules[items[0][0]].follows_users:
        entries = [(user_id, properties, inline) for _, user_id, properties, inline in items]
        return await upsert_recipients(database, items[0][0], USERS_COLLECTION, entries, user_record)
    found: dict[int, RecipientRecord] = {}
    async with database.writer.begin() as connection:
        for environment_id in sorted(by_environment):
            positions = by_environment[environment_id]
            records = await upsert_users(
                connection, environment_id, [(items[p][1], items[p][2], items[p][3]) for p in positions]
            )
            await rules[environment_id].users_written(connection, records)
            found.update(zip(positions, records, strict=True))
    return [found[position] for position in range(len(items))]


class UserStore:
    def __init__(self, database: Database, rulebook: MembershipRulebook = NO_RULES) -> None:
        self.database = database
        self.rulebook = rulebook
        self._identifies = GroupCommitter(
            functools.partial(identify_batch, database, rulebook),
            gathers_one_turn=database.write_batches_gather,
        )
        self._gets = CoalescedReads(database.direct, USERS_BY_IDS)

    async def identify(
        self,
        environment_id: str,
        user_id: str,
        properties: dict[str, Any],
        inline: InlineRecipientData | None = None,
    ) -> RecipientRecord:
        return await self._identifies.submit(
            (environment_id, user_id, properties, inline or InlineRecipientData())
        )

    async def identify_many(
        self, environment_id: str, entries: Sequence[RecipientEntry]
    ) -> list[RecipientRecord]:
        """Identify many users in one write (bulk identify), as if one after another."""
        rules = await self.rulebook.rules(environment_id)
        if not rules.follows_users:
            return await upsert_recipients(
                self.database, environment_id, USERS_COLLECTION, entries, user_record
            )
        async with self.database.writer.begin() as connection:
            records = await upsert_users(connection, environment_id, entries)
            await rules.users_written(connection, records)
        return records

    async def get(self, environment_id: str, user_id: str) -> RecipientRecord:
        row = await self._gets.fetch(environment_id, user_id)
        if row is None:
            raise NotFoundError(f"The user {user_id!r} was not found")
        return user_record(row)

    async def page(self, environment_id: str, page: PageRequest) -> tuple[list[RecipientRecord], Page]:
        query = sa.select(users).where(users.c.environment_id == environment_id)
        async with self.database.reader.connect() as connection:
            result = await fetch_page(connection, query, users.c.pk, page)
        return [user_record(row) for row in result.rows], result

    async def delete(self, environment_id: str, user_id: str) -> None:
        async with self.database.writer.begin() as connection:
            deleted = await self._delete(connection, environment_id, [user_id])
        if not deleted:
            raise NotFoundError(f"The user {user_id!r} was not found")

    async def delete_many(self, environment_id: str, user_ids: Sequence[str]) -> int:
        async with self.database.writer.begin() as connection:
            return await self._delete(connection, environment_id, user_ids)

    @staticmethod
    async def _delete(connection: AsyncConnection, environment_id: str, user_ids: Sequence[str]) -> int:
        deleted = 0
        for chunk in ordered_chunks(set(user_ids), key=lambda user_id: (user_id,)):
            result = await connection.execute(
                users.delete().where(users.c.environment_id == environment_id, users.c.id.in_(chunk))
            )
            deleted += int(result.rowcount)
        await delete_recipient_data(connection, environment_id, USERS_COLLECTION, user_ids)
        return deleted

    async def merge(self, environment_id: str, user_id: str, from_user_id: str) -> RecipientRecord:
        """Fold `from_user_id` into `user_id` and delete it: properties deep-merged with the primary winning,
        preference sets and channel data added where the primary has none.

        Both users are locked first, in the canonical order (`clarion.store.batching`), so an identify of
        either one that commits meanwhile waits and then applies on top of the merge instead of being
        lost, and two merges of one pair cannot deadlock. The merge itself runs in the UPDATE; the
        secondary's memberships go with it, and the primary's dynamic ones follow its merged properties."""
        rules = await self.rulebook.rules(environment_id)
        async with self.database.writer.begin() as connection:
            found = {
                row.id: row
                for row in await connection.execute(
                    sa.select(users)
                    .where(users.c.environment_id == environment_id, users.c.id.in_([user_id, from_user_id]))
                    .order_by(dialect.code_point_order(users.c.id, connection.dialect.name))
                    .with_for_update()
                )
            }
            for missing in (user_id, from_user_id):
                if missing not in found:
                    raise NotFoundError(f"The user {missing!r} was not found")
            if user_id == from_user_id:
                return user_record(found[user_id])
            secondary = (
                sa.select(users.c.properties)
                .where(users.c.environment_id == environment_id, users.c.id == from_user_id)
                .scalar_subquery()
            )
            updated = (
                await connection.execute(
                    users.update()
                    .where(users.c.environment_id == environment_id, users.c.id == user_id)
                    .values(properties=dialect.deep_merge(secondary, users.c.properties), updated_at=utcnow())
                    .returning(*users.c)
                )
            ).one()
            for table, key in ((channel_data, "channel_id"), (preference_sets, "set_id")):
                await self._adopt(connection, table, key, environment_id, user_id, from_user_id)
            await self._delete(connection, environment_id, [from_user_id])
            merged = user_record(updated)
            await rules.users_written(connection, [merged])
        return merged

    @staticmethod
    async def _adopt(
        connection: AsyncConnection,
        table: sa.Table,
        key: str,
        environment_id: str,
        user_id: str,
        from_user_id: str,
    ) -> None:
        """Copy the secondary's rows of `table` to the primary where the primary has no row with that key
        (the secondary's rows are deleted with it afterwards). ON CONFLICT DO NOTHING keeps the primary's
        row also when a concurrent transaction writes it meanwhile, where comparing against a snapshot
        would collide with it."""
        copied = [column.name for column in table.c]
        source = (
            sa.select(
                *(
                    sa.literal(user_id).label(name) if name == "recipient_id" else table.c[name]
                    for name in copied
                )
            )
            .where(
                table.c.environment_id == environment_id,
                table.c.recipient_collection == USERS_COLLECTION,
                table.c.recipient_id == from_user_id,
            )
            .order_by(dialect.code_point_order(table.c[key], connection.dialect.name))
        )
        await connection.execute(
            dialect.insert(table, connection.dialect.name)
            .from_select(copied, source)
            .on_conflict_do_nothing(
                index_elements=["environment_id", "recipient_collection", "recipient_id", key]
            )
        )

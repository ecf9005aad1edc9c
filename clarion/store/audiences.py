"""Static audiences and their members: users, each optionally scoped to a tenant.

A membership is the pair (user, tenant): one user may belong to an audience several times with distinct
tenants, and removing a member removes only the pair that matches both. Adding members identifies their
users in the same transaction (`clarion.store.users.upsert_users`), as if one after another; re-adding an
existing pair keeps its original `added_at`. Rows go in the store's one write order
(`clarion.store.batching`), so concurrent adds of overlapping members never deadlock. An audience exists
once created (here, by `add_members(create_audience=True)`); members of an unknown audience can be neither
added, listed nor removed. Deleting a user drops its memberships in `clarion.store.recipients`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import NotFoundError
from clarion.store import dialect
from clarion.store.batching import ordered_chunks
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipient_resolution import RecipientKey, load_recipients
from clarion.store.recipients import InlineRecipientData, RecipientRecord
from clarion.store.tables import audience_members, audiences
from clarion.store.users import upsert_users

NO_TENANT = ""
"""How a membership without a tenant is stored (see `clarion.store.tables.audience_members`)."""


class MemberKey(NamedTuple):
    user_id: str
    tenant: str | None


@dataclass(frozen=True)
class AudienceMemberInput:
    """A member to add, with the properties and inline data its user is identified with."""

    key: MemberKey
    properties: dict[str, Any]
    inline: InlineRecipientData


@dataclass(frozen=True)
class AudienceMemberRecord:
    user_id: str
    tenant: str | None
    added_at: datetime
    user: RecipientRecord | None
    """None when the user no longer exists."""


def _stored(key: MemberKey) -> tuple[str, str]:
    return key.user_id, key.tenant if key.tenant is not None else NO_TENANT


async def is_member(
    connection: AsyncConnection, environment_id: str, audience_key: str, user_id: str, tenant: str | None
) -> bool:
    """Whether the user belongs to the audience with exactly this tenant (None: as a member without one),
    the rule of Knock's `is_audience_member` condition."""
    c = audience_members.c
    row = (
        await connection.execute(
            sa.select(sa.literal(1)).where(
                c.environment_id == environment_id,
                c.audience_key == audience_key,
                c.user_id == user_id,
                c.tenant == (NO_TENANT if tenant is None else tenant),
            )
        )
    ).first()
    return row is not None


class AudienceStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def add_members(
        self,
        environment_id: str,
        audience_key: str,
        members: Sequence[AudienceMemberInput],
        *,
        create_audience: bool = False,
    ) -> None:
        async with self.database.writer.begin() as connection:
            if create_audience:
                await connection.execute(
                    dialect.insert_ignore(
                        audiences,
                        connection.dialect.name,
                        {"environment_id": environment_id, "key": audience_key, "inserted_at": utcnow()},
                        conflict=["environment_id", "key"],
                    )
                )
            else:
                await self._require(connection, environment_id, audience_key)
            await upsert_users(
                connection,
                environment_id,
                [(member.key.user_id, member.properties, member.inline) for member in members],
            )
            now = utcnow()
            pairs = {_stored(member.key) for member in members}
            for pair_chunk in ordered_chunks(pairs, key=lambda pair: pair):
                await connection.execute(
                    dialect.insert_ignore(
                        audience_members,
                        connection.dialect.name,
                        [
                            {
                                "environment_id": environment_id,
                                "audience_key": audience_key,
                                "user_id": user_id,
                                "tenant": tenant,
                                "inserted_at": now,
                            }
                            for user_id, tenant in pair_chunk
                        ],
                        conflict=["environment_id", "audience_key", "user_id", "tenant"],
                    )
                )

    async def remove_members(
        self, environment_id: str, audience_key: str, members: Sequence[MemberKey]
    ) -> int:
        """Remove the memberships matching both user and tenant; returns how many existed."""
        removed = 0
        async with self.database.writer.begin() as connection:
            await self._require(connection, environment_id, audience_key)
            for chunk in ordered_chunks(set(map(_stored, members)), key=lambda pair: pair):
                result = await connection.execute(
                    audience_members.delete().where(
                        audience_members.c.environment_id == environment_id,
                        audience_members.c.audience_key == audience_key,
                        sa.tuple_(audience_members.c.user_id, audience_members.c.tenant).in_(chunk),
                    )
                )
                removed += int(result.rowcount)
        return removed

    async def page_members(
        self, environment_id: str, audience_key: str, page: PageRequest
    ) -> tuple[list[AudienceMemberRecord], Page]:
        query = sa.select(audience_members).where(
            audience_members.c.environment_id == environment_id,
            audience_members.c.audience_key == audience_key,
        )
        async with self.database.reader.connect() as connection:
            await self._require(connection, environment_id, audience_key)
            result = await fetch_page(connection, query, audience_members.c.pk, page)
            found = await load_recipients(
                connection, environment_id, (RecipientKey.user(row.user_id) for row in result.rows)
            )
        records = [
            AudienceMemberRecord(
                user_id=row.user_id,
                tenant=row.tenant if row.tenant != NO_TENANT else None,
                added_at=row.inserted_at,
                user=found.get(RecipientKey.user(row.user_id)),
            )
            for row in result.rows
        ]
        return records, result

    @staticmethod
    async def _require(connection: AsyncConnection, environment_id: str, audience_key: str) -> None:
        exists = await connection.scalar(
            sa.select(sa.literal(1)).where(
                audiences.c.environment_id == environment_id, audiences.c.key == audience_key
            )
        )
        if exists is None:
            raise NotFoundError(f"The audience {audience_key!r} was not found")

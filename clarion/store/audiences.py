"""Audiences and their members: users, each optionally scoped to a tenant.

An audience is static (members are added and removed) or dynamic (its members are the users whose
properties match its segments, kept so by `clarion.store.membership_rules` on every write of a user). It
exists once created: declared in a file and committed (`commit_audiences`, with its document and SHA-256),
or created by `add_members(create_audience=True)` as a static one; its type never changes. Members of an
unknown audience can be neither added, listed nor removed, and a dynamic audience's members are not
added or removed by request (a 422): they follow their users.

A membership is the pair (user, tenant): one user may belong to an audience several times with distinct
tenants, and removing a member removes only the pair that matches both. A dynamic audience's memberships
have no tenant. Adding members identifies their users in the same transaction
(`clarion.store.users.upsert_users`), as if one after another; re-adding an existing pair keeps its
original `added_at` and fires nothing, and each new pair fires the audience's entry workflows in that
transaction (`MembershipRules.members_added`). Rows go in the store's one write order
(`clarion.store.batching`), so concurrent adds of overlapping members never deadlock. Deleting a user
drops its memberships in `clarion.store.recipients`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.errors import ConflictError, FieldError, InvalidInputError, NotFoundError
from clarion.store import dialect
from clarion.store.batching import ordered_chunks
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.membership_rules import NO_RULES, MembershipRulebook, MembershipRules
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipient_resolution import RecipientKey, load_recipients
from clarion.store.recipients import InlineRecipientData, RecipientRecord
from clarion.store.tables import audience_members, audiences
from clarion.store.users import upsert_users

NO_TENANT = ""
"""How a membership without a tenant is stored (see `clarion.store.tables.audience_members`)."""


class AudienceType(StrEnum):
    STATIC = "static"
    DYNAMIC = "dynamic"


class MemberKey(NamedTuple):
    user_id: str
    tenant: str | None


class NewMembership(NamedTuple):
    """A membership that did not exist before the transaction that inserted it. Its row's key and when it
    was added tell it from the same pair removed and added again (SQLite may give the new row the key of
    the one deleted)."""

    pk: int
    added_at: datetime
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


@dataclass(frozen=True)
class AudienceDocument:
    """An audience as a file declares it, to commit."""

    key: str
    type: AudienceType
    document: dict[str, Any]
    sha: str


@dataclass(frozen=True)
class AudienceCommit:
    key: str
    type: AudienceType
    changed: bool
    """False when the environment already had this very document."""


def _stored(key: MemberKey) -> tuple[str, str]:
    return key.user_id, key.tenant if key.tenant is not None else NO_TENANT


def _tenant(stored: str) -> str | None:
    return None if stored == NO_TENANT else stored


async def is_member(
    connection: AsyncConnection, environment_id: str, audience_key: str, user_id: str, tenant: str | None
) -> bool:
    """Whether the user belongs to the audience, by the rule of Knock's `is_audience_member` condition:
    in a static audience with exactly this tenant (None: as a member without one); in a dynamic audience,
    which has no tenants, whatever the tenant."""
    c = audience_members.c
    dynamic_audience = sa.exists().where(
        audiences.c.environment_id == environment_id,
        audiences.c.key == audience_key,
        audiences.c.type == AudienceType.DYNAMIC.value,
    )
    wanted = NO_TENANT if tenant is None else tenant
    row = (
        await connection.execute(
            sa.select(sa.literal(1))
            .where(
                c.environment_id == environment_id,
                c.audience_key == audience_key,
                c.user_id == user_id,
                sa.or_(c.tenant == wanted, sa.and_(c.tenant == NO_TENANT, dynamic_audience)),
            )
            .limit(1)
        )
    ).first()
    return row is not None


async def add_memberships(
    connection: AsyncConnection, environment_id: str, audience_key: str, members: Iterable[MemberKey]
) -> list[NewMembership]:
    """Insert, in the caller's transaction, the memberships that do not exist yet; returns those it
    inserted. An existing one is left as it is (its `added_at` with it): one INSERT … ON CONFLICT DO
    NOTHING … RETURNING per chunk both writes them and tells which are new."""
    now = utcnow()
    added: list[NewMembership] = []
    c = audience_members.c
    # Executed with the rows as its parameters rather than built with them: compiled once, where an
    # INSERT whose VALUES hold a thousand rows is compiled again for every add, most of the add's time.
    statement = (
        dialect.insert(audience_members, connection.dialect.name)
        .on_conflict_do_nothing(index_elements=["environment_id", "audience_key", "user_id", "tenant"])
        .returning(c.pk, c.user_id, c.tenant)
    )
    for chunk in ordered_chunks({_stored(member) for member in members}, key=lambda pair: pair):
        rows = [
            {
                "environment_id": environment_id,
                "audience_key": audience_key,
                "user_id": user_id,
                "tenant": tenant,
                "inserted_at": now,
            }
            for user_id, tenant in chunk
        ]
        added.extend(
            NewMembership(row.pk, now, row.user_id, _tenant(row.tenant))
            for row in await connection.execute(statement, rows)
        )
    return added


async def remove_memberships(
    connection: AsyncConnection, environment_id: str, audience_key: str, members: Iterable[MemberKey]
) -> list[MemberKey]:
    """Delete the memberships matching both user and tenant; returns those that existed."""
    removed: list[MemberKey] = []
    c = audience_members.c
    for chunk in ordered_chunks(set(map(_stored, members)), key=lambda pair: pair):
        rows = await connection.execute(
            audience_members.delete()
            .where(
                c.environment_id == environment_id,
                c.audience_key == audience_key,
                sa.tuple_(c.user_id, c.tenant).in_(chunk),
            )
            .returning(c.user_id, c.tenant)
        )
        removed.extend(MemberKey(row.user_id, _tenant(row.tenant)) for row in rows)
    return removed


async def tenantless_memberships(
    connection: AsyncConnection, environment_id: str, user_ids: Iterable[str], audience_keys: Iterable[str]
) -> set[tuple[str, str]]:
    """The (audience key, user id) pairs among `audience_keys` and `user_ids` with a membership without a
    tenant: what membership means where no tenant applies (a dynamic audience's segments)."""
    keys = sorted(set(audience_keys))
    if not keys:
        return set()
    c = audience_members.c
    found: set[tuple[str, str]] = set()
    for chunk in ordered_chunks(set(user_ids), key=lambda user_id: (user_id,)):
        rows = await connection.execute(
            sa.select(c.audience_key, c.user_id).where(
                c.environment_id == environment_id,
                c.user_id.in_(chunk),
                c.audience_key.in_(keys),
                c.tenant == NO_TENANT,
            )
        )
        found.update((row.audience_key, row.user_id) for row in rows)
    return found


async def drop_tenantless_memberships(
    connection: AsyncConnection, environment_id: str, pairs: Iterable[tuple[str, str]]
) -> None:
    """Delete the memberships without a tenant of the (audience key, user id) pairs."""
    c = audience_members.c
    for chunk in ordered_chunks(set(pairs), key=lambda pair: pair):
        await connection.execute(
            audience_members.delete().where(
                c.environment_id == environment_id,
                c.tenant == NO_TENANT,
                sa.tuple_(c.audience_key, c.user_id).in_(chunk),
            )
        )


async def dynamic_audiences(connection: AsyncConnection, environment_id: str) -> dict[str, dict[str, Any]]:
    """The environment's dynamic audiences: key → the document each was pushed from."""
    rows = await connection.execute(
        sa.select(audiences.c.key, audiences.c.definition).where(
            audiences.c.environment_id == environment_id, audiences.c.type == AudienceType.DYNAMIC.value
        )
    )
    return {row.key: row.definition for row in rows}


async def audience_types(
    connection: AsyncConnection, environment_id: str, keys: Iterable[str]
) -> dict[str, AudienceType]:
    """The type of each audience of `keys` the environment has."""
    rows = await connection.execute(
        sa.select(audiences.c.key, audiences.c.type).where(
            audiences.c.environment_id == environment_id, audiences.c.key.in_(sorted(set(keys)))
        )
    )
    return {row.key: AudienceType(row.type) for row in rows}


async def commit_audiences(
    connection: AsyncConnection, environment_id: str, documents: Sequence[AudienceDocument]
) -> list[AudienceCommit]:
    """Create or update the audiences of `documents` in the caller's transaction; one whose document is
    unchanged is left alone. Raises `ConflictError` for an audience that exists with the other type
    (Knock's types never change), before writing anything."""
    keys = [document.key for document in documents]
    existing = {
        row.key: row
        for row in await connection.execute(
            sa.select(audiences.c.key, audiences.c.type, audiences.c.sha).where(
                audiences.c.environment_id == environment_id, audiences.c.key.in_(sorted(set(keys)))
            )
        )
    }
    for document in documents:
        found = existing.get(document.key)
        if found is not None and found.type != document.type.value:
            raise ConflictError(
                f"The audience {document.key!r} is {found.type}; an audience's type cannot be changed"
            )
    commits: list[AudienceCommit] = []
    now = utcnow()
    for document in sorted(documents, key=lambda document: document.key):
        found = existing.get(document.key)
        changed = found is None or found.sha != document.sha
        if changed:
            await connection.execute(
                dialect.upsert(
                    audiences,
                    connection.dialect.name,
                    [
                        {
                            "environment_id": environment_id,
                            "key": document.key,
                            "inserted_at": now,
                            "type": document.type.value,
                            "definition": document.document,
                            "sha": document.sha,
                        }
                    ],
                    conflict=["environment_id", "key"],
                    update=["definition", "sha"],
                )
            )
        commits.append(AudienceCommit(document.key, document.type, changed))
    return commits


async def add_static_members(
    connection: AsyncConnection,
    rules: MembershipRules,
    environment_id: str,
    audience_key: str,
    members: Sequence[MemberKey],
) -> list[NewMembership]:
    """Add members, whose users exist, to a static audience in the caller's transaction, and fire its
    entry workflows for the new memberships (`rules` asked for with `adding_members`); the dynamic
    audiences that ask about this one follow. Returns the new memberships. Raises `NotFoundError` for an
    unknown audience and `InvalidInputError` for a dynamic one. What `POST /v1/audiences/{key}/members`
    and a workflow's update-audience step do."""
    await require_static(connection, environment_id, audience_key)
    added = await add_memberships(connection, environment_id, audience_key, members)
    await rules.members_added(connection, audience_key, added)
    if rules.follows_users:
        keys = {RecipientKey.user(member.user_id) for member in members}
        users = await load_recipients(connection, environment_id, keys, lock=True)
        await rules.users_written(connection, list(users.values()))
    return added


async def remove_static_members(
    connection: AsyncConnection,
    rules: MembershipRules,
    environment_id: str,
    audience_key: str,
    members: Sequence[MemberKey],
) -> list[MemberKey]:
    """Remove members from a static audience in the caller's transaction, those matching both user and
    tenant; the dynamic audiences that ask about this one follow. Returns the memberships that existed.
    Raises `NotFoundError` for an unknown audience and `InvalidInputError` for a dynamic one. What
    `DELETE /v1/audiences/{key}/members` and a workflow's update-audience step do."""
    await require_static(connection, environment_id, audience_key)
    users: list[RecipientRecord] = []
    if rules.follows_users:
        # A dynamic audience may ask whether its users are members of this one. The users are locked
        # before any membership, as every writer of users takes them, and read as they stand: an
        # identify of one of them commits first, or waits.
        keys = {RecipientKey.user(member.user_id) for member in members}
        users = list((await load_recipients(connection, environment_id, keys, lock=True)).values())
    removed = await remove_memberships(connection, environment_id, audience_key, members)
    await rules.users_written(connection, users)
    return removed


async def audience_type(connection: AsyncConnection, environment_id: str, audience_key: str) -> AudienceType:
    """The audience's type; raises `NotFoundError` when the environment has no such audience."""
    found = await connection.scalar(
        sa.select(audiences.c.type).where(
            audiences.c.environment_id == environment_id, audiences.c.key == audience_key
        )
    )
    if found is None:
        raise NotFoundError(f"The audience {audience_key!r} was not found")
    return AudienceType(found)


async def require_static(connection: AsyncConnection, environment_id: str, audience_key: str) -> None:
    """Raise unless the environment has this audience and it is static (its members are not computed)."""
    if await audience_type(connection, environment_id, audience_key) is AudienceType.DYNAMIC:
        raise dynamic_audience_error(audience_key)


def dynamic_audience_error(audience_key: str) -> InvalidInputError:
    return InvalidInputError(
        f"The audience {audience_key!r} is dynamic: its members are the users whose properties match its "
        "segments, and cannot be added or removed",
        errors=[FieldError("members", "cannot be changed on a dynamic audience")],
    )


class AudienceStore:
    def __init__(self, database: Database, rulebook: MembershipRulebook = NO_RULES) -> None:
        self.database = database
        self.rulebook = rulebook

    async def add_members(
        self,
        environment_id: str,
        audience_key: str,
        members: Sequence[AudienceMemberInput],
        *,
        create_audience: bool = False,
    ) -> None:
        rules = await self.rulebook.rules(environment_id, adding_members=True)
        async with self.database.writer.begin() as connection:
            if create_audience:
                await connection.execute(
                    dialect.insert_ignore(
                        audiences,
                        connection.dialect.name,
                        {
                            "environment_id": environment_id,
                            "key": audience_key,
                            "inserted_at": utcnow(),
                            "type": AudienceType.STATIC.value,
                        },
                        conflict=["environment_id", "key"],
                    )
                )
            # Checked before the users are written, though the add checks it again: a refused add writes
            # nothing anyway, but should not first identify a thousand users for nothing.
            await require_static(connection, environment_id, audience_key)
            await upsert_users(
                connection,
                environment_id,
                [(member.key.user_id, member.properties, member.inline) for member in members],
            )
            # The dynamic audiences follow the users, as just written, once the memberships are in: one
            # may ask whether they are members of this audience.
            await add_static_members(
                connection, rules, environment_id, audience_key, [m.key for m in members]
            )

    async def remove_members(
        self, environment_id: str, audience_key: str, members: Sequence[MemberKey]
    ) -> int:
        """Remove the memberships matching both user and tenant; returns how many existed."""
        rules = await self.rulebook.rules(environment_id)
        async with self.database.writer.begin() as connection:
            removed = await remove_static_members(connection, rules, environment_id, audience_key, members)
        return len(removed)

    async def page_members(
        self, environment_id: str, audience_key: str, page: PageRequest
    ) -> tuple[list[AudienceMemberRecord], Page]:
        query = sa.select(audience_members).where(
            audience_members.c.environment_id == environment_id,
            audience_members.c.audience_key == audience_key,
        )
        async with self.database.reader.connect() as connection:
            await audience_type(connection, environment_id, audience_key)
            result = await fetch_page(connection, query, audience_members.c.pk, page)
            found = await load_recipients(
                connection, environment_id, (RecipientKey.user(row.user_id) for row in result.rows)
            )
        records = [
            AudienceMemberRecord(
                user_id=row.user_id,
                tenant=_tenant(row.tenant),
                added_at=row.inserted_at,
                user=found.get(RecipientKey.user(row.user_id)),
            )
            for row in result.rows
        ]
        return records, result

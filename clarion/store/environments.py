"""Environments and their API keys: the tenancy boundary of every other table.

A secret key (`sk_…`) may call every endpoint; a publishable key (`pk_…`) only the client-side subset
(that rule lives in `clarion.api.auth`). Revoked keys stay in the table so `keys list` can show them.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from clarion.errors import ConflictError, NotFoundError
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.tables import api_keys, environments


class KeyKind(StrEnum):
    SECRET = "secret"
    PUBLISHABLE = "publishable"

    @property
    def prefix(self) -> str:
        return "sk_" if self is KeyKind.SECRET else "pk_"


@dataclass(frozen=True)
class Environment:
    id: str
    name: str


@dataclass(frozen=True)
class ApiKey:
    id: str
    environment: Environment
    kind: KeyKind
    key: str
    revoked: bool


def new_key(kind: KeyKind) -> str:
    return kind.prefix + secrets.token_urlsafe(32)


class EnvironmentStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(self, name: str) -> Environment:
        environment = Environment(id=str(uuid.uuid4()), name=name)
        now = utcnow()
        async with self.database.writer.begin() as connection:
            exists = await connection.scalar(sa.select(environments.c.id).where(environments.c.name == name))
            if exists is not None:
                raise ConflictError(f"An environment named {name!r} already exists")
            await connection.execute(
                environments.insert().values(id=environment.id, name=name, inserted_at=now)
            )
            for kind in KeyKind:
                await connection.execute(
                    api_keys.insert().values(
                        id=str(uuid.uuid4()),
                        environment_id=environment.id,
                        kind=kind.value,
                        key=new_key(kind),
                        inserted_at=now,
                    )
                )
        return environment

    async def get_by_name(self, name: str) -> Environment | None:
        async with self.database.reader.connect() as connection:
            row = (
                await connection.execute(sa.select(environments).where(environments.c.name == name))
            ).first()
        return Environment(id=row.id, name=row.name) if row else None

    async def all(self) -> list[Environment]:
        async with self.database.reader.connect() as connection:
            rows = await connection.execute(sa.select(environments).order_by(environments.c.inserted_at))
            return [Environment(id=row.id, name=row.name) for row in rows]

    async def ensure(self, name: str) -> tuple[Environment, bool]:
        """The environment called `name`, created with one key of each kind if it does not exist yet."""
        existing = await self.get_by_name(name)
        if existing is not None:
            return existing, False
        try:
            return await self.create(name), True
        except ConflictError:
            # Another process created it between our read and our write.
            created = await self.get_by_name(name)
            assert created is not None
            return created, False

    async def create_key(self, environment_name: str, kind: KeyKind) -> ApiKey:
        environment = await self.get_by_name(environment_name)
        if environment is None:
            raise NotFoundError(f"No environment named {environment_name!r}")
        key = ApiKey(str(uuid.uuid4()), environment, kind, new_key(kind), revoked=False)
        async with self.database.writer.begin() as connection:
            await connection.execute(
                api_keys.insert().values(
                    id=key.id,
                    environment_id=environment.id,
                    kind=kind.value,
                    key=key.key,
                    inserted_at=utcnow(),
                )
            )
        return key

    async def revoke_key(self, key: str) -> None:
        async with self.database.writer.begin() as connection:
            result = await connection.execute(
                api_keys.update()
                .where(api_keys.c.key == key, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        if result.rowcount == 0:
            raise NotFoundError("No active key matches")

    async def list_keys(self) -> list[ApiKey]:
        query = (
            sa.select(api_keys, environments.c.name)
            .join(environments, environments.c.id == api_keys.c.environment_id)
            .order_by(environments.c.inserted_at, api_keys.c.kind.desc(), api_keys.c.inserted_at)
        )
        async with self.database.reader.connect() as connection:
            return [self._key(row) for row in await connection.execute(query)]

    async def find_key(self, key: str) -> ApiKey | None:
        query = (
            sa.select(api_keys, environments.c.name)
            .join(environments, environments.c.id == api_keys.c.environment_id)
            .where(api_keys.c.key == key)
        )
        async with self.database.reader.connect() as connection:
            row = (await connection.execute(query)).first()
        return self._key(row) if row else None

    @staticmethod
    def _key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
        m = row._mapping
        return ApiKey(
            id=m["id"],
            environment=Environment(id=m["environment_id"], name=m["name"]),
            kind=KeyKind(m["kind"]),
            key=m["key"],
            revoked=m["revoked_at"] is not None,
        )

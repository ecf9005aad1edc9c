"""Environments and their API keys: the tenancy boundary of every other table.

A secret key (`sk_…`) may call every endpoint; a publishable key (`pk_…`) only the client-side subset
(that rule lives in `clarion.api.auth`). Revoked keys stay in the table so `keys list` can show them.

Each environment also carries the settings of Knock's client authentication: the RSA public key that
verifies signed user tokens and the enhanced-security flag. They ride on every `ApiKey` so the key cache
of `clarion.api.auth` serves them without a query; verification lives in `clarion.api.user_tokens`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from clarion.errors import ConflictError, InvalidInputError, NotFoundError
from clarion.store import dialect
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
    signing_public_key: str | None = None
    enhanced_security: bool = False


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
        """A new environment with one key of each kind; `ConflictError` when the name is taken."""
        created = await self._insert(name)
        if created is None:
            raise ConflictError(f"An environment named {name!r} already exists")
        return created

    async def _insert(self, name: str) -> Environment | None:
        """Insert the environment and its keys in one transaction, or nothing when one of that name exists
        (None). The insert skips a conflicting name instead of failing on it: processes starting together
        all ensure the same environments, and a read-then-insert lets two of them both insert."""
        environment = Environment(id=str(uuid.uuid4()), name=name)
        now = utcnow()
        async with self.database.writer.begin() as connection:
            inserted = await connection.execute(
                dialect.insert_ignore(
                    environments,
                    self.database.dialect_name,
                    {"id": environment.id, "name": name, "enhanced_security": False, "inserted_at": now},
                    conflict=["name"],
                ).returning(environments.c.id)
            )
            if inserted.first() is None:
                return None
            await connection.execute(
                api_keys.insert(),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "environment_id": environment.id,
                        "kind": kind.value,
                        "key": new_key(kind),
                        "inserted_at": now,
                    }
                    for kind in KeyKind
                ],
            )
        return environment

    async def get_by_name(self, name: str) -> Environment | None:
        async with self.database.reader.connect() as connection:
            row = (
                await connection.execute(sa.select(environments).where(environments.c.name == name))
            ).first()
        return _environment(row._mapping) if row else None

    async def all(self) -> list[Environment]:
        async with self.database.reader.connect() as connection:
            rows = await connection.execute(sa.select(environments).order_by(environments.c.inserted_at))
            return [_environment(row._mapping) for row in rows]

    async def ensure(self, name: str) -> tuple[Environment, bool]:
        """The environment called `name`, created with one key of each kind if it does not exist yet; True
        when this call created it. Safe to call from any number of processes at once."""
        existing = await self.get_by_name(name)
        if existing is not None:
            return existing, False
        created = await self._insert(name)
        if created is not None:
            return created, True
        # Another process inserted it after our read; its transaction has committed by now.
        winner = await self.get_by_name(name)
        assert winner is not None, "environments are never deleted"
        return winner, False

    async def set_signing_key(self, name: str, public_key_pem: str) -> Environment:
        """Set the PEM-encoded RSA public key that verifies the environment's signed user tokens."""
        try:
            loaded = load_pem_public_key(public_key_pem.encode())
        except ValueError as exc:
            raise InvalidInputError("The signing key is not a PEM-encoded public key") from exc
        if not isinstance(loaded, RSAPublicKey):
            raise InvalidInputError("The signing key must be an RSA public key (user tokens are RS256)")
        return await self._update(name, signing_public_key=public_key_pem.strip() + "\n")

    async def set_enhanced_security(self, name: str, enabled: bool) -> Environment:
        """Turn enhanced security on (publishable-key requests need a signed user token) or off."""
        return await self._update(name, enhanced_security=enabled)

    async def _update(self, name: str, **values: object) -> Environment:
        async with self.database.writer.begin() as connection:
            row = (
                await connection.execute(
                    environments.update()
                    .where(environments.c.name == name)
                    .values(**values)
                    .returning(*environments.c)
                )
            ).first()
        if row is None:
            raise NotFoundError(f"No environment named {name!r}")
        return _environment(row._mapping)

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
            sa.select(api_keys, *_ENVIRONMENT_SETTINGS)
            .join(environments, environments.c.id == api_keys.c.environment_id)
            .order_by(environments.c.inserted_at, api_keys.c.kind.desc(), api_keys.c.inserted_at)
        )
        async with self.database.reader.connect() as connection:
            return [self._key(row) for row in await connection.execute(query)]

    async def find_key(self, key: str) -> ApiKey | None:
        query = (
            sa.select(api_keys, *_ENVIRONMENT_SETTINGS)
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
            environment=Environment(
                id=m["environment_id"],
                name=m["name"],
                signing_public_key=m["signing_public_key"],
                enhanced_security=bool(m["enhanced_security"]),
            ),
            kind=KeyKind(m["kind"]),
            key=m["key"],
            revoked=m["revoked_at"] is not None,
        )


# The environment columns joined onto each key, so a resolved key knows its environment's settings.
_ENVIRONMENT_SETTINGS = (
    environments.c.name,
    environments.c.signing_public_key,
    environments.c.enhanced_security,
)


def _environment(m: sa.RowMapping) -> Environment:
    return Environment(
        id=m["id"],
        name=m["name"],
        signing_public_key=m["signing_public_key"],
        enhanced_security=bool(m["enhanced_security"]),
    )

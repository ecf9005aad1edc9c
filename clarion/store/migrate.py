"""Bring the store's schema up to the newest Alembic revision; run at every start-up. And tell whether it
is there (`schema_is_current`, for `GET /readyz`).

Several API processes may start at once on PostgreSQL, so the upgrade holds an advisory lock; on SQLite
the writer's BEGIN IMMEDIATE serialises concurrent starters the same way.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from clarion.store.db import Database

_VERSION_TABLE = "alembic_version"  # Alembic's default, which `migrations/env.py` keeps
_MIGRATION_LOCK = 7_244_001  # arbitrary, constant advisory-lock id for "clarion schema upgrade"


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "clarion.store:migrations")
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest revision this release ships (read from its scripts once per process)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _applied_revisions(connection: sa.Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection).get_current_heads()


async def schema_is_current(database: Database) -> bool:
    """Whether the database's schema is at this release's newest revision (False for a database never
    migrated). Raises when the database cannot be read."""
    async with database.reader.connect() as connection:
        applied = await connection.run_sync(_applied_revisions)
    return applied == (head_revision(),)


def _upgrade(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _MIGRATION_LOCK})
    command.upgrade(_alembic_config(connection), "head")


async def holds_schema(database: Database) -> bool:
    """Whether migrations ever ran on this database, that is, whether it holds a Clarion store."""

    def version_table_exists(connection: sa.Connection) -> bool:
        return sa.inspect(connection).has_table(_VERSION_TABLE)

    async with database.reader.connect() as connection:
        return await connection.run_sync(version_table_exists)


async def migrate(database: Database) -> None:
    async with database.schema_transaction() as connection:
        await connection.run_sync(_upgrade)

"""Bring the store's schema up to the newest Alembic revision; run at every start-up.

Several API processes may start at once on PostgreSQL, so the upgrade holds an advisory lock; on SQLite
the writer's BEGIN IMMEDIATE serialises concurrent starters the same way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from clarion.store.db import Database

_MIGRATION_LOCK = 7_244_001  # arbitrary, constant advisory-lock id for "clarion schema upgrade"


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "clarion.store:migrations")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _MIGRATION_LOCK})
    command.upgrade(_alembic_config(connection), "head")


async def migrate(database: Database) -> None:
    async with database.schema_transaction() as connection:
        await connection.run_sync(_upgrade)

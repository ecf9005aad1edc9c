"""build_runtime(settings): the one place that picks the store dialect and, with it, its companions.

The database URL decides everything that differs between the embedded and the scale-out setup: the
SQLite file or PostgreSQL, the rate-limit counter (in-process or shared table). Routes and CLI commands
receive the resulting `Runtime` and never look at the dialect themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from clarion.api.auth import KeyResolver
from clarion.api.ratelimit import MemoryRateCounter, RateCounter, RateLimiter
from clarion.config import Settings
from clarion.store.db import Database, create_database
from clarion.store.environments import EnvironmentStore
from clarion.store.migrate import migrate
from clarion.store.objects import ObjectStore
from clarion.store.rate_limits import DatabaseRateCounter
from clarion.store.users import UserStore


@dataclass
class Runtime:
    settings: Settings
    database: Database
    environments: EnvironmentStore
    keys: KeyResolver
    rate_limiter: RateLimiter
    users: UserStore
    objects: ObjectStore

    async def close(self) -> None:
        await self.database.dispose()


async def build_runtime(settings: Settings, *, apply_migrations: bool = True) -> Runtime:
    database = create_database(settings.resolved_database_url)
    if apply_migrations:
        await migrate(database)
    counter: RateCounter = (
        DatabaseRateCounter(database) if database.dialect_name == "postgresql" else MemoryRateCounter()
    )
    environments = EnvironmentStore(database)
    return Runtime(
        settings=settings,
        database=database,
        environments=environments,
        keys=KeyResolver(environments, settings.key_cache_seconds),
        rate_limiter=RateLimiter(settings.rate_limit_mode, counter),
        users=UserStore(database),
        objects=ObjectStore(database),
    )

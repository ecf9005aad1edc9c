"""SQLite's writes on the writer's bare driver connection (`Database.write_on_driver`): a transaction of
their own, committed when the work returns and rolled back, leaving nothing, when it raises."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
import sqlalchemy as sa

from clarion.errors import NotFoundError
from clarion.runtime import Runtime

INSERT_USER = (
    "INSERT INTO users (environment_id, id, properties, inserted_at, updated_at) "
    "VALUES (?, ?, '{}', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
)


@pytest.fixture
def sqlite_only(runtime: Runtime) -> None:
    if runtime.database.dialect_name != "sqlite":
        pytest.skip("only SQLite writes on the driver; PostgreSQL's single statements run in autocommit")


async def test_work_is_committed(runtime: Runtime, sqlite_only: None) -> None:
    environment = await runtime.environments.create(f"driver-{uuid.uuid4().hex[:8]}")

    def insert(connection: sqlite3.Connection) -> int:
        return connection.execute(INSERT_USER, (environment.id, "ada")).rowcount

    assert await runtime.database.write_on_driver(insert) == 1
    assert (await runtime.users.get(environment.id, "ada")).id == "ada"


async def test_work_that_raises_leaves_nothing_and_the_writer_goes_on(
    runtime: Runtime, sqlite_only: None
) -> None:
    environment = await runtime.environments.create(f"driver-{uuid.uuid4().hex[:8]}")

    def insert_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute(INSERT_USER, (environment.id, "bob"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await runtime.database.write_on_driver(insert_then_fail)
    with pytest.raises(NotFoundError):
        await runtime.users.get(environment.id, "bob")
    await runtime.users.identify(environment.id, "cy", {"name": "Cy"})
    assert (await runtime.users.get(environment.id, "cy")).properties == {"name": "Cy"}


async def test_the_drivers_errors_arrive_as_sqlalchemys(runtime: Runtime, sqlite_only: None) -> None:
    environment = await runtime.environments.create(f"driver-{uuid.uuid4().hex[:8]}")

    def insert_twice(connection: sqlite3.Connection) -> None:
        connection.execute(INSERT_USER, (environment.id, "dee"))
        connection.execute(INSERT_USER, (environment.id, "dee"))

    with pytest.raises(sa.exc.IntegrityError):
        await runtime.database.write_on_driver(insert_twice)
    with pytest.raises(NotFoundError):
        await runtime.users.get(environment.id, "dee")

"""The store's translation of the database's refusals, on real errors from each store."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from clarion.errors import ClarionError, InvalidInputError
from clarion.runtime import Runtime
from clarion.store.errors import DataRefusedError, refused_data


async def write_refused(runtime: Runtime, value: str) -> None:
    """Write `value` twice into a table whose key it is, in a transaction that never commits."""
    async with runtime.database.writer.begin() as connection:
        with refused_data():
            await connection.execute(sa.text("CREATE TEMPORARY TABLE refusal (id TEXT PRIMARY KEY)"))
            for _ in range(2):
                await connection.execute(sa.text("INSERT INTO refusal VALUES (:id)"), {"id": value})


async def test_a_broken_constraint_is_refused_data(runtime: Runtime) -> None:
    with pytest.raises(DataRefusedError) as raised:
        await write_refused(runtime, "twice")
    assert isinstance(raised.value, InvalidInputError)
    assert isinstance(raised.value.__cause__, sqlalchemy.exc.IntegrityError)


async def test_a_value_the_database_cannot_store_is_refused_data(runtime: Runtime) -> None:
    if runtime.database.dialect_name == "sqlite":
        pytest.skip("SQLite stores the NUL character")
    with pytest.raises(DataRefusedError) as raised:
        await write_refused(runtime, "a\x00b")
    assert isinstance(raised.value.__cause__, sqlalchemy.exc.DBAPIError)


async def test_other_failures_pass_through_unchanged(runtime: Runtime) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        async with runtime.database.reader.connect() as connection:
            with refused_data():
                await connection.execute(sa.text("SELECT * FROM no_such_table"))
    assert not isinstance(raised.value, ClarionError)

"""Bulk inserts write every row as given, with the values they share, skip rows whose key is taken (by the
table or by an earlier row of the same batch) and return the keys of exactly the rows they inserted, on
both stores (SQLite's `executemany` reports no rows, so its result is worked out from the count)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store.bulk_insert import BulkInsert
from clarion.store.dialect import JSONType
from clarion.store.tables import RowId, UTCDateTime

scratch = sa.MetaData()
items = sa.Table(
    "bulk_insert_items",
    scratch,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    sa.Column("batch", sa.String(36), nullable=False),
    sa.Column("key", sa.String(32), nullable=False, unique=True),
    sa.Column("document", JSONType),
    sa.Column("count", sa.Integer),
    sa.Column("note", sa.String(32)),
    sa.Column("at", UTCDateTime, nullable=False),
)
INSERT = BulkInsert(items, shared=["batch", "at"], skip_conflicts_on=["key"], returning="key")
PLAIN = BulkInsert(items, shared=["batch", "at"])
NOTED = BulkInsert(items, shared=["batch", "at", "note"])
UNCOUNTED = BulkInsert(items, shared=["batch", "at"], unset=["count", "note"])
AT = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def table(runtime: Runtime) -> AsyncIterator[None]:
    async with runtime.database.writer.begin() as connection:
        await connection.run_sync(scratch.create_all)
    try:
        yield
    finally:
        async with runtime.database.writer.begin() as connection:
            await connection.run_sync(scratch.drop_all)


def row(key: str, **values: Any) -> dict[str, Any]:
    return {
        "key": key,
        "document": values.get("document"),
        "count": values.get("count"),
        "note": values.get("note"),
    }


async def insert(runtime: Runtime, inserter: BulkInsert, rows: list[dict[str, Any]], batch: str) -> list[Any]:
    async with runtime.database.writer.begin() as connection:
        return await inserter.insert(connection, rows, batch=batch, at=AT)


async def stored(runtime: Runtime) -> list[dict[str, Any]]:
    query = sa.select(
        items.c.batch, items.c.key, items.c.document, items.c.count, items.c.note, items.c.at
    ).order_by(items.c.pk)
    async with runtime.database.reader.connect() as connection:
        return [dict(r._mapping) for r in await connection.execute(query)]


async def test_rows_are_written_as_given_with_their_shared_values(runtime: Runtime, table: None) -> None:
    batch = str(uuid.uuid4())
    rows = [
        row(
            "a", document={"nested": [1, "two", None], "text": 'quote " and \\ slash', "big": 2**70}, count=7
        ),
        row("b", document=None, count=None),
        row("c", document=[], count=-(2**30)),
    ]
    assert await insert(runtime, INSERT, rows, batch) == ["a", "b", "c"]
    assert await stored(runtime) == [{"batch": batch, "at": AT, **r} for r in rows]


async def test_taken_keys_are_skipped_and_only_inserted_keys_returned(runtime: Runtime, table: None) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert await insert(runtime, INSERT, [row("b", count=1), row("d", count=1)], first) == ["b", "d"]
    again = [row("a", count=2), row("b", count=2), row("c", count=2), row("a", count=3), row("d", count=2)]
    assert await insert(runtime, INSERT, again, second) == ["a", "c"]
    assert [(r["key"], r["count"], r["batch"]) for r in await stored(runtime)] == [
        ("b", 1, first),
        ("d", 1, first),
        ("a", 2, second),
        ("c", 2, second),
    ]
    assert await insert(runtime, INSERT, [row("a"), row("c")], second) == []
    assert await insert(runtime, INSERT, [], second) == []
    assert len(await stored(runtime)) == 4


async def test_without_returning_nothing_is_returned(runtime: Runtime, table: None) -> None:
    later = AT + timedelta(days=1)
    async with runtime.database.writer.begin() as connection:
        assert await PLAIN.insert(connection, [row("x", count=1)], batch="b", at=later) == []
    assert [(r["key"], r["at"]) for r in await stored(runtime)] == [("x", later)]


async def test_a_failing_insert_changes_nothing(runtime: Runtime, table: None) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        await insert(runtime, PLAIN, [row("x"), row("x")], str(uuid.uuid4()))
    assert await stored(runtime) == []


async def test_rows_sharing_a_document_each_store_it(runtime: Runtime, table: None) -> None:
    shared = {"trigger": {"n": 1}}
    rows = [row("a", document=shared), row("b", document=shared), row("c", document={"other": True})]
    await insert(runtime, INSERT, rows, str(uuid.uuid4()))
    assert [r["document"] for r in await stored(runtime)] == [shared, shared, {"other": True}]


async def test_a_shared_null_and_the_columns_left_unset_are_stored_as_null(
    runtime: Runtime, table: None
) -> None:
    """On SQLite a NULL shared by every row is left out of the statement rather than bound for each."""
    async with runtime.database.writer.begin() as connection:
        await NOTED.insert(
            connection, [{"key": "a", "document": None, "count": 1}], batch="b", at=AT, note=None
        )
        await NOTED.insert(
            connection, [{"key": "b", "document": None, "count": 2}], batch="b", at=AT, note="n"
        )
        await UNCOUNTED.insert(connection, [{"key": "c", "document": {"d": 1}}], batch="b", at=AT)
    assert [(r["key"], r["count"], r["note"], r["document"]) for r in await stored(runtime)] == [
        ("a", 1, None, None),
        ("b", 2, "n", None),
        ("c", None, None, {"d": 1}),
    ]

"""SQLite's write-ahead log is checkpointed by a thread of the `Database`, not by the commits of its
writer (`clarion.store.wal_checkpointer`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from clarion.store.db import Database, create_database
from clarion.store.wal_checkpointer import WalCheckpointer

ROWS = 2_000
ROW_BYTES = 4_000
"""About 8 MB in one transaction: twice the log at which SQLite would checkpoint by itself."""


def checkpointer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "clarion-wal-checkpointer"]


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = create_database(f"sqlite+aiosqlite:///{tmp_path / 'clarion.db'}")
    try:
        yield database
    finally:
        await database.dispose()


async def write_rows(database: Database) -> None:
    async with database.writer.begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (n INTEGER, body TEXT)")
        await connection.exec_driver_sql(
            "INSERT INTO filler VALUES (?, ?)", [(n, "x" * ROW_BYTES) for n in range(ROWS)]
        )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


async def test_a_large_commit_is_copied_into_the_database_file_by_the_thread(
    database: Database, tmp_path: Path
) -> None:
    file = tmp_path / "clarion.db"
    await write_rows(database)
    # The writer's own automatic checkpoint waits for a log eight times as large: only the thread copies.
    wait_for(lambda: file.stat().st_size >= ROWS * ROW_BYTES, "the log was never checkpointed")
    async with database.reader.connect() as connection:
        assert (await connection.scalar(sa.text("SELECT count(*) FROM filler"))) == ROWS


async def test_a_database_that_only_reads_starts_no_thread(database: Database) -> None:
    before = len(checkpointer_threads())
    async with database.reader.connect() as connection:
        assert (await connection.scalar(sa.text("SELECT 1"))) == 1
    assert len(checkpointer_threads()) == before


async def test_dispose_ends_the_thread_and_keeps_the_data(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'clarion.db'}"
    before = set(checkpointer_threads())
    database = create_database(url)
    await write_rows(database)
    [started] = set(checkpointer_threads()) - before
    await database.dispose()
    assert not started.is_alive()
    reopened = create_database(url)
    try:
        async with reopened.reader.connect() as connection:
            assert (await connection.scalar(sa.text("SELECT count(*) FROM filler"))) == ROWS
    finally:
        await reopened.dispose()


def test_a_failing_checkpoint_is_logged_and_tried_again_at_the_next_nudge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_database = tmp_path / "garbage.db"
    not_a_database.write_bytes(b"this is not an SQLite file" * 100)
    checkpointer = WalCheckpointer(str(not_a_database), pause=0)
    caplog.set_level(logging.WARNING, logger="clarion.store.wal_checkpointer")

    def failures() -> int:
        return sum("WAL checkpoint" in record.getMessage() for record in caplog.records)

    try:
        checkpointer.nudge()
        wait_for(lambda: failures() == 1, "the first failure was not logged")
        checkpointer.nudge()
        wait_for(lambda: failures() == 2, "the second nudge did not try again")
    finally:
        checkpointer.stop()
    assert "not a database" in caplog.records[0].getMessage()

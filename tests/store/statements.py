"""Counting the SQL statements a store call sends, to check that it stays the same whatever the number of
items (one statement per kind, not one per item)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from clarion.store.db import Database


@dataclass
class Counted:
    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def count_statements(database: Database) -> Iterator[Counted]:
    """The statements sent through the database's writer and reader engines while the block runs."""
    counted = Counted()

    def before_cursor_execute(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        counted.statements.append(statement)

    engines = {id(engine.sync_engine): engine.sync_engine for engine in (database.writer, database.reader)}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield counted
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", before_cursor_execute)

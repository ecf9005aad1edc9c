"""Many rows of one table in one statement compiled once: INSERT … SELECT from the rows bound as a fixed set
of parameters (`clarion.store.dialect.bound_rows`) [ON CONFLICT DO NOTHING] [RETURNING], run on the driver
in the caller's transaction.

A multi-row VALUES insert is compiled afresh for every batch size, and SQLAlchemy handles each of its
parameters in Python: for the hundreds of runs, messages and events a trigger's fan-out writes, that cost
several times the database's own work. Here each row's values travel as text (JSON documents as their
JSON, numbers and timestamps as their text form, cast back in the statement), and the values every row
shares (the environment, the time) are bound once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect, json_codec
from clarion.store.batching import ROWS_PER_STATEMENT, chunks
from clarion.store.direct import DirectQuery, execute_in, fetch_in
from clarion.store.tables import UTCDateTime

_RowParameters = Callable[[Sequence[Sequence[str | None]]], dict[str, Any]]


class BulkInsert:
    def __init__(
        self,
        table: sa.Table,
        *,
        shared: Sequence[str] = (),
        skip_conflicts_on: Sequence[str] | None = None,
        returning: str | None = None,
    ) -> None:
        """Inserts rows of `table`: every column but its autoincrement key, those in `shared` given once
        for all rows. Rows conflicting on the unique key `skip_conflicts_on` are skipped; `returning`
        names the column whose values of the inserted rows `insert` returns."""
        self.table = table
        self.shared = tuple(shared)
        self.row_columns = tuple(
            column.name
            for column in table.columns
            if column.name not in self.shared and not (column.primary_key and column.autoincrement is True)
        )
        self.skip_conflicts_on = skip_conflicts_on
        self.returning = returning
        self._queries: dict[str, tuple[DirectQuery, _RowParameters]] = {}

    def _column_source(self, column: sa.Column[Any], text: sa.ColumnElement[Any], dialect_name: str) -> Any:
        if isinstance(column.type, sa.JSON):
            return dialect.json_from_text(text, dialect_name)
        if isinstance(column.type, sa.Integer | UTCDateTime):
            return sa.cast(text, column.type)
        return text

    def _query(self, dialect_name: str) -> tuple[DirectQuery, _RowParameters]:
        cached = self._queries.get(dialect_name)
        if cached is not None:
            return cached
        rows, row_parameters = dialect.bound_rows(self.row_columns, dialect_name)
        values = {
            **{name: sa.bindparam(name, type_=self.table.c[name].type) for name in self.shared},
            **{
                name: self._column_source(self.table.c[name], rows.c[name], dialect_name)
                for name in self.row_columns
            },
        }
        names = [*self.shared, *self.row_columns]
        source = (
            sa.select(*(values[name] for name in names))
            .where(sa.true())  # SQLite reads "FROM … ON CONFLICT" as a join without it
            .order_by(rows.c.bound_row)
        )
        statement = dialect.insert(self.table, dialect_name).from_select(names, source)
        if self.skip_conflicts_on is not None:
            statement = statement.on_conflict_do_nothing(index_elements=list(self.skip_conflicts_on))
        if self.returning is not None:
            statement = statement.returning(self.table.c[self.returning])
        self._queries[dialect_name] = (DirectQuery(statement), row_parameters)
        return self._queries[dialect_name]

    def _to_text(self, name: str, sa_dialect: sa.Dialect) -> Callable[[Any], str] | None:
        """How a value of column `name` travels as text; None: as it is (text already)."""
        column_type = self.table.c[name].type
        if isinstance(column_type, sa.JSON):
            return json_codec.dumps
        if isinstance(column_type, UTCDateTime):
            return lambda value: str(column_type.process_bind_param(value, sa_dialect))
        if isinstance(column_type, sa.Integer):
            return str
        return None

    async def insert(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]], **shared: Any
    ) -> list[Any]:
        """Insert `rows` (column name → value, for every row column) with the `shared` values; returns
        the `returning` column of the rows inserted (empty without one)."""
        query, row_parameters = self._query(connection.dialect.name)
        columns = [(name, self._to_text(name, connection.dialect)) for name in self.row_columns]
        found: list[Any] = []
        for chunk in chunks(rows, ROWS_PER_STATEMENT // 2):
            texts = [
                [
                    value if convert is None or value is None else convert(value)
                    for name, convert in columns
                    for value in (row[name],)
                ]
                for row in chunk
            ]
            parameters = {**shared, **row_parameters(texts)}
            if self.returning is None:
                await execute_in(connection, query, parameters)
            else:
                found.extend(row[self.returning] for row in await fetch_in(connection, query, parameters))
        return found

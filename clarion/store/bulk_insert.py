"""Many rows of one table in one statement compiled once, run on the driver in the caller's transaction,
[ON CONFLICT DO NOTHING] [returning a column of the rows inserted].

A multi-row VALUES insert is compiled afresh for every batch size, and SQLAlchemy handles each of its
parameters in Python: for the hundreds of runs and messages a trigger's fan-out writes, that cost several
times the database's own work. So each dialect gets the form its driver runs fastest:

- PostgreSQL: INSERT … SELECT from the rows bound as one JSONB document, an array of each row's values
  (documents nested as they are, timestamps as text), taken apart by `jsonb_array_elements` and cast
  back per column; the values every row shares (the environment, the time) bound once; RETURNING gives
  the rows inserted. (An array per column, zipped by `unnest`, costs this process more in a fan-out:
  asyncpg checks every element of an array parameter as it encodes it.) `dialect.bound_rows`
  binds its rows the same way, as text only.
- SQLite: one prepared single-row INSERT run for every row by the driver's `executemany`, in C. (Rows
  bound as one JSON array read by `json_each` cost several times as much: the documents are escaped into
  the array and unescaped by SQLite.) `executemany` returns no rows, so the inserted rows are known from
  the count it reports: all of them, usually; after a conflict, those whose keys it assigned last, which
  are consecutive, since the caller's transaction holds the single writer's lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect, json_codec
from clarion.store.batching import ROWS_PER_STATEMENT, chunks
from clarion.store.direct import DirectQuery, execute_in, fetch_in
from clarion.store.tables import UTCDateTime

_Convert = Callable[[Any], Any] | None

PreparedRows = Callable[[AsyncConnection], Awaitable[list[Any]]]
"""Rows of one `BulkInsert`, bound: called with a connection, inserts them in its transaction and returns
the `returning` column of those inserted."""


class BulkInsert:
    def __init__(
        self,
        table: sa.Table,
        *,
        shared: Sequence[str] = (),
        unset: Sequence[str] = (),
        skip_conflicts_on: Sequence[str] | None = None,
        returning: str | None = None,
    ) -> None:
        """Inserts rows of `table`: every column but its autoincrement key and those in `unset`, which the
        rows leave NULL; those in `shared` given once for all rows. Rows conflicting on the unique key
        `skip_conflicts_on` are skipped; `returning` names the column whose values of the inserted rows
        `insert` returns."""
        self.table = table
        self.shared = tuple(shared)
        # Left out of a statement, a column takes its server default: NULL only where it has none.
        assert all(table.c[name].server_default is None for name in unset), "an unset column must be NULL"
        self._nullable_shared = tuple(name for name in self.shared if table.c[name].server_default is None)
        self.row_columns = tuple(
            column.name
            for column in table.columns
            if column.name not in self.shared
            and column.name not in unset
            and not (column.primary_key and column.autoincrement is True)
        )
        # SQLite tells the rows inserted by their keys (see above): an integer key that SQLite assigns.
        [self.row_key] = table.primary_key.columns
        assert isinstance(self.row_key.type, sa.Integer) and self.row_key.autoincrement is True
        assert returning is None or returning in self.row_columns, "only a column the rows give is returned"
        self.skip_conflicts_on = skip_conflicts_on
        self.returning = returning
        self._postgres: DirectQuery | None = None
        self._sqlite: dict[frozenset[str], tuple[str, tuple[str, ...], str | None]] = {}

    def _insert(self, dialect_name: str) -> Any:
        statement = dialect.insert(self.table, dialect_name)
        if self.skip_conflicts_on is None:
            return statement
        return statement.on_conflict_do_nothing(index_elements=list(self.skip_conflicts_on))

    def _postgres_query(self) -> DirectQuery:
        if self._postgres is not None:
            return self._postgres
        each = dialect.bound_json_elements("bound_rows")

        def source(index: int, name: str) -> Any:
            column_type = self.table.c[name].type
            place: sa.ColumnElement[int] = sa.literal_column(str(index))
            if isinstance(column_type, sa.JSON):
                # A JSON null is a missing document: SQL NULL, as a None bound on its own would be.
                return sa.func.nullif(each.c.value.op("->")(place), sa.literal_column("'null'::jsonb"))
            text = each.c.value.op("->>")(place)
            if isinstance(column_type, sa.Integer | UTCDateTime):
                return sa.cast(text, column_type)
            return text

        values = {
            **{name: sa.bindparam(name, type_=self.table.c[name].type) for name in self.shared},
            **{name: source(index, name) for index, name in enumerate(self.row_columns)},
        }
        names = [*self.shared, *self.row_columns]
        selected = sa.select(*(values[name] for name in names)).select_from(each).order_by(each.c.bound_row)
        statement = self._insert("postgresql").from_select(names, selected)
        if self.returning is not None:
            statement = statement.returning(self.table.c[self.returning])
        self._postgres = DirectQuery(statement)
        return self._postgres

    def _sqlite_statements(
        self, sa_dialect: sa.Dialect, left_null: frozenset[str]
    ) -> tuple[str, tuple[str, ...], str | None]:
        """The single-row INSERT of every column but those `left_null` and the names of its parameters in
        order; and, with a `returning` column, the query of it for the rows the last `executemany` of the
        INSERT inserted."""
        statements = self._sqlite.get(left_null)
        if statements is not None:
            return statements
        names = [name for name in (*self.shared, *self.row_columns) if name not in left_null]
        compiled = (
            self._insert("sqlite")
            .values({name: sa.bindparam(name) for name in names})
            .compile(dialect=sa_dialect)
        )
        inserted_sql = None
        if self.returning is not None:
            inserted = (
                sa.select(self.table.c[self.returning])
                .where(self.row_key > sa.func.last_insert_rowid() - sa.bindparam("count"))
                .order_by(self.row_key)
            )
            inserted_sql = inserted.compile(dialect=sa_dialect).string
        statements = self._sqlite[left_null] = (
            compiled.string,
            tuple(compiled.positiontup or ()),
            inserted_sql,
        )
        return statements

    def _converter(self, name: str, sa_dialect: sa.Dialect) -> _Convert:
        """How a value of column `name` is bound: JSON documents as their text, timestamps in the store's
        form. None: as it is."""
        column_type = self.table.c[name].type
        if isinstance(column_type, sa.JSON):
            # Told apart by identity, which holds while the rows, which hold the documents, live.
            return _once_each(json_codec.dumps, key=id)
        if isinstance(column_type, UTCDateTime):
            return _once_each(
                lambda value: str(column_type.process_bind_param(value, sa_dialect)),
                key=lambda value: value.astimezone(UTC),  # equal local times may be other instants
            )
        return None

    async def insert(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]], **shared: Any
    ) -> list[Any]:
        """Insert `rows` (column name → value, for every row column) with the `shared` values; returns
        the `returning` column of the rows inserted, in their order (empty without one)."""
        return await self.prepare(connection.dialect, rows, **shared)(connection)

    def prepare(
        self, sa_dialect: sa.Dialect, rows: Sequence[Mapping[str, Any]], **shared: Any
    ) -> PreparedRows:
        """The rows bound as `insert` binds them, to be written later: the binding is this process's
        work, and can be done while the database is busy with another statement."""
        if sa_dialect.name == "sqlite":
            return self._prepare_sqlite(sa_dialect, rows, shared)
        # Each row an array of its values: documents nested as they are, timestamps as their text.
        columns = [
            (
                name,
                None if isinstance(self.table.c[name].type, sa.JSON) else self._converter(name, sa_dialect),
            )
            for name in self.row_columns
        ]
        query = self._postgres_query()
        documents = [json_codec.dumps(_bound(chunk, columns)) for chunk in chunks(rows, ROWS_PER_STATEMENT)]

        async def write(connection: AsyncConnection) -> list[Any]:
            found: list[Any] = []
            for document in documents:
                parameters = {**shared, "rows": document}
                if self.returning is None:
                    await execute_in(connection, query, parameters)
                else:
                    found.extend(row[self.returning] for row in await fetch_in(connection, query, parameters))
            return found

        return write

    def _prepare_sqlite(
        self, sa_dialect: sa.Dialect, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any]
    ) -> PreparedRows:
        # A NULL every row shares is left out rather than bound for each row: Python
        # 3.11's sqlite3 binds a None through an AttributeError it formats and drops.
        left_null = frozenset(name for name in self._nullable_shared if shared[name] is None)
        statement, order, inserted_query = self._sqlite_statements(sa_dialect, left_null)
        converters = {name: self._converter(name, sa_dialect) for name in order}
        template = [_converted(shared[name], converters[name]) if name in shared else None for name in order]
        slots = [(index, name, converters[name]) for index, name in enumerate(order) if name not in shared]
        parameters: list[tuple[Any, ...]] = []
        for row in rows:
            values = template.copy()
            for index, name, convert in slots:
                value = row[name]
                values[index] = value if convert is None or value is None else convert(value)
            parameters.append(tuple(values))

        async def write(connection: AsyncConnection) -> list[Any]:
            if not parameters:
                return []
            count = (await connection.exec_driver_sql(statement, parameters)).rowcount
            if self.returning is None or inserted_query is None:
                return []
            if count == len(rows):
                return [row[self.returning] for row in rows]
            if count == 0:
                return []
            result = await connection.exec_driver_sql(inserted_query, (count,))
            return [value for (value,) in result]

        return write


def _once_each(
    convert: Callable[[Any], Any], key: Callable[[Any], Any] = lambda value: value
) -> Callable[[Any], Any]:
    """`convert` for one insert's rows, which often share a value (a trigger's data in each of its runs and
    messages, the moment they were made): each value, told apart by `key`, is converted once."""
    converted: dict[Any, Any] = {}

    def once(value: Any) -> Any:
        seen = key(value)
        result = converted.get(seen)
        if result is None:
            result = converted[seen] = convert(value)
        return result

    return once


def _converted(value: Any, convert: _Convert) -> Any:
    return value if convert is None or value is None else convert(value)


def _bound(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, _Convert]]) -> list[list[Any]]:
    return [
        [
            value if convert is None or value is None else convert(value)
            for name, convert in columns
            for value in (row[name],)
        ]
        for row in rows
    ]

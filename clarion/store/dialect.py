"""The SQL that differs between SQLite and PostgreSQL: JSON column type, upserts, lists bound as one
parameter and the deep-merge call.

This is the only store module that imports `sqlalchemy.dialects` (the queue engines and the migrations
have their own dialect-specific SQL). Repositories build statements through it and never branch on the
dialect themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import TableValuedAlias

from clarion.store import json_codec

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite."""


def insert(table: sa.Table, dialect_name: str) -> Any:
    """An INSERT that supports `on_conflict_do_update/nothing` on the given dialect."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert(
    table: sa.Table,
    dialect_name: str,
    values: dict[str, Any] | list[dict[str, Any]] | None,
    *,
    conflict: Sequence[str],
    update: Callable[[Any], dict[str, Any]] | Sequence[str],
) -> Insert:
    """INSERT … ON CONFLICT (conflict) DO UPDATE. `update` either names the columns to take from the
    excluded (proposed) row, or maps that row to the SET clause. Without `values`, the statement is meant
    to be executed with a list of parameter rows, which SQLAlchemy sends as batched multi-row INSERTs while
    compiling the statement only once."""
    stmt = insert(table, dialect_name)
    if values is not None:
        stmt = stmt.values(values)
    if callable(update):
        set_ = update(stmt.excluded)
    else:
        set_ = {name: stmt.excluded[name] for name in update}
    result: Insert = stmt.on_conflict_do_update(index_elements=list(conflict), set_=set_)
    return result


def insert_ignore(
    table: sa.Table,
    dialect_name: str,
    values: dict[str, Any] | list[dict[str, Any]],
    *,
    conflict: Sequence[str],
) -> Insert:
    """INSERT … ON CONFLICT (conflict) DO NOTHING."""
    result: Insert = (
        insert(table, dialect_name).values(values).on_conflict_do_nothing(index_elements=list(conflict))
    )
    return result


def code_point_order(column: sa.ColumnElement[str], dialect_name: str) -> sa.ColumnElement[str]:
    """`column` to sort by in code-point order, the order Python sorts strings in and the store's canonical
    write order (`clarion.store.batching`): PostgreSQL's "C" collation, since the database's own collation
    may order some strings differently; SQLite's default BINARY collation already is that order."""
    return column.collate("C") if dialect_name == "postgresql" else column


def deep_merge(current: Any, update: Any) -> sa.ColumnElement[Any]:
    """`current` deep-merged with `update` (see `clarion.store.json_merge`), evaluated in the database."""
    return sa.func.clarion_deep_merge(current, update, type_=JSONType)


def select_by_keys(
    columns: Sequence[sa.Column[Any]],
    key: sa.Column[Any],
    name: str,
    dialect_name: str,
    *scope: sa.ColumnElement[bool],
) -> sa.Select[Any]:
    """`columns` of the rows, within `scope`, whose `key` is one of the values of the list bound as the
    parameter `name`. One parameter for the whole list keeps the statement the same whatever the list's
    length, so it is prepared once. `scope` and `key` must cover a unique index.

    On PostgreSQL each value is looked up on its own (a LATERAL subquery the planner cannot flatten):
    the plan is then an index lookup per value whatever the table's statistics say, where `key = ANY`
    could be planned, from stale statistics, as a scan of the whole scope filtering the list. SQLite
    looks each value of a JSON array up in the index anyway."""
    if dialect_name == "postgresql":
        wanted = (
            sa.func.unnest(sa.bindparam(name, type_=postgresql.ARRAY(key.type)))
            .table_valued("value")
            .render_derived(name="wanted")
        )
        # LIMIT 1 keeps the subquery a subquery: one index lookup per value.
        one: sa.ColumnClause[Any] = sa.literal_column("1")
        match = sa.select(*columns).where(*scope, key == wanted.c.value).limit(one).lateral("match")
        return sa.select(*match.c).select_from(wanted).join(match, sa.true())
    values: sa.Select[Any] = sa.select(sa.column("value")).select_from(
        sa.func.json_each(sa.bindparam(name, type_=sa.JSON))
    )
    return sa.select(*columns).where(*scope, key.in_(values.scalar_subquery()))


RowParameters = Callable[[Sequence[Sequence[Any]]], dict[str, Any]]
"""The parameters binding a list of rows to a `bound_rows` source."""


def bound_rows(
    names: Sequence[str], dialect_name: str, *, json_names: Collection[str] = ()
) -> tuple[sa.Subquery, RowParameters]:
    """A source of rows bound as one parameter, whatever the number of rows: a subquery with the columns
    `names` and `bound_row` (each row's place in the list), and the function giving the parameter for a
    list of rows. The rows are a JSON array of arrays, taken apart by `jsonb_array_elements` on
    PostgreSQL and `json_each` on SQLite. One statement thus serves every batch size and is prepared once.
    (An array per column, zipped by `unnest`, costs asyncpg a check of every element as it encodes them,
    more of this process's CPU than the document.)

    Columns are text, given as `str` or None, except those in `json_names`: given as a JSON object or
    array, each is written into the document as it is and comes out a JSON value (JSONB on PostgreSQL,
    JSON text on SQLite), rather than encoded twice as a string within the document and parsed twice."""
    if dialect_name == "postgresql":
        elements = bound_json_elements("elements")
        columns = [
            elements.c.value.op("->", return_type=postgresql.JSONB)(sa.literal_column(str(i))).label(name)
            if name in json_names
            else elements.c.value.op("->>")(sa.literal_column(str(i))).label(name)
            for i, name in enumerate(names)
        ]
        place: sa.ColumnElement[Any] = elements.c.bound_row
    else:
        each = sa.func.json_each(sa.bindparam("rows", type_=sa.String)).table_valued("value", "key")
        # json_extract gives an object or array as its JSON text, and a string's contents unquoted.
        columns = [
            sa.func.json_extract(
                each.c.value, sa.literal_column(f"'$[{i}]'"), type_=JSONType if name in json_names else None
            ).label(name)
            for i, name in enumerate(names)
        ]
        place = each.c.key
    source = sa.select(*columns, place.label("bound_row")).subquery("bound_rows")

    def json_parameters(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        return {"rows": json_codec.dumps([list(row) for row in rows])}

    return source, json_parameters


def bound_json_elements(alias: str) -> TableValuedAlias:
    """PostgreSQL: the elements of the JSON array bound as the text parameter `rows`, as the table `alias`
    of each element's `value` and its place in the array, `bound_row`."""
    return (
        sa.func.jsonb_array_elements(json_from_text(sa.bindparam("rows", type_=sa.Text), "postgresql"))
        .table_valued("value", with_ordinality="bound_row")
        .render_derived(name=alias)
    )


def json_from_text(text: sa.ColumnElement[Any], dialect_name: str) -> sa.ColumnElement[Any]:
    """A JSON document given as its text: parsed into JSONB on PostgreSQL; SQLite keeps JSON as text."""
    if dialect_name == "postgresql":
        return sa.cast(text, postgresql.JSONB())
    return sa.type_coerce(text, JSONType)


def json_append(column: sa.ColumnElement[Any], item: Any, dialect_name: str) -> sa.ColumnElement[Any]:
    """The JSON array in `column` with `item` (a JSON-encodable value) added at its end."""
    encoded = sa.literal(json_codec.dumps(item), sa.String)
    if dialect_name == "postgresql":
        return column.op("||")(sa.func.jsonb_build_array(sa.cast(encoded, postgresql.JSONB)))
    return sa.func.json_insert(column, "$[#]", sa.func.json(encoded))


def json_scalar_equals(
    column: sa.ColumnElement[Any], key: str, value: Any, dialect_name: str
) -> sa.ColumnElement[bool]:
    """The top-level `key` of the JSON object in `column` holds the scalar `value` (same type and value)."""
    if dialect_name == "postgresql":
        return column.op("->")(sa.literal(key)) == sa.cast(
            sa.literal(json_codec.dumps(value)), postgresql.JSONB
        )
    path = sa.literal("$." + json_codec.dumps(key))
    extracted = sa.func.json_extract(column, path)
    kind = sa.func.json_type(column, path)
    if value is None:
        return kind == "null"
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    if isinstance(value, str):
        return sa.and_(kind == "text", extracted == value)
    return sa.and_(kind.in_(["integer", "real"]), extracted == value)


def json_array_overlaps(
    column: sa.ColumnElement[Any], key: str, values: Sequence[str], dialect_name: str
) -> sa.ColumnElement[bool]:
    """The array of strings under the top-level `key` of `column` holds at least one of `values`."""
    if dialect_name == "postgresql":
        return column.op("->")(sa.literal(key)).op("?|")(sa.literal(list(values), postgresql.ARRAY(sa.Text)))
    each = sa.func.json_each(column, sa.literal("$." + json_codec.dumps(key))).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value.in_(list(values))))

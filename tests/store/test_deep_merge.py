"""The store's deep merge (`clarion_deep_merge`: PL/pgSQL on PostgreSQL, the Python function registered
on SQLite) gives exactly `clarion.store.json_merge.deep_merge`'s result; two merges composed into one
(`compose_merges`) have the effect of the two in a row."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.runtime import Runtime
from clarion.store import dialect
from clarion.store.json_merge import compose_merges, deep_merge

CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {}),
    ({"a": 1}, {}),
    ({}, {"a": {"b": 1}}),
    ({"a": 1, "b": 2}, {"b": 3, "c": 4}),
    ({"a": {"b": 1, "c": 2}}, {"a": {"c": 3, "d": 4}}),
    ({"a": {"b": {"c": {"d": 1, "e": 2}}}, "x": 0}, {"a": {"b": {"c": {"e": 3}, "f": 4}}}),
    ({"a": {"b": 1}}, {"a": None}),
    ({"a": None}, {"a": {"b": 1}}),
    ({"a": "text"}, {"a": {"b": 1}}),
    ({"a": {"b": 1}}, {"a": "text"}),
    ({"a": {"b": 1}}, {"a": {}}),
    ({"a": [1, {"b": 1}]}, {"a": [{"c": 2}]}),
    ({"a": {"b": [1]}}, {"a": {"b": [{"c": 1}]}}),
    ({"list": [{"b": 1}], "o": {"p": 1}}, {"list": [{"b": 2}], "o": {"q": [{"r": 1}]}}),
    ({"a.b": {"c": 1}, "{x,y}": {"z": 1}, "0": {"k": 1}}, {"a.b": {"d": 2}, "{x,y}": {"w": 2}, "0": {}}),
    ({"plan": {"tier": "free", "n": 1}, "name": "A"}, {"name": "B", "plan": {"n": 2}, "email": "b@x"}),
    ({"n": 123456789012345678901234567890}, {"m": {"n": 1.5, "t": True, "f": False}}),
]


@pytest.mark.parametrize(("base", "patch"), CASES)
async def test_store_deep_merge_matches_the_python_rule(
    runtime: Runtime, base: dict[str, Any], patch: dict[str, Any]
) -> None:
    statement = sa.select(
        dialect.deep_merge(
            sa.bindparam("base", base, type_=dialect.JSONType),
            sa.bindparam("patch", patch, type_=dialect.JSONType),
        )
    )
    async with runtime.database.reader.connect() as connection:
        merged = (await connection.execute(statement)).scalar_one()
    assert merged == deep_merge(base, patch)


VALUES: list[Any] = [None, 1, "x", [{"b": 1}], {}, {"b": 1}, {"b": None}, {"b": {"c": 1}}, {"b": 2, "d": [3]}]
"""What a key may hold, nested objects of every kind included; keys merge independently, so one key
(present or absent in each document) covers every case."""
DOCUMENTS = [{}, *({"a": value} for value in VALUES)]


def test_two_merges_composed_into_one_have_the_same_effect() -> None:
    composed_at_all = 0
    for base, first, later in itertools.product(DOCUMENTS, repeat=3):
        composed = compose_merges(first, later)
        if composed is not None:
            composed_at_all += 1
            assert deep_merge(base, composed) == deep_merge(deep_merge(base, first), later), (
                base,
                first,
                later,
            )
    assert composed_at_all > len(DOCUMENTS) ** 3 // 2


def test_merges_compose_except_where_an_object_follows_anything_else() -> None:
    assert compose_merges({"a": {"b": 1}, "c": 1}, {"a": {"d": 2}, "c": None}) == {
        "a": {"b": 1, "d": 2},
        "c": None,
    }
    assert compose_merges({"a": {"b": 1}}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    # First sets `a` to a number, then an object replaces it: one merge would merge into the old `a`.
    assert compose_merges({"a": 1}, {"a": {"b": 2}}) is None
    assert compose_merges({"a": {"b": None}}, {"a": {"b": {"c": 1}}}) is None

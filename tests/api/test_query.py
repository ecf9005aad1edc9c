from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from clarion.api.query import query_references


def request(query: list[tuple[str, str]]) -> Request:
    return Request({"type": "http", "query_string": urlencode(query).encode(), "headers": []})


def test_references_in_the_python_sdk_encoding() -> None:
    query = [
        ("recipients[]", "u1"),
        ("recipients[][id]", "p1"),
        ("recipients[][collection]", "projects"),
        ("recipients[][id]", "p2"),
        ("recipients[][collection]", "teams"),
        ("objects[][id]", "elsewhere"),
        ("page_size", "10"),
    ]
    assert query_references(request(query), "recipients") == [
        "u1",
        {"id": "p1", "collection": "projects"},
        {"id": "p2", "collection": "teams"},
    ]


def test_references_with_indices_and_plain_values() -> None:
    query = [
        ("objects[0][id]", "a"),
        ("objects[1][id]", "b"),
        ("objects[0][collection]", "c1"),
        ("objects[1][collection]", "c2"),
        ("objects", "u9"),
        ("objects[2]", "u3"),
    ]
    assert query_references(request(query), "objects") == [
        {"id": "a", "collection": "c1"},
        {"id": "b", "collection": "c2"},
        "u9",
        "u3",
    ]
    assert query_references(request([]), "objects") == []

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from clarion.api.query import query_references
from tests.conftest import EnvFixture, assert_error


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


async def test_a_parameter_typed_as_a_uuid_or_a_moment_refuses_other_values_naming_it(
    env: EnvFixture,
) -> None:
    for path, field in [
        ("/v1/messages?workflow_run_id=null", "workflow_run_id"),
        ("/v1/messages?workflow_recipient_run_id=", "workflow_recipient_run_id"),
        ("/v1/workflow_recipient_runs?starting_at=", "starting_at"),
        ("/v1/workflow_recipient_runs?ending_at=null", "ending_at"),
    ]:
        refused = assert_error(await env.get(path), 422, "invalid_params")
        assert [error["field"] for error in refused["errors"]] == [field], path
    run_id = "5f0c2a8e-3b1d-4c6e-9f7a-2d4b6c8e0a1f"
    assert (await env.get(f"/v1/messages?workflow_run_id={run_id}")).json()["items"] == []
    runs = await env.get("/v1/workflow_recipient_runs?starting_at=2024-01-01T00:00:00Z")
    assert runs.json()["items"] == []

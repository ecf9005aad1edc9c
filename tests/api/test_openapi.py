"""Clarion's own OpenAPI document: valid OpenAPI 3.1, describing exactly the routes Clarion serves, and served
at `GET /openapi.json` without a key. The contract fuzz against it is `tests/compat/test_own_contract.py`."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import orjson
import pytest
import schemathesis

from clarion.api.app import all_routes
from clarion.api.openapi import endpoints, openapi_document

DOCUMENT = openapi_document(all_routes())
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(DOCUMENT).validate()
    for name, schema in DOCUMENT["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            pytest.fail(f"components.schemas.{name}: {error.message}")


def test_every_reference_resolves() -> None:
    components = DOCUMENT["components"]
    references: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("$ref"), str):
                references.append(value["$ref"])
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(DOCUMENT)
    assert references
    for reference in references:
        _, kind, name = reference.removeprefix("#/").split("/")[0:3]
        assert name in components[kind], reference


def test_it_describes_exactly_the_served_routes() -> None:
    served = {(method, route.path) for route, method, _endpoint in endpoints(all_routes())}
    assert len(served) == sum(
        len(route.methods or ()) - ("HEAD" in (route.methods or ())) for route in all_routes()
    )
    assert set(operations(DOCUMENT)) == served


def test_operation_ids_are_unique() -> None:
    ids = [operation["operationId"] for operation in operations(DOCUMENT).values()]
    assert len(ids) == len(set(ids))


def test_operations_describe_what_their_handlers_read_and_answer() -> None:
    described = operations(DOCUMENT)
    identify = described["PUT", "/v1/users/{user_id}"]
    assert identify["requestBody"]["required"] is True
    assert identify["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IdentifyUserRequest"
    }
    assert identify["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/User"
    }
    assert [p["name"] for p in identify["parameters"]] == ["user_id"]
    assert identify["security"] == [{"bearer": []}, {"bearer": [], "userToken": []}]
    assert identify["x-ratelimit-tier"] == 3

    deleted = described["DELETE", "/v1/users/{user_id}"]
    assert set(deleted["responses"]) == {"204", "4XX", "503"}
    assert deleted["security"] == [{"bearer": []}]

    listed = [p["name"] for p in described["GET", "/v1/users"]["parameters"]]
    assert listed == ["after", "before", "page_size", "include[]"]

    # The engagement update's body is optional: Knock's SDKs send none.
    assert described["PUT", "/v1/messages/{message_id}/interacted"]["requestBody"]["required"] is False
    assert "requestBody" not in described["PUT", "/v1/messages/{message_id}/seen"]


def test_every_refusal_is_described_in_knocks_error_body() -> None:
    error = DOCUMENT["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    body = DOCUMENT["components"]["schemas"][error["$ref"].rsplit("/", 1)[-1]]
    assert set(body["required"]) == {"code", "message", "status", "type", "errors"}
    unavailable = DOCUMENT["components"]["responses"]["Unavailable"]
    assert unavailable["content"] == DOCUMENT["components"]["responses"]["Error"]["content"]
    assert "retry-after" in unavailable["headers"]
    for operation in operations(DOCUMENT).values():
        assert operation["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}
        assert operation["responses"]["503"] == {"$ref": "#/components/responses/Unavailable"}


def test_fields_that_may_be_left_out_but_not_null_are_described_without_null() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    channel_data = schemas["SetObjectRequest"]["properties"]["channel_data"]
    assert channel_data["type"] == "object" and "anyOf" not in channel_data
    strategy = schemas["PreferenceSetRequest"]["properties"]["__persistence_strategy__"]
    assert strategy["$ref"] == "#/components/schemas/PersistenceStrategy"
    # Where Knock allows null, the document says so.
    identify_channel_data = schemas["IdentifyUserRequest"]["properties"]["channel_data"]
    assert {"type": "null"} in identify_channel_data["anyOf"]


def test_deviations_from_knock_are_described() -> None:
    assert "docs/compatibility.md" in DOCUMENT["info"]["description"]
    delivery_logs = operations(DOCUMENT)["GET", "/v1/messages/{message_id}/delivery_logs"]
    assert "Always empty" in delivery_logs["description"]


async def test_it_is_served_without_a_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.content) == orjson.loads(orjson.dumps(DOCUMENT))
    again = await client.get("/openapi.json")
    assert again.content == response.content

"""Clarion's own OpenAPI 3.1 document, served at `GET /openapi.json` without a key.

It is generated from the route table: each route's path, method, rate-limit tier and whether publishable
keys may call it, and what its `route(...)` declares (`clarion.api.contract`): the body it reads, the
response it answers and its query parameters, all described by Pydantic (JSON Schema 2020-12, which
OpenAPI 3.1 uses). Request types are described as Pydantic validates them, responses as it serialises them.
Every operation may also answer a 4xx in Knock's error body. The document describes what Clarion
implements; where that differs from Knock, `info.description` and the operation's description say so.
It is built on the first request and kept as bytes.
"""

from __future__ import annotations

import functools
import types
from collections import Counter
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

import orjson
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

import clarion
from clarion.api.contract import Contract
from clarion.api.endpoint import Endpoint
from clarion.schemas.plain_responses import ErrorBody

OPENAPI_PATH = "/openapi.json"
COMPONENTS = "#/components/schemas/"
ERROR_RESPONSE = "Error"
UNAVAILABLE_RESPONSE = "Unavailable"

DESCRIPTION = """\
Clarion is a self-hosted notification engine that answers Knock's v1 API (`api.knock.app`) with Knock's
paths, methods, status codes and request and response shapes. This document describes the operations
this Clarion serves, generated from its own routes and schemas; Knock's operations it does not serve yet
(guides, schedules, preference center, provider APIs, reverse-ETL sources) are absent.

Where Clarion differs from Knock (the full list is `docs/compatibility.md`):

- Authentication: a secret key, or a publishable key on client-side operations, as `Authorization: Bearer`.
  Signed user tokens (`X-Knock-User-Token`) are verified; their grants are not enforced yet. Keys come from
  the `clarion` command line; there are no service tokens.
- Errors Knock does not document: `400 invalid_json`, `413 request_too_large`, `404 resource_missing`,
  `429 rate_limited`, `503 service_unavailable` (the database cannot be reached); the NUL character is
  refused anywhere in a request with a 422.
- Rate limits apply to publishable keys only unless `CLARION_RATE_LIMIT=knock`; no `x-ratelimited-*` headers.
- Channels come from a file shared by every environment; per-environment channel settings, channel
  conditions and sandbox mode are not supported.
- Workflows are files (`CLARION_WORKFLOWS_DIR`) or pushed with `clarion workflows push`; `channel`,
  `delay`, `branch`, `batch`, `throttle`, `http_fetch`, `update_data`, `update_user`, `update_object`,
  `update_tenant`, `update_audience` and `trigger_workflow` steps run. Messages other than in-app feed
  ones stay `queued`: provider delivery comes later.
- There is no environment-level default preference set. Audiences are created by adding members or declared
  in files (`CLARION_AUDIENCES_DIR`, `clarion audiences push`), where dynamic audiences are defined; a
  workflow's own `trigger` field makes it run for each member entering an audience.
"""

_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An environment's secret key (`sk_…`), or its publishable key (`pk_…`) where allowed.",
    },
    "userToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Knock-User-Token",
        "description": "A signed user token (RS256), for publishable-key requests on client-side operations.",
    },
}
_SECRET_KEY: list[dict[str, list[str]]] = [{"bearer": []}]
_CLIENT_KEYS: list[dict[str, list[str]]] = [{"bearer": []}, {"bearer": [], "userToken": []}]


def endpoints(routes: Sequence[Route]) -> list[tuple[Route, str, Endpoint]]:
    """(route, method, endpoint) of every operation of `routes`, in their order; HEAD, which Starlette
    adds to every GET, is no operation of its own."""
    return [
        (route, method, route.endpoint)
        for route in routes
        if isinstance(route.endpoint, Endpoint)
        for method in route.methods or ()
        if method != "HEAD"
    ]


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    operations = endpoints(routes)
    types_used = _Schemas()
    for _route, _method, endpoint in operations:
        types_used.add_contract(endpoint.contract)
    schemas = types_used.generate()
    ids = _operation_ids(operations)
    paths: dict[str, dict[str, Any]] = {}
    for route, method, endpoint in operations:
        paths.setdefault(route.path, {})[method.lower()] = _operation(
            route, ids[route.path, method], endpoint, schemas
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Clarion", "version": clarion.__version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "responses": {
                ERROR_RESPONSE: {
                    "description": "Refused, in Knock's error body; nothing was changed.",
                    "content": {"application/json": {"schema": schemas.of(ErrorBody, "serialization")}},
                },
                UNAVAILABLE_RESPONSE: {
                    "description": "The database cannot be reached (`service_unavailable`), in Knock's error"
                    " body; nothing was changed. Try again after the `retry-after` header's seconds.",
                    "headers": {"retry-after": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": schemas.of(ErrorBody, "serialization")}},
                },
            },
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


class _Schemas:
    """The JSON schemas of every type the operations use, generated together so that models shared
    between operations become one component each."""

    def __init__(self) -> None:
        self._types: dict[tuple[int, JsonSchemaMode], Any] = {}
        self.add(ErrorBody, "serialization")
        self._schemas: dict[tuple[int, JsonSchemaMode], dict[str, Any]] = {}
        self.components: dict[str, Any] = {}

    def add(self, type_: Any, mode: JsonSchemaMode) -> None:
        self._types[id(type_), mode] = type_

    def add_contract(self, contract: Contract) -> None:
        if contract.body is not None:
            self.add(_body_type(contract.body)[0], "validation")
        if contract.response is not None:
            self.add(contract.response, "serialization")
        for parameter in contract.query:
            self.add(parameter.schema, "validation")

    def generate(self) -> _Schemas:
        inputs = [(key, key[1], TypeAdapter(type_)) for key, type_ in self._types.items()]
        schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=COMPONENTS + "{model}")
        self._schemas = {key: schema for (key, _mode), schema in schemas.items()}
        self.components = dict(sorted(definitions.get("$defs", {}).items()))
        return self

    def of(self, type_: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        return self._schemas[id(type_), mode]


def _body_type(body: Any) -> tuple[Any, bool]:
    """The type a body declared as `body` is read as, and whether it is required (`Model | None` is not)."""
    if get_origin(body) in (Union, types.UnionType):
        members = [member for member in get_args(body) if member is not type(None)]
        if len(members) == 1:
            return members[0], False
    return body, True


def _operation_ids(operations: Sequence[tuple[Route, str, Endpoint]]) -> dict[tuple[str, str], str]:
    """Each operation's id, by path and method: its handler's name, followed by its path's fixed segments
    where one handler serves several paths (a user's and an object's preference sets)."""
    uses = Counter(route.name for route, _method, _endpoint in operations)
    ids: dict[tuple[str, str], str] = {}
    for route, method, _endpoint in operations:
        if uses[route.name] == 1:
            ids[route.path, method] = route.name
        else:
            fixed = [part for part in route.path.split("/")[2:] if part and not part.startswith("{")]
            ids[route.path, method] = f"{route.name}__{'_'.join(fixed)}"
    return ids


def _operation(route: Route, operation_id: str, endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    contract = endpoint.contract
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": route.name.replace("_", " ").capitalize(),
        "tags": [endpoint.handler.__module__.rsplit(".", 1)[-1]],
        "security": _CLIENT_KEYS if endpoint.client else _SECRET_KEY,
        "x-ratelimit-tier": endpoint.tier,
    }
    if contract.note:
        operation["description"] = contract.note
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in route.param_convertors
    ]
    parameters += [
        {
            "name": parameter.name,
            "in": "query",
            "required": False,
            "description": parameter.description,
            "schema": schemas.of(parameter.schema, "validation"),
        }
        for parameter in contract.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if contract.body is not None:
        body, required = _body_type(contract.body)
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": schemas.of(body, "validation")}},
        }
    success: dict[str, Any]
    if contract.response is None:
        success = {"204": {"description": "Done; no content."}}
    else:
        schema = schemas.of(contract.response, "serialization")
        success = {"200": {"description": "Done.", "content": {"application/json": {"schema": schema}}}}
    operation["responses"] = {
        **success,
        "4XX": {"$ref": f"#/components/responses/{ERROR_RESPONSE}"},
        "503": {"$ref": f"#/components/responses/{UNAVAILABLE_RESPONSE}"},
    }
    return operation


class OpenAPIEndpoint:
    """`GET /openapi.json`: the document of the routes given, built once."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = routes

    @functools.cached_property
    def body(self) -> bytes:
        return orjson.dumps(openapi_document(self.routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await Response(self.body, media_type="application/json")(scope, receive, send)


def openapi_route(routes: Sequence[Route]) -> Route:
    return Route(OPENAPI_PATH, OpenAPIEndpoint(routes), methods=["GET"], name="openapi")

"""What every endpoint does around its handler, beyond authentication (tests/api/routes/*)."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message

from clarion.api.app import create_app
from tests.conftest import EnvFixture, assert_error


async def test_a_client_that_leaves_before_its_body_arrives_gets_no_answer_and_changes_nothing(
    env: EnvFixture, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(env.runtime)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/v1/users/gone",
        "raw_path": b"/v1/users/gone",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {env.secret_key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"20"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    with caplog.at_level(logging.ERROR):
        await app(scope, receive, send)
    assert sent == []
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert (await env.get("/v1/users/gone")).status_code == 404


async def test_a_path_id_that_is_not_utf8_is_refused_naming_its_parameter(env: EnvFixture) -> None:
    for path in ["/v1/users/%FF", "/v1/users/ok%FE%FF"]:
        body = assert_error(await env.put(path, json={"name": "x"}), 422, "invalid_params")
        assert [error["field"] for error in body["errors"]] == ["user_id"]
    body = assert_error(await env.put("/v1/objects/%C3/o1", json={}), 422, "invalid_params")
    assert [error["field"] for error in body["errors"]] == ["collection"]
    assert (await env.get("/v1/users")).json()["entries"] == []
    # A real U+FFFD, escaped as UTF-8, is an id like any other.
    assert (await env.put("/v1/users/%EF%BF%BD", json={"name": "x"})).status_code == 200
    assert_error(await env.get("/v1/users/%FF"), 422)


async def test_a_query_parameter_that_is_not_utf8_is_refused_naming_it(env: EnvFixture) -> None:
    await env.put("/v1/tenants/t%C3%A9", json={})
    body = assert_error(await env.get("/v1/tenants?tenant_id=t%E9"), 422, "invalid_params")
    assert [error["field"] for error in body["errors"]] == ["tenant_id"]
    found = await env.get("/v1/tenants?tenant_id=t%C3%A9")
    assert [tenant["id"] for tenant in found.json()["entries"]] == ["t\u00e9"]

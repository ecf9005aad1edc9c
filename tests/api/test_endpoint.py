"""What every endpoint does around its handler, beyond authentication (tests/api/routes/*)."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message

from clarion.api.app import create_app
from tests.conftest import EnvFixture


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

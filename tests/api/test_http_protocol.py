"""The HTTP protocol Clarion serves with, over real sockets to a real uvicorn server on loopback: uvicorn's
own refusals in Knock's error body, and requests that stop arriving refused with a 408 and closed."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from clarion.api.app import create_app
from clarion.api.http_protocol import knock_http_protocol
from tests.conftest import EnvFixture, assert_error

READ_TIMEOUT = 0.5
ANSWER_WAIT = 10.0  # far above READ_TIMEOUT: a bound on a hang, not a speed target


@pytest.fixture
async def port(env: EnvFixture) -> AsyncIterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(env.runtime), http=knock_http_protocol(READ_TIMEOUT), log_level="error", access_log=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:  # noqa: ASYNC110 - uvicorn tells of readiness only by this flag
        await asyncio.sleep(0.01)
    yield listener.getsockname()[1]
    server.should_exit = True
    await serving


async def exchange(port: int, *parts: bytes, pause: float = 0.0) -> tuple[int, dict[str, str], Any]:
    """Send `parts` (with `pause` seconds between them), then read until the server closes: the status,
    headers and JSON body of its one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, part in enumerate(parts):
            if index and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), ANSWER_WAIT)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def request_head(env: EnvFixture, method: str, target: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: clarion.test", f"Authorization: Bearer {env.secret_key}"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


def assert_knock_error(status: int, headers: dict[str, str], body: Any, expected: int, code: str) -> None:
    assert status == expected
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body == {
        "code": code,
        "message": body["message"],
        "status": expected,
        "type": "invalid_request_error",
        "errors": [],
    }
    assert body["message"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"PUT /v1/users/u1 HTTP/1.1\r\nHost: a\r\nContent-Length: ten\r\n\r\n{}",
        b"PUT /v1/users/u1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"NOT AN HTTP REQUEST\r\n\r\n",
        b"GET /v1/users/" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /v1/users/\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
    ids=[
        "bad-content-length",
        "two-content-lengths",
        "bad-request-line",
        "over-long-url",
        "non-ascii-target",
    ],
)
async def test_a_request_the_server_cannot_parse_gets_knocks_error_body(
    port: int, request_bytes: bytes
) -> None:
    assert_knock_error(*await exchange(port, request_bytes), 400, "invalid_request")


async def test_a_body_shorter_than_its_content_length_is_refused_and_writes_nothing(
    env: EnvFixture, port: int
) -> None:
    head = request_head(
        env, "PUT", "/v1/users/stalled", "Content-Type: application/json", "Content-Length: 40"
    )
    assert_knock_error(*await exchange(port, head + b'{"name": "half'), 408, "request_timeout")
    assert_error(await env.get("/v1/users/stalled"), 404)


async def test_a_request_whose_headers_stop_arriving_is_refused(port: int) -> None:
    assert_knock_error(
        *await exchange(port, b"GET /v1/users HTTP/1.1\r\nHost: a\r\nAuthor"), 408, "request_timeout"
    )


async def test_a_request_arriving_in_pieces_within_the_bound_is_served(env: EnvFixture, port: int) -> None:
    head = request_head(
        env,
        "PUT",
        "/v1/users/slow",
        "Content-Type: application/json",
        "Content-Length: 15",
        "Connection: close",
    )
    status, _, body = await exchange(port, head + b'{"name"', b': "Ada"}', pause=READ_TIMEOUT / 5)
    assert (status, body["id"], body["name"]) == (200, "slow", "Ada")

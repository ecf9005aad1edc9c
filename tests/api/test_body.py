"""Reading a request body from its ASGI messages: whole however it is split, refused past the limit."""

from __future__ import annotations

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from clarion.api.body import MAX_BODY_BYTES, read_body
from clarion.errors import InvalidInputError


def _request(*messages: Message) -> Request:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return Request({"type": "http", "method": "PUT", "headers": []}, receive)


def _chunk(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_split_over_several_messages_is_read_whole() -> None:
    request = _request(_chunk(b'{"a":', True), _chunk(b"", True), _chunk(b"1}", False))
    assert await read_body(request) == b'{"a":1}'


async def test_a_body_without_a_declared_length_is_refused_once_past_the_limit() -> None:
    half = b"x" * (MAX_BODY_BYTES // 2 + 1)
    request = _request(_chunk(half, True), _chunk(half, True), _chunk(b"never read", False))
    with pytest.raises(InvalidInputError) as refused:
        await read_body(request)
    assert refused.value.status == 413


async def test_a_client_gone_mid_body_is_a_disconnect() -> None:
    request = _request(_chunk(b'{"a":', True), {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnect):
        await read_body(request)

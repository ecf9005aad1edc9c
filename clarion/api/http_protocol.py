"""The HTTP/1.1 protocol Clarion serves with: uvicorn's httptools protocol, answering its own refusals in
Knock's error body and bounding how long a request may take to arrive.

uvicorn refuses a request it cannot parse (a malformed request line or header, a bad `Content-Length`, an
over-long or non-ASCII target) by itself, in plain text; here that refusal is a 400 in Knock's JSON body.
uvicorn bounds only the wait between requests (`timeout_keep_alive`): a client that sends part of a request
(some headers, or less body than its `Content-Length`) and then nothing would hold its connection, and the
task waiting for the body, forever. Here an unfinished request must keep arriving: after `read_timeout`
seconds without a byte of it, the client gets a 408 in Knock's body (unless a response to it has begun)
and the connection is closed, which ends the waiting task as a disconnect.

The class keeps to what uvicorn's protocol exposes without a leading underscore: httptools' parser
callbacks, asyncio's `data_received`/`connection_lost`, `send_400_response`, `flow.read_paused` and the
request cycle's `response_started`/`response_complete`. uvicorn and httptools are pinned, and
tests/api/test_http_protocol.py drives a real server over sockets. The application's own errors are
answered by `clarion.api.errors`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from clarion.api.errors import error_body

MALFORMED_MESSAGE = (
    "The request is not valid HTTP/1.1: its request line, headers or Content-Length cannot be read"
)
STALLED_MESSAGE = "The request stopped arriving before it was complete"


def _error_response(
    default_headers: list[tuple[bytes, bytes]], status: int, code: str, message: str
) -> bytes:
    body = orjson.dumps(error_body(status, code, message, "invalid_request_error"))
    reason = {400: b"Bad Request", 408: b"Request Timeout"}[status]
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class KnockHTTPProtocol(HttpToolsProtocol):
    read_timeout: float = 30.0
    """Seconds an unfinished request may go without a byte before it is refused."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.request_unfinished = False
        self.request_headers_complete = False
        self.stall_timer: asyncio.TimerHandle | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.request_unfinished = True
        self.request_headers_complete = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.request_headers_complete = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.request_unfinished = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        # A whole request in one read, the usual case, never arms the timer.
        if self.request_unfinished and not self.transport.is_closing():
            self.stall_timer = self.loop.call_later(self.read_timeout, self.request_stalled)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(
            _error_response(self.server_state.default_headers, 400, "invalid_request", MALFORMED_MESSAGE)
        )
        self.transport.close()

    def request_stalled(self) -> None:
        self.stall_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # uvicorn stopped reading until the application takes the body it holds: the wait is ours.
            self.stall_timer = self.loop.call_later(self.read_timeout, self.request_stalled)
            return
        if self._may_answer_stalled_request():
            self.transport.write(
                _error_response(self.server_state.default_headers, 408, "request_timeout", STALLED_MESSAGE)
            )
        self.transport.close()

    def _may_answer_stalled_request(self) -> bool:
        """Whether no response to the stalled request has begun and none to an earlier one is unfinished."""
        cycle = self.cycle
        if self.request_headers_complete:
            return not cycle.response_started  # the stalled request's own cycle
        return cycle is None or cycle.response_complete


def knock_http_protocol(read_timeout: float) -> type[KnockHTTPProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`), with its read timeout."""

    class ConfiguredHTTPProtocol(KnockHTTPProtocol):
        pass

    ConfiguredHTTPProtocol.read_timeout = read_timeout
    return ConfiguredHTTPProtocol

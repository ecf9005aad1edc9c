"""A real HTTP/1.1 server on loopback for outbound-request tests: it records each request it receives
(method, target, headers, body, and the connection it came on) and answers with the replies a test lines
up, which may wait before answering or send a body slowly, so timeouts and limits meet real sockets.
Optionally over TLS, recording the SNI name each handshake asked for."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = (("content-type", "application/json"),)
    delay: float = 0.0
    """Seconds to wait before answering."""
    chunked: bool = False
    """Send the body in chunks without a Content-Length."""


@dataclass
class ReceivedRequest:
    method: str
    target: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    connection: int
    """Which accepted connection (0, 1, …) carried it."""


@dataclass
class HTTPPeer:
    host: str = "127.0.0.1"
    ssl_context: ssl.SSLContext | None = None
    replies: deque[Reply] = field(default_factory=deque)
    """Answers in order; when empty, 200 with `{}`."""
    received: list[ReceivedRequest] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    port: int = 0
    connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> HTTPPeer:
        if self.ssl_context is not None:
            self.ssl_context.sni_callback = lambda _sock, name, _context: self.server_names.append(name)
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stops listening and drops every connection; a reply waiting out its delay gives up."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._tasks)
        if self._server is not None:
            await self._server.wait_closed()

    def url(self, path: str = "/", *, host: str | None = None) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{name}:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        connection = self.connections
        self.connections += 1
        try:
            while await self._serve_one(reader, writer, connection):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: int
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append(ReceivedRequest(method, target, headers, body, connection))
        reply = self.replies.popleft() if self.replies else Reply(body=b"{}")
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay)
            if self._closing.is_set():
                return False
        lines = [f"HTTP/1.1 {reply.status} Status", *(f"{name}: {value}" for name, value in reply.headers)]
        lines.append("transfer-encoding: chunked" if reply.chunked else f"content-length: {len(reply.body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if reply.chunked:
            for start in range(0, len(reply.body), 1024):
                chunk = reply.body[start : start + 1024]
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(reply.body)
        await writer.drain()
        return True

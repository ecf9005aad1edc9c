"""Sending a fetch step's request: one shared connection pool, guarded against server-side request
forgery, bounded in time and size, whose answer is a typed result carrying the record of the exchange.

What `OutboundHTTP.send` guarantees:

- Every connection is opened by `_GuardedNetwork`: the host is resolved once (through the `resolver`
  seam), each address is judged by the `AddressPolicy`, and the socket goes to an address that passed.
  There is no second lookup between the check and the connection, so a name whose answer changes in
  between (DNS rebinding) cannot reach a refused address. The URL keeps its host name, so the Host
  header, TLS's SNI and the certificate check are the name's, and pooled connections are kept per name.
- Only http and https. Redirects are not followed: Knock expects 200, 201 or 204, and a redirect would
  carry the request's headers (an API key) to wherever it points. A 3xx fails, recording its Location.
- The whole exchange, resolution to last byte, takes at most `timeout` seconds (Knock allows 15); a
  body longer than `max_response_bytes` is refused as soon as it is known to be (its Content-Length, or
  the byte past the limit), and no more of it is read.
- The result is one of `FetchSucceeded` (200, 201 or 204 with a JSON object or no body),
  `FetchRetryable` (5xx, 429, a timeout, a failed connection or lookup; with the `retry-after` the
  server gave) or `FetchFailed` (any other status, a refused target, a body that is not a JSON object
  or is too long). Each records the request as sent and the response, headers and bodies bounded and
  secret-looking headers and query parameters redacted, for the run to show.

What it does not do: retry (the step reschedules itself), render templates or merge the data
(`clarion.engine.fetch_settings`), or decide which addresses are public (`clarion.engine.address_policy`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpcore
import httpx

from clarion.config import Settings
from clarion.engine.address_policy import AddressPolicy, IPAddress
from clarion.errors import ClarionError
from clarion.store import json_codec

MAX_RESPONSE_BYTES: Final = 1024 * 1024
"""The longest response body read; its data is merged into the run's, stored on every checkpoint."""
EXCERPT_CHARACTERS: Final = 2048
"""How much of a request or response body the record keeps."""
MAX_RECORDED_HEADERS: Final = 50
MAX_HEADER_VALUE_CHARACTERS: Final = 512
SUCCESS_STATUSES: Final = frozenset({200, 201, 204})
"""The statuses Knock's fetch function expects; any other is a failure."""
SCHEMES: Final = frozenset({"http", "https"})
REDACTED: Final = "[REDACTED]"

_SECRET_NAME = re.compile(r"auth|token|secret|key|passw|cookie|session|credential", re.IGNORECASE)
"""Header and query parameter names whose values the record leaves out (`Authorization`, `X-API-Key`,
`Set-Cookie`, `access_token`, …)."""

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""Resolves a host name to its addresses (for a TCP connection to `port`), raising `ResolutionError`."""


class TargetRefusedError(ClarionError):
    """The request's target is refused by the address policy: a permanent failure."""


class ResolutionError(ClarionError):
    """The request's host name could not be resolved: retried, as a lookup failure is often passing."""


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The system resolver's addresses for `host`, in its order, each once."""
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror, mostly
        raise ResolutionError(f"{host} could not be resolved: {exc}") from exc
    addresses: dict[IPAddress, None] = {}
    for *_, sockaddr in answers:
        addresses[ipaddress.ip_address(sockaddr[0])] = None
    return list(addresses)


@dataclass(frozen=True)
class OutboundRequest:
    """A request ready to send: rendered, its query merged into `url`, its body encoded."""

    method: str
    url: httpx.URL
    headers: tuple[tuple[str, str], ...]
    body: bytes | None = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str | None

    @classmethod
    def of(cls, request: OutboundRequest) -> RecordedRequest:
        return cls(
            method=request.method,
            url=_redacted_url(request.url),
            headers=_recorded_headers(request.headers),
            body=None if request.body is None else _excerpt(request.body),
        )

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "headers": dict(self.headers), "body": self.body}


@dataclass(frozen=True)
class RecordedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    """The body's first `EXCERPT_CHARACTERS`, decoded as UTF-8 (undecodable bytes replaced)."""

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "headers": dict(self.headers), "body": self.body}


@dataclass(frozen=True)
class FetchExchange:
    """What a run records of one attempt: the request as sent, the response if one came, how long it took."""

    request: RecordedRequest
    response: RecordedResponse | None
    duration_ms: int

    def record(self) -> dict[str, Any]:
        """The attempt as JSON, for the run: request, response (or null), duration and, on a failure,
        `error` and, when the server gave one, `retry_after`."""
        return {
            "request": self.request.as_json(),
            "response": None if self.response is None else self.response.as_json(),
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class FetchSucceeded(FetchExchange):
    data: dict[str, Any] | None
    """The response's JSON object; None when it had no body (a 204, or an empty 200)."""


@dataclass(frozen=True)
class FetchRetryable(FetchExchange):
    error: str
    retry_after: float | None
    """Seconds the server asked to wait (`retry-after`), if it did."""

    def record(self) -> dict[str, Any]:
        record = {**super().record(), "error": self.error}
        if self.retry_after is not None:
            record["retry_after"] = self.retry_after
        return record


@dataclass(frozen=True)
class FetchFailed(FetchExchange):
    error: str

    def record(self) -> dict[str, Any]:
        return {**super().record(), "error": self.error}


FetchResult = FetchSucceeded | FetchRetryable | FetchFailed


class OutboundHTTP:
    """The process's outbound HTTP for fetch steps: a connection pool that keeps connections open for
    reuse, behind the address guard. The runtime holds one and closes it with `aclose`."""

    def __init__(
        self,
        *,
        timeout: float,
        policy: AddressPolicy | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        resolver: Resolver = resolve_host,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`timeout` bounds each exchange (`Settings.fetch_timeout`). `resolver` and `ssl_context` are
        for tests: a resolver that answers names no DNS here knows, a context that trusts a test
        authority; by default the system's resolver and certifi's authorities."""
        self.policy = policy or AddressPolicy()
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=15.0,
            network_backend=_GuardedNetwork(self.policy, resolver),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundHTTP:
        return cls(
            policy=AddressPolicy(allow=settings.fetch_allow_hosts, deny=settings.fetch_deny_hosts),
            timeout=settings.fetch_timeout,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def send(self, request: OutboundRequest) -> FetchResult:
        """Sends `request` and says what came of it; never raises for anything the target or the network
        does."""
        recorded = RecordedRequest.of(request)
        started = time.monotonic()

        def took() -> int:
            return round((time.monotonic() - started) * 1000)

        if request.url.scheme not in SCHEMES or not request.url.host:
            return FetchFailed(recorded, None, took(), error=f"{recorded.url} is not an http or https URL")
        try:
            async with asyncio.timeout(self.timeout):
                status, headers, body = await self._exchange(request)
        except _TooLong as exc:
            response = RecordedResponse(exc.status, _recorded_headers(exc.headers), _excerpt(exc.start))
            return FetchFailed(recorded, response, took(), error=str(exc))
        except TargetRefusedError as exc:
            return FetchFailed(recorded, None, took(), error=f"the target is refused: {exc.message}")
        except (TimeoutError, httpcore.TimeoutException):
            return FetchRetryable(
                recorded,
                None,
                took(),
                error=f"no complete response within {self.timeout:g} seconds",
                retry_after=None,
            )
        except (ResolutionError, httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
            return FetchRetryable(
                recorded, None, took(), error=f"the request failed: {_reason(exc)}", retry_after=None
            )
        except (httpcore.LocalProtocolError, httpcore.UnsupportedProtocol) as exc:
            return FetchFailed(recorded, None, took(), error=f"the request cannot be sent: {_reason(exc)}")
        response = RecordedResponse(status, _recorded_headers(headers), _excerpt(body))
        return _outcome(recorded, response, took(), headers, body)

    async def _exchange(self, request: OutboundRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        url = request.url
        headers = [(b"Host", url.netloc)]
        headers += [(name.encode("ascii"), value.encode()) for name, value in request.headers]
        limit = self.max_response_bytes
        target = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)
        async with self._pool.stream(
            request.method,
            target,
            headers=headers,
            content=request.body,
            extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)},
        ) as response:
            status = response.status
            response_headers = [
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers
            ]
            length = _header(response_headers, "content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise _TooLong(status, response_headers, b"", limit)
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > limit:
                    raise _TooLong(status, response_headers, bytes(body), limit)
        return status, response_headers, bytes(body)


class _TooLong(Exception):
    def __init__(self, status: int, headers: list[tuple[str, str]], start: bytes, limit: int) -> None:
        super().__init__(f"the response is longer than {limit} bytes")
        self.status = status
        self.headers = headers
        self.start = start


class _GuardedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network with every TCP connection checked: resolved once, judged by the policy, and
    opened to a permitted address."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface: the connect phase's bound)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in await self._permitted_addresses(host, port):
            try:
                return await self._network.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc  # the next address may answer, as it would for a browser
        assert failure is not None
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)

    async def _permitted_addresses(self, host: str, port: int) -> list[IPAddress]:
        refusal = self._policy.host_refusal(host)
        if refusal is not None:
            raise TargetRefusedError(refusal)
        literal = _literal_address(host)
        addresses = [literal] if literal is not None else await self._resolver(host, port)
        if not addresses:
            raise ResolutionError(f"{host} has no address")
        refusals = {address: self._policy.address_refusal(host, address) for address in addresses}
        permitted = [address for address, refusal in refusals.items() if refusal is None]
        if not permitted:
            reasons = "; ".join(str(refusal) for refusal in refusals.values())
            raise TargetRefusedError(reasons if literal is not None else f"{host} resolves to: {reasons}")
        return permitted


def _outcome(
    request: RecordedRequest,
    response: RecordedResponse,
    duration_ms: int,
    headers: list[tuple[str, str]],
    body: bytes,
) -> FetchResult:
    status = response.status
    if status in SUCCESS_STATUSES:
        if status == 204 or not body.strip():
            return FetchSucceeded(request, response, duration_ms, data=None)
        try:
            data = json_codec.loads(body)
        except ValueError as exc:
            return FetchFailed(request, response, duration_ms, error=f"the response is not JSON: {exc}")
        if not isinstance(data, dict):
            kind = type(data).__name__ if data is not None else "null"
            return FetchFailed(
                request, response, duration_ms, error=f"the response is JSON but not an object ({kind})"
            )
        return FetchSucceeded(request, response, duration_ms, data=data)
    error = f"the server answered {status}"
    if status == 429 or status >= 500:
        return FetchRetryable(request, response, duration_ms, error=error, retry_after=_retry_after(headers))
    if 300 <= status < 400:
        location = _header(headers, "location")
        error += f", a redirect (to {location}), which is not followed" if location else ", a redirect"
    else:
        error += "; a fetch step expects 200, 201 or 204"
    return FetchFailed(request, response, duration_ms, error=error)


def _retry_after(headers: list[tuple[str, str]]) -> float | None:
    """The wait `retry-after` asks for: seconds, or a date, taken relative to the response's own `date`
    so that the two hosts' clocks need not agree."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        until = parsedate_to_datetime(value)
        date = _header(headers, "date")
        now = parsedate_to_datetime(date).timestamp() if date else time.time()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, until.timestamp() - now)


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _recorded_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, REDACTED if _SECRET_NAME.search(name) else value[:MAX_HEADER_VALUE_CHARACTERS])
        for name, value in list(headers)[:MAX_RECORDED_HEADERS]
    )


def _redacted_url(url: httpx.URL) -> str:
    if url.password:
        url = url.copy_with(username=url.username, password=REDACTED)
    if not any(_SECRET_NAME.search(name) for name in url.params):
        return str(url)
    params = [
        (name, REDACTED if _SECRET_NAME.search(name) else value) for name, value in url.params.multi_items()
    ]
    return str(url.copy_with(params=params))


def _excerpt(body: bytes) -> str:
    return body[: EXCERPT_CHARACTERS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARACTERS]


def _reason(exc: BaseException) -> str:
    """The error's message, or its kind when it has none (httpcore's are sometimes empty)."""
    return str(exc) or type(exc).__name__


def _literal_address(host: str) -> IPAddress | None:
    """The address a URL's host is, when it is one rather than a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None

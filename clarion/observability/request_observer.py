"""The one middleware every HTTP request passes first: it names the request, times it and counts it.

- Every response carries `x-request-id`: the client's own, when it sent a sane one (so that its logs and
  Clarion's meet), else a new one: a random prefix drawn once per process and a sequence number, unique
  without a random draw per request (a UUID from `clarion.store.ids` cost four times as much). The id
  is in `REQUEST_ID` while the request is served, for the log lines written meanwhile.
- Each request is counted in the latency histogram by its route's path template (`/v1/users/{user_id}`),
  never its raw path, so that the metric's series stay as few as the routes. The template is that of the
  route the request matched, which the known-route dispatch and Starlette's router both leave in the
  scope as `route`; a request that matched none counts as `unmatched`.
- With INFO enabled (`CLARION_LOG_FORMAT=json`), one access-log line per request.

It wraps the whole application, Starlette's error middleware included, so that a 500 is counted and
carries its id too. It is plain ASGI, a few microseconds a request: Starlette's `BaseHTTPMiddleware` runs
the application in a task of its own and costs tens."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clarion.api.headers import request_header
from clarion.observability.logging_setup import REQUEST_ID
from clarion.observability.request_latencies import RequestLatencies

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED_ROUTE = "unmatched"
NO_RESPONSE = 499
"""The status counted for a request answered nothing, its client gone first (nginx's code for it)."""

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
"""What a client's own request id may be: short, and safe to copy into a header and a log line."""

access_logger = logging.getLogger("clarion.access")


class _RequestIds:
    """28 hex digits: 16 random ones drawn at start (and again in a forked child), then a sequence."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)

    def restart(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._sequence = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._sequence):012x}"


_request_ids = _RequestIds()


def request_id_of(scope: Scope) -> str:
    given = request_header(scope, REQUEST_ID_HEADER)
    if given is not None and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return _request_ids.new()


class RequestObserver:
    def __init__(self, app: ASGIApp, latencies: RequestLatencies) -> None:
        self.app = app
        self.latencies = latencies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        status = NO_RESPONSE

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: a response's headers may be a list it keeps and sends again.
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template: str = getattr(route, "path", UNMATCHED_ROUTE)
            method: str = scope["method"]
            self.latencies.observe(template, method, status, seconds)
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %d %.1f ms",
                    method,
                    scope["path"],
                    status,
                    seconds * 1000,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": template,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "request_id": request_id,
                    },
                )
            REQUEST_ID.reset(token)

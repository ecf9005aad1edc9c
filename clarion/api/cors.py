"""CORS for browsers: requests that carry an `Origin` header get Starlette's CORS handling; the rest pass
straight through.

Only browsers send `Origin`, and only browsers act on CORS headers, so server-side SDK calls (the bulk of
the traffic) skip the middleware's per-response header work. An error that escapes the app below is
answered here, inside the CORS handling, for the same reason endpoints answer their own
(`clarion.api.endpoint`): Starlette's outermost error middleware would answer without CORS headers, and a
browser would see a CORS failure instead of the status.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clarion.api.errors import unexpected_error_response
from clarion.api.headers import request_header


class BrowserCORSMiddleware:
    def __init__(self, app: ASGIApp, allow_origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            _AnsweringErrors(app),
            allow_origins=allow_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["*"],
            expose_headers=["retry-after"],
            max_age=3600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and request_header(scope, b"origin") is not None:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _AnsweringErrors:
    """Answers an exception from `app` as `clarion.api.errors` does, unless the response had begun (then
    the exception goes on up: there is no answering it any more)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            response = unexpected_error_response(Request(scope, receive), exc)
            await response(scope, receive, send)

"""CORS for browsers: requests that carry an `Origin` header get Starlette's CORS handling; the rest pass
straight through.

Only browsers send `Origin`, and only browsers act on CORS headers, so server-side SDK calls (the bulk of
the traffic) skip the middleware's per-response header work.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from clarion.api.headers import request_header


class BrowserCORSMiddleware:
    def __init__(self, app: ASGIApp, allow_origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
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

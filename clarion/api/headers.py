"""Reading a request header straight from the ASGI scope's list, whose names the server gives in lower case.

Starlette's `Headers` mapping builds itself on first use and lowers and encodes the name at every lookup,
several times the cost of this scan; a request looks up three or four headers.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Scope


def request_header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (in lower case), if the request has it."""
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None

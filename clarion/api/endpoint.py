"""Declaring a Knock endpoint: its path, method, rate-limit tier and whether publishable keys may call it.

`route()` wraps a handler so that every request is authenticated, checked against the key's permissions
and counted against its tier before the handler runs; the handler receives a `RequestContext` naming the
caller's environment. Nothing reaches a handler unauthenticated. Publishable-key requests also have their
signed user token checked (`clarion.api.user_tokens`); secret-key requests skip that entirely.

The wrapped handler is a plain ASGI app that answers every error itself (`clarion.api.errors`), rather
than a function Starlette wraps in a second layer of exception handling: that layer costs as much as a
point read. Answering here, inside the CORS middleware, also gives browsers the CORS headers on a 500 or
503, which Starlette's outermost error middleware would answer without them. While the database is known
to be unreachable, requests are refused with a 503 before any work (`clarion.store.availability`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_to_bytes

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from clarion.api.contract import Contract, QueryParameter
from clarion.api.errors import clarion_error_response, unexpected_error_response
from clarion.api.headers import request_header
from clarion.api.user_tokens import check_user_token
from clarion.errors import ClarionError, ForbiddenError, InvalidInputError
from clarion.store.environments import ApiKey, KeyKind

if TYPE_CHECKING:
    from clarion.runtime import Runtime


@dataclass(slots=True)  # made per request: a frozen one costs three times as much
class RequestContext:
    api_key: ApiKey
    runtime: Runtime
    token_user: str | None = None
    """The user a publishable-key request's signed user token names: it may act on that user's data only."""

    @property
    def environment_id(self) -> str:
        return self.api_key.environment.id


Handler = Callable[[Request, RequestContext], Awaitable[Response]]


def route(
    path: str,
    method: str,
    handler: Handler,
    *,
    tier: int,
    client: bool = False,
    body: Any = None,
    response: Any = None,
    query: Sequence[QueryParameter] = (),
    note: str = "",
) -> Route:
    """A Starlette route for `handler`. `client=True` lets publishable keys call it (Knock's client-side
    endpoints); `tier` is the spec's `x-ratelimit-tier`. `body`, `response`, `query` and `note` describe it
    in Clarion's OpenAPI document (`clarion.api.contract`)."""
    contract = Contract(body=body, response=response, query=tuple(query), note=note)
    endpoint = Endpoint(handler, f"{method} {path}", tier, client, contract)
    return Route(path, endpoint, methods=[method], name=handler.__name__)


class Endpoint:
    def __init__(self, handler: Handler, name: str, tier: int, client: bool, contract: Contract) -> None:
        self.handler = handler
        self.name = name
        self.tier = tier
        self.client = client
        self.contract = contract

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.respond(request)
        except ClarionError as exc:
            response = clarion_error_response(exc)
        except ClientDisconnect:
            return  # gone before its body arrived: nothing was done and nobody is left to answer
        except Exception as exc:
            response = unexpected_error_response(request, exc)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        _refuse_unstorable_text(request)
        runtime: Runtime = request.app.state.runtime
        runtime.database.availability.check()
        api_key = await runtime.keys.authenticate(request_header(request.scope, b"authorization"))
        token_user = None
        if api_key.kind is KeyKind.PUBLISHABLE:
            if not self.client:
                raise ForbiddenError(
                    "This endpoint needs a secret key; publishable keys may call only client-side endpoints"
                )
            token_user = check_user_token(request, api_key.environment)
        if runtime.rate_limiter.applies_to(api_key):
            user_id = request.path_params.get("user_id")
            await runtime.rate_limiter.check(api_key, self.tier, self.name, user_id)
        return await self.handler(
            request, RequestContext(api_key=api_key, runtime=runtime, token_user=token_user)
        )


def _refuse_unstorable_text(request: Request) -> None:
    """Refuse, in the path and query of every request, NUL characters (PostgreSQL cannot store them) and
    percent-escapes that are not UTF-8 (decoded, they would all become U+FFFD, so distinct ids would meet)."""
    path: str = request.scope["path"]
    if "\x00" in path:
        names = [name for name, value in request.path_params.items() if "\x00" in str(value)]
        raise InvalidInputError.field(names[0] if names else "path", "must not contain the NUL character")
    if "\ufffd" in path:
        _refuse_non_utf8_path(request)
    query: bytes = request.scope["query_string"]
    if b"%00" in query:
        names = [name for name, value in request.query_params.multi_items() if "\x00" in value]
        raise InvalidInputError.field(names[0] if names else "query", "must not contain the NUL character")
    if b"%" in query and _NON_ASCII_ESCAPE.search(query):
        _refuse_non_utf8_query(query)


_NON_ASCII_ESCAPE = re.compile(rb"%[89a-fA-F]")
_NOT_UTF8 = "must be valid UTF-8 (percent-escapes that decode to UTF-8)"


def _is_utf8(escaped: bytes) -> bool:
    try:
        unquote_to_bytes(escaped).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _refuse_non_utf8_path(request: Request) -> None:
    raw_path: bytes | None = request.scope.get("raw_path")
    if raw_path is None:
        return  # a server that keeps no raw path leaves nothing to tell a bad escape from a real U+FFFD
    bad = {
        unquote(segment.decode("latin-1"))
        for segment in raw_path.split(b"?")[0].split(b"/")
        if not _is_utf8(segment)
    }
    if bad:
        names = [name for name, value in request.path_params.items() if value in bad]
        raise InvalidInputError.field(names[0] if names else "path", _NOT_UTF8)


def _refuse_non_utf8_query(query: bytes) -> None:
    for pair in query.split(b"&"):
        name, _, value = pair.replace(b"+", b" ").partition(b"=")
        if not (_is_utf8(name) and _is_utf8(value)):
            raise InvalidInputError.field(unquote(name.decode("latin-1")) or "query", _NOT_UTF8)


def path_param(request: Request, name: str) -> str:
    """A path parameter, refused when empty or longer than Knock's identifiers allow."""
    value: str = request.path_params[name]
    if not value or len(value) > 255:
        raise InvalidInputError.field(name, "must be between 1 and 255 characters")
    return value

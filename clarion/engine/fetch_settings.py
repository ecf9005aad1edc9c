"""A fetch step's settings: the `settings` of Knock's `WorkflowFetchStep`, that is its `RequestTemplate`
(`method`, `url`, `headers`, `query_params`, `body`) and the CLI's `response_path` and `signing_key`;
checked at push, rendered per run into the request to send, and the rule by which the response's data
joins the run's.

- `method`: get (Knock's default when left out), post, put, delete or patch.
- `url`, `headers`, `query_params` and `body` are Liquid, parsed at push. `headers` and `query_params`
  are a list of `{key, value}` (both Liquid) or one template that renders to a JSON object, such as
  `{{ data.request_headers | json }}` (Liquid prints an object as no JSON without the filter). The body
  must render to JSON, or to nothing; it is sent, as `application/json`, with post and put as Knock
  documents, and with patch, which would be of no use without one.
- `response_path`: where in `data` the response goes, dotted (`foo.bar`); without it the response is
  merged into `data` at the top level. Not Liquid, as in Knock.
- `signing_key`: when set, the request carries `x-knock-signature: t=<ms>,s=<signature>`, the signature
  being the base64 HMAC-SHA256 of `<ms>.<body>` under the key, as Knock signs its outbound webhooks.

Rendering raises `TemplateError` for Liquid that fails and `InvalidFetchRequestError` for a request that
cannot be sent (no http(s) URL, a body that is not JSON, a header that is not one); Knock fails the step
on either without retrying. Sending is `clarion.engine.outbound_http`'s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from clarion import __version__
from clarion.engine.outbound_http import SCHEMES, OutboundRequest
from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import SharedRenders, TemplateError, TemplateRenderer
from clarion.errors import ClarionError

METHODS: Final = ("get", "post", "put", "delete", "patch")
BODY_METHODS: Final = frozenset({"post", "put", "patch"})
SIGNATURE_HEADER: Final = "x-knock-signature"
USER_AGENT: Final = f"Clarion/{__version__}"
SET_BY_CLARION: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
"""Headers that follow from the request itself; a step that set them would contradict what is sent."""

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
"""A header name (RFC 9110's token)."""

KeyValues = str | tuple[tuple[str, str], ...]
"""Headers or query parameters: one template rendering to a JSON object, or (key, value) templates."""

Renders = TemplateRenderer | SharedRenders


class InvalidFetchRequestError(ClarionError):
    """A fetch step's rendered request cannot be sent; the step fails without retrying."""


@dataclass(frozen=True)
class FetchSettings:
    method: str
    """Lower case, one of `METHODS`."""
    url: str
    headers: KeyValues
    query_params: KeyValues
    body: str | None
    response_path: tuple[str, ...] | None
    """The keys of `response_path`, outermost first; None merges at the top of `data`."""
    signing_key: str | None

    def render(
        self, renderer: Renders, scope: Mapping[str, Any], *, name: str = "http_fetch"
    ) -> OutboundRequest:
        """The request for one run, whose template scope is `scope`; templates are named `name.url`,
        `name.headers.0.value`, …. Raises `TemplateError` or `InvalidFetchRequestError`."""
        url = _url(renderer.render(self.url, scope, name=f"{name}.url").strip())
        headers = _key_values(renderer, self.headers, scope, f"{name}.headers")
        for key, value in headers:
            _check_header(key, value)
        params = _key_values(renderer, self.query_params, scope, f"{name}.query_params")
        if params:
            url = url.copy_merge_params(tuple(params))
        given = {key.lower() for key, _ in headers}
        if url.userinfo:
            # Sent as the header it stands for, so that it is redacted like any Authorization.
            if "authorization" not in given:
                credentials = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
                headers.append(("Authorization", f"Basic {credentials}"))
            url = url.copy_with(userinfo=b"")
        body = self._body(renderer, scope, name)
        defaults = [("User-Agent", USER_AGENT), ("Accept", "application/json")]
        if body is not None:
            defaults.append(("Content-Type", "application/json"))
        headers += [(key, value) for key, value in defaults if key.lower() not in given]
        if self.signing_key:
            headers.append((SIGNATURE_HEADER, sign(self.signing_key, body or b"")))
        return OutboundRequest(method=self.method.upper(), url=url, headers=tuple(headers), body=body)

    def _body(self, renderer: Renders, scope: Mapping[str, Any], name: str) -> bytes | None:
        if self.body is None or self.method not in BODY_METHODS:
            return None
        text = renderer.render(self.body, scope, name=f"{name}.body").strip()
        if not text:
            return None
        try:
            json.loads(text)
        except ValueError as exc:
            raise InvalidFetchRequestError(f"the body is not JSON: {exc}") from exc
        return text.encode()


def sign(key: str, body: bytes, *, now_ms: int | None = None) -> str:
    """The `x-knock-signature` value for `body`: `t=<milliseconds>,s=<base64 HMAC-SHA256 of "<t>.<body>">`."""
    timestamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"t={timestamp},s={base64.b64encode(digest).decode('ascii')}"


def merge_fetched_data(
    data: Mapping[str, Any], fetched: Mapping[str, Any] | None, response_path: tuple[str, ...] | None
) -> Mapping[str, Any]:
    """The run's `data` after a fetch answered `fetched`, as Knock merges it: without a response path,
    a shallow merge (the response's top-level keys replace the run's, nested objects whole); with one,
    the response placed at the path, the objects on the way kept or made (and a value that is not an
    object on the way replaced by one). No body leaves `data` as it was. `data` itself is not changed:
    it may be shared with other runs (`clarion.engine.frozen`)."""
    if fetched is None:
        return data
    if response_path is None:
        return {**data, **fetched}
    merged = dict(data)
    parent = merged
    for key in response_path[:-1]:
        child = parent.get(key)
        parent[key] = dict(child) if isinstance(child, Mapping) else {}
        parent = parent[key]
    parent[response_path[-1]] = dict(fetched)
    return merged


def parse_fetch_settings(data: Any, field: str, renderer: TemplateRenderer) -> FetchSettings:
    """Checked settings of a fetch step; `field` is their dotted path (`steps.2.settings`), which a
    `DefinitionError` extends to name the field at fault."""
    if not isinstance(data, dict):
        raise DefinitionError(field, "must be an object with `method` and `url`")
    method = data.get("method", "get")
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise DefinitionError(f"{field}.method", f"must be one of {', '.join(METHODS)}")
    url = data.get("url")
    if not isinstance(url, str) or not url.strip():
        raise DefinitionError(f"{field}.url", "is required" if url is None else "must be a non-empty string")
    _liquid(renderer, url, f"{field}.url")
    if "{" not in url:
        try:
            _url(url.strip())
        except InvalidFetchRequestError as exc:
            raise DefinitionError(f"{field}.url", exc.message) from exc
    body = data.get("body")
    if body is not None:
        if not isinstance(body, str):
            raise DefinitionError(f"{field}.body", "must be a string (a JSON template)")
        _liquid(renderer, body, f"{field}.body")
    return FetchSettings(
        method=method.lower(),
        url=url,
        headers=_parse_key_values(data.get("headers"), f"{field}.headers", renderer, headers=True),
        query_params=_parse_key_values(data.get("query_params"), f"{field}.query_params", renderer),
        body=body,
        response_path=_response_path(data.get("response_path"), f"{field}.response_path"),
        signing_key=_optional_text(data.get("signing_key"), f"{field}.signing_key"),
    )


def _liquid(renderer: TemplateRenderer, source: str, field: str) -> None:
    try:
        renderer.parse(source, name=field)
    except TemplateError as exc:
        raise DefinitionError(field, f"is not valid Liquid: {exc}") from exc


def _optional_text(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise DefinitionError(field, "must be a string")
    return value or None


def _response_path(value: Any, field: str) -> tuple[str, ...] | None:
    text = _optional_text(value, field)
    if text is None:
        return None
    keys = tuple(text.strip().split("."))
    if not all(keys):
        raise DefinitionError(field, "must be keys joined by dots, such as `customer.profile`")
    return keys


def _parse_key_values(
    value: Any, field: str, renderer: TemplateRenderer, *, headers: bool = False
) -> KeyValues:
    if value is None:
        return ()
    if isinstance(value, str):
        _liquid(renderer, value, field)
        return value
    if not isinstance(value, list):
        raise DefinitionError(
            field, "must be a list of `{key, value}` objects or a template of a JSON object"
        )
    pairs = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise DefinitionError(f"{field}.{index}", "must be an object with `key` and `value`")
        pair = []
        for part in ("key", "value"):
            text = item.get(part)
            if not isinstance(text, str):
                problem = "is required" if text is None else "must be a string"
                raise DefinitionError(f"{field}.{index}.{part}", problem)
            _liquid(renderer, text, f"{field}.{index}.{part}")
            pair.append(text)
        key, text = pair
        if not key.strip():
            raise DefinitionError(f"{field}.{index}.key", "must not be empty")
        if headers and "{" not in key:
            try:
                _check_header(key.strip(), "")
            except InvalidFetchRequestError as exc:
                raise DefinitionError(f"{field}.{index}.key", exc.message) from exc
        pairs.append((key, text))
    return tuple(pairs)


def _key_values(
    renderer: Renders, value: KeyValues, scope: Mapping[str, Any], name: str
) -> list[tuple[str, str]]:
    if isinstance(value, tuple):
        pairs = [
            (
                renderer.render(key, scope, name=f"{name}.{index}.key").strip(),
                renderer.render(text, scope, name=f"{name}.{index}.value").strip(),
            )
            for index, (key, text) in enumerate(value)
        ]
        for key, _ in pairs:
            if not key:
                raise InvalidFetchRequestError(f"{name}: a key renders empty")
        return pairs
    text = renderer.render(value, scope, name=name).strip()
    if not text:
        return []
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise InvalidFetchRequestError(
            f"{name} must render to a JSON object (print one with the `json` filter), not {text[:100]!r}"
        )
    pairs = []
    for key, item in document.items():
        if item is None:
            continue
        if isinstance(item, dict | list):
            raise InvalidFetchRequestError(
                f"{name}: the value of {key!r} must be text, a number or a boolean"
            )
        pairs.append((key, item.strip() if isinstance(item, str) else json.dumps(item)))
    return pairs


def _url(text: str) -> httpx.URL:
    if not text:
        raise InvalidFetchRequestError("the URL renders empty")
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise InvalidFetchRequestError(f"{text[:200]!r} is not a valid URL: {exc}") from exc
    if url.scheme not in SCHEMES or not url.host:
        raise InvalidFetchRequestError(f"{text[:200]!r} is not an http or https URL")
    return url


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.match(name):
        raise InvalidFetchRequestError(f"{name[:100]!r} is not a valid header name")
    if name.lower() in SET_BY_CLARION:
        raise InvalidFetchRequestError(f"the {name} header is set by Clarion from the request itself")
    if any(character in value for character in "\r\n\0"):
        raise InvalidFetchRequestError(f"the value of the {name} header holds a line break or NUL")

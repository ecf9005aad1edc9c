"""Reading request bodies: size limit, JSON parsing and validation into a schema, with Knock's errors.

A body over `MAX_BODY_BYTES` is refused with 413 before it is parsed; malformed JSON is a 400; a body that
parses but does not fit the schema is a 422 `invalid_params` naming every bad field. Strings holding the
NUL character are refused too: PostgreSQL cannot store it, and both stores must answer alike.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from clarion.api.headers import request_header
from clarion.errors import FieldError, InvalidInputError

MAX_BODY_BYTES = 10 * 1024 * 1024

Model = TypeVar("Model", bound=BaseModel)


async def read_body(request: Request) -> bytes:
    declared = request_header(request.scope, b"content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    # Straight from the ASGI messages: Starlette's `stream()` generator costs more than a small body.
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large() -> InvalidInputError:
    return InvalidInputError(
        f"The request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB",
        code="request_too_large",
        status=413,
    )


def field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "body"
        errors.append(FieldError(location, error["msg"], error["type"]))
    return errors


def _nul_location(value: Any, path: str) -> str | None:
    """The dotted path of the first key or string holding a NUL character, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return where
            found = _nul_location(item, where)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_location(item, f"{path}.{index}" if path else str(index))
            if found:
                return found
    return None


def parse_json(raw: bytes, model: type[Model]) -> Model:
    if not raw.strip():
        raise InvalidInputError("The request body must be a JSON object", code="invalid_json", status=400)
    if b"\\u0000" in raw:
        try:
            location = _nul_location(json.loads(raw), "")
        except ValueError:
            location = None
        if location is not None:
            raise InvalidInputError.field(location or "body", "must not contain the NUL character (\\u0000)")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        if any(error.type == "json_invalid" for error in errors):
            raise InvalidInputError(
                "The request body is not valid JSON", code="invalid_json", status=400, errors=errors
            ) from exc
        raise InvalidInputError(errors=errors) from exc


async def read_json(request: Request, model: type[Model]) -> Model:
    return parse_json(await read_body(request), model)

"""Reading request bodies: size limit, JSON parsing and validation into a schema, with Knock's errors.

A body over `MAX_BODY_BYTES` is refused with 413 before it is parsed; malformed JSON is a 400; a body that
parses but does not fit the schema is a 422 `invalid_params` naming every bad field. Strings holding the
NUL character are refused too: PostgreSQL cannot store it, and both stores must answer alike. `NaN`,
`Infinity` and numbers beyond a double's range are not JSON (Pydantic's parser reads them all the same):
they are a 400 `invalid_json` naming where they stand. Nesting is bounded by Pydantic's parser (about
200 levels, a 400 past it), so what reaches a handler is shallow enough for any recursive walk.
"""

from __future__ import annotations

import json
import math
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


# Digits read as "0", `E` as `e` and `+` dropped: a number beyond a double's range has an exponent of three
# digits or more ("e000" once translated) or, with an exponent of two digits at most, over 200 digits.
_NUMBER_SHAPES = bytes.maketrans(b"0123456789E", b"0000000000e")
_LONG_DIGIT_RUN = b"0" * 200


def _may_hold_unstorable(raw: bytes) -> bool:
    """Whether the body may hold a NUL character or a number JSON has no place for; cheap and with false
    positives (the same bytes inside a string), which the full check `_first_unstorable` then clears."""
    if b"\\u0000" in raw or b"NaN" in raw or b"Infinity" in raw:
        return True
    shapes = raw.translate(_NUMBER_SHAPES, b"+")
    return b"e000" in shapes or _LONG_DIGIT_RUN in shapes


def _nul_in(location: str) -> InvalidInputError:
    return InvalidInputError.field(location or "body", "must not contain the NUL character (\\u0000)")


def _not_finite(location: str) -> InvalidInputError:
    return InvalidInputError(
        "The request body is not valid JSON: it holds NaN, Infinity or a number beyond a double's range",
        code="invalid_json",
        status=400,
        errors=[FieldError(location or "body", "must be a finite number", "json_invalid")],
    )


def _first_unstorable(document: Any) -> InvalidInputError | None:
    """The refusal of the first string or key holding a NUL character or the first non-finite number, if
    any, naming its dotted path. Iterative, so that no nesting can exhaust the stack."""
    pending: list[tuple[Any, str]] = [(document, "")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return _nul_in(path)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return _not_finite(path)
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return _nul_in(where)
                children.append((item, where))
            pending.extend(reversed(children))
        elif isinstance(value, list):
            items = [(item, f"{path}.{index}" if path else str(index)) for index, item in enumerate(value)]
            pending.extend(reversed(items))
    return None


def _refuse_unstorable(raw: bytes) -> None:
    try:
        # The standard module reads NaN, Infinity and out-of-range numbers as floats, so they can be located.
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not a document Pydantic's parser reads either: it answers why
    refusal = _first_unstorable(document)
    if refusal is not None:
        raise refusal


def parse_json(raw: bytes, model: type[Model]) -> Model:
    if not raw.strip():
        raise InvalidInputError("The request body must be a JSON object", code="invalid_json", status=400)
    if _may_hold_unstorable(raw):
        _refuse_unstorable(raw)
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

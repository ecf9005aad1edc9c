"""Query-string values in the encodings Knock's SDKs send (`key[]=a&key[]=b`, `key=a`)."""

from __future__ import annotations

from starlette.requests import Request

from clarion.errors import InvalidInputError


def query_list(request: Request, name: str) -> list[str]:
    params = request.query_params
    return params.getlist(f"{name}[]") + params.getlist(name)


def query_choices(request: Request, name: str, allowed: frozenset[str]) -> set[str]:
    values = set(query_list(request, name))
    unknown = values - allowed
    if unknown:
        choices = ", ".join(sorted(allowed))
        raise InvalidInputError.field(name, f"must be one of: {choices}")
    return values


def query_bool(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None or value in ("false", "0", ""):
        return False
    if value in ("true", "1"):
        return True
    raise InvalidInputError.field(name, "must be true or false")

"""Query-string values in the encodings Knock's SDKs send (`key[]=a&key[]=b`, `key=a`, `key[][id]=a`)."""

from __future__ import annotations

import re

from starlette.requests import Request

from clarion.errors import InvalidInputError


def query_list(request: Request, name: str) -> list[str]:
    params = request.query_params
    return params.getlist(f"{name}[]") + params.getlist(name)


_NESTED = re.compile(r"(?P<name>[^\[]+)\[(?P<index>\d*)\](?:\[(?P<field>[^\]]+)\])?")


def query_references(request: Request, name: str) -> list[str | dict[str, str]]:
    """A list whose items are strings or flat objects, in query order: `name[]=a` and `name=a` give "a";
    `name[][id]=p&name[][collection]=c` (a field repeating starts the next object) and
    `name[0][id]=p&name[0][collection]=c` give {"id": "p", "collection": "c"}."""
    items: list[str | dict[str, str]] = []
    indexed: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for key, value in request.query_params.multi_items():
        match = _NESTED.fullmatch(key)
        if key == name or (match is not None and match["name"] == name and match["field"] is None):
            items.append(value)
            current = None
        elif match is not None and match["name"] == name:
            index, field = match["index"], match["field"]
            if index:
                if index not in indexed:
                    indexed[index] = {}
                    items.append(indexed[index])
                indexed[index][field] = value
                current = None
            else:
                if current is None or field in current:
                    current = {}
                    items.append(current)
                current[field] = value
    return items


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

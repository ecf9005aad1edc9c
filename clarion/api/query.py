"""Query-string values in the encodings Knock's SDKs send (`key[]=a&key[]=b`, `key=a`, `key[][id]=a`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

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


def timestamp_param(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError.field(name, "must be an ISO-8601 timestamp") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def query_timestamp(request: Request, name: str) -> datetime | None:
    """A moment (UTC when it names no offset), or None when the parameter is absent; an empty value is no
    moment and is refused."""
    value = request.query_params.get(name)
    return None if value is None else timestamp_param(name, value)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def query_uuid(request: Request, name: str) -> str | None:
    """A parameter Knock types as a UUID, or None when it is absent."""
    value = request.query_params.get(name)
    if value is not None and not _UUID.fullmatch(value):
        raise InvalidInputError.field(name, "must be a UUID")
    return value

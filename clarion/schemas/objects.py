"""Objects on the wire: `Object`, the set request, the list response, and the rule for collection names.

An object's custom properties (name, locale and timezone included) go out nested under `properties`, as in
Knock's `Object`; a caller-supplied `created_at` is the object's `created_at`, otherwise it is null.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ConfigDict, Field

from clarion.errors import InvalidInputError
from clarion.schemas.base import PageInfo, ResponseModel, Timestamp, TypedResponseModel
from clarion.schemas.recipients import ObjectUpsertRequest
from clarion.store.recipients import RecipientRecord
from clarion.store.tables import TENANTS_COLLECTION

_COLLECTION = re.compile(r"[A-Za-z0-9_.-]{1,255}")


def validate_collection(collection: str, *, field: str = "collection") -> str:
    """A collection name: letters, digits, `-`, `_` and `.`, at most 255 characters. Names starting with
    `$` are reserved; of them only `$tenants` is addressable as objects (Knock's docs read tenants' channel
    data through the objects API)."""
    if collection == TENANTS_COLLECTION or _COLLECTION.fullmatch(collection):
        return collection
    if collection.startswith("$"):
        raise InvalidInputError.field(field, f"{collection!r} is a reserved collection")
    raise InvalidInputError.field(
        field, "must be 1 to 255 characters among letters, digits, '-', '_' and '.'"
    )


class SetObjectRequest(ObjectUpsertRequest):
    """Set an object: everything beyond `channel_data` and `preferences` is a custom property."""


class Object(TypedResponseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    typename: str = Field(default="Object", alias="__typename")
    id: str
    collection: str
    created_at: Any = None
    updated_at: Timestamp
    properties: dict[str, Any]

    @classmethod
    def from_record(cls, record: RecipientRecord, **extra: Any) -> Object:
        properties = dict(record.properties)
        created_at = properties.pop("created_at", None)
        return cls.trusted(
            {
                "id": record.id,
                "collection": record.collection,
                "created_at": created_at,
                "updated_at": record.updated_at,
                "properties": properties,
            },
            extra,
        )


class ListObjectsResponse(ResponseModel):
    entries: list[Object]
    page_info: PageInfo

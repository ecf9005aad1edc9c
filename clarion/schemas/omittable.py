"""Request fields a caller may leave out but not set to null, where Knock's document does not allow null.

`Omittable[T]` is `None` when the key is missing (its default, which Pydantic does not validate) and refuses
an explicit `null` as an invalid field, so that the 422 names it. The check runs after validation, never
before: a validator ahead of the field's own would hand it Python values instead of JSON ones, and strict
mode accepts timestamps and enums as strings from JSON only. Fields Knock documents as nullable stay plain
`T | None`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

T = TypeVar("T")


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "Input may be left out but must not be null")
    return value


class _NotNullInSchema:
    """Describes the field without its null branch in the JSON schema (`GET /openapi.json`), as it is
    validated."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        branches = [branch for branch in schema.get("anyOf", ()) if branch != {"type": "null"}]
        if not branches:
            return schema
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return {**branches[0], **rest} if len(branches) == 1 else {**rest, "anyOf": branches}


Omittable = Annotated[T | None, AfterValidator(_refuse_null), _NotNullInSchema()]

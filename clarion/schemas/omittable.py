"""Request fields a caller may leave out but not set to null, where Knock's document does not allow null.

`Omittable[T]` is `None` when the key is missing (its default, which Pydantic does not validate) and refuses
an explicit `null` as an invalid field, so that the 422 names it. The check runs after validation, never
before: a validator ahead of the field's own would hand it Python values instead of JSON ones, and strict
mode accepts timestamps and enums as strings from JSON only. Fields Knock documents as nullable stay plain
`T | None`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

T = TypeVar("T")


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "Input may be left out but must not be null")
    return value


Omittable = Annotated[T | None, AfterValidator(_refuse_null)]

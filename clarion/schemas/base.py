"""The base models every schema builds on: wire serialisation, `__typename`, Knock's timestamps.

Responses serialise by alias (so `typename` goes out as `__typename`) with timestamps as ISO-8601 UTC
ending in `Z`. Requests reject values of the wrong type instead of coercing them, as Knock does.

`ResponseModel.wire_fields` is the fast way out used by `clarion.api.responses`: the model's attributes
under their wire names, left for orjson to encode, which formats timestamps exactly as `format_timestamp`
does. A model with serializers of its own falls back to Pydantic's full serialisation.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WrapSerializer


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str)]


class RequestModel(BaseModel):
    """A request body: strict types, unknown keys refused unless the subclass allows them."""

    model_config = ConfigDict(strict=True, extra="forbid")


class OpenRequestModel(RequestModel):
    """A request body whose unknown keys are custom properties to keep."""

    model_config = ConfigDict(strict=True, extra="allow")


class ResponseModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def wire_fields(self) -> dict[str, Any]:
        """The fields under their wire names, values not yet encoded (nested models stay models)."""
        names = _wire_names(type(self))
        if names is None:
            return self.to_wire()
        values = self.__dict__
        fields = {alias: values.get(name) for name, alias in names}
        extra = self.__pydantic_extra__
        if extra:
            fields.update(extra)
        return fields


ResponseT = TypeVar("ResponseT", bound=ResponseModel)


def with_custom_properties(entity: ResponseT, properties: Mapping[str, Any]) -> ResponseT:
    """`entity` carrying a recipient's custom properties beside its own fields. A property named like one
    of the entity's wire fields (`id`, `__typename`, …) never replaces that field."""
    own = _own_wire_names(type(entity))
    object.__setattr__(entity, "__pydantic_extra__", {k: v for k, v in properties.items() if k not in own})
    return entity


@functools.cache
def _own_wire_names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(field.alias or name for name, field in model.model_fields.items())


_WIRE_NAMES: dict[type[BaseModel], tuple[tuple[str, str], ...] | None] = {}


def _wire_names(model: type[BaseModel]) -> tuple[tuple[str, str], ...] | None:
    """(attribute, wire name) pairs of `model`, or None when it needs Pydantic to serialise it."""
    if model in _WIRE_NAMES:
        return _WIRE_NAMES[model]
    decorators = model.__pydantic_decorators__
    custom = bool(decorators.field_serializers or decorators.model_serializers) or any(
        isinstance(meta, PlainSerializer | WrapSerializer) and meta.func is not format_timestamp
        for field in model.model_fields.values()
        for meta in field.metadata
    )
    names = (
        None
        if custom
        else tuple(
            (name, field.serialization_alias or field.alias or name)
            for name, field in model.model_fields.items()
        )
    )
    _WIRE_NAMES[model] = names
    return names


class TypedResponseModel(ResponseModel):
    """A Knock entity: carries `__typename`."""

    typename: str = Field(alias="__typename")


class PageInfo(TypedResponseModel):
    typename: str = Field(default="PageInfo", alias="__typename")
    after: str | None
    before: str | None
    page_size: int

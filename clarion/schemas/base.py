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
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WrapSerializer
from pydantic_core import PydanticUndefined


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as Knock writes times."""
    return _utc_text(value.astimezone(UTC))


@functools.lru_cache(maxsize=1024)
def _utc_text(value: datetime) -> str:
    """Remembered for the moments seen last (the messages and events of a fan-out share theirs); keyed
    on UTC values only, since equal moments of other zones may print differently."""
    return value.isoformat().replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str)]


class RequestModel(BaseModel):
    """A request body: strict types, unknown keys refused unless the subclass allows them."""

    model_config = ConfigDict(strict=True, extra="forbid")


class OpenRequestModel(RequestModel):
    """A request body whose unknown keys are custom properties to keep."""

    model_config = ConfigDict(strict=True, extra="allow")


class ResponseModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @classmethod
    def trusted(cls, fields: dict[str, Any], extra: dict[str, Any] | None = None) -> Self:
        """An instance from values the store vouches for, unvalidated, as `model_construct` builds it but
        without its per-call walk over the model's fields (docs/decisions.md: why that is worth setting
        the instance's attributes here; tests/schemas/test_trusted.py holds Pydantic to them). `fields`
        must hold every field that has no default; `extra` holds the undeclared keys of models that allow
        them."""
        defaults, required, allows_extra = _construction(cls)
        for name in required:
            if name not in fields:
                raise TypeError(f"{cls.__name__} needs {name!r}")
        instance = cls.__new__(cls)
        object.__setattr__(instance, "__dict__", {**defaults, **fields})
        object.__setattr__(instance, "__pydantic_fields_set__", set(fields))
        object.__setattr__(instance, "__pydantic_extra__", extra if allows_extra else None)
        object.__setattr__(instance, "__pydantic_private__", None)
        return instance

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def wire_fields(self) -> dict[str, Any]:
        """The fields under their wire names, values not yet encoded (nested models stay models)."""
        names = _wire_names(type(self))
        if names is None:
            return self.to_wire()
        values = self.__dict__
        fields = {alias: values.get(name) for name, alias in names}
        extra = self.model_extra
        if extra:
            fields.update(extra)
        return fields


def custom_properties(model: type[BaseModel], properties: Mapping[str, Any]) -> dict[str, Any]:
    """A recipient's custom properties to carry beside `model`'s own fields: a property named like one of
    its wire fields (`id`, `__typename`, …) never replaces that field."""
    own = _own_wire_names(model)
    return {k: v for k, v in properties.items() if k not in own}


@functools.cache
def _construction(model: type[BaseModel]) -> tuple[dict[str, Any], tuple[str, ...], bool]:
    """What `ResponseModel.trusted` needs of `model`: its fields' defaults, the fields without one, and
    whether it keeps undeclared keys."""
    if model.__private_attributes__:
        raise TypeError(f"{model.__name__} has private attributes, which `trusted` does not set")
    fields = model.model_fields
    defaults = {
        name: field.default for name, field in fields.items() if field.default is not PydanticUndefined
    }
    required = tuple(name for name in fields if name not in defaults)
    return defaults, required, model.model_config.get("extra") == "allow"


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


def empty_page_info(page_size: int) -> dict[str, Any]:
    """The `page_info` of a list that fits on one page."""
    return {"__typename": "PageInfo", "after": None, "before": None, "page_size": page_size}

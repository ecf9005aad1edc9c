"""`ResponseModel.trusted` builds what `model_construct` builds, only faster: same fields, same wire form.

`trusted` sets a model instance's attributes itself, as `model_construct` does (docs/decisions.md says why).
Pydantic is pinned exactly; the layout tests below fail loudly if a release changes what an instance holds.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

import clarion.schemas
from clarion.api.responses import encode_json
from clarion.schemas.base import ResponseModel, custom_properties
from clarion.schemas.objects import Object
from clarion.schemas.tenants import TenantSettings
from clarion.schemas.users import User

NOW = datetime(2024, 5, 22, 12, 0, tzinfo=UTC)


def test_a_trusted_user_equals_the_model_constructed_one_on_the_wire() -> None:
    properties = {"name": "Ada", "id": "spoofed", "__typename": "Spoofed", "nested": {"a": [1]}}
    trusted = User.trusted(
        {"id": "ada", "created_at": None, "updated_at": NOW}, custom_properties(User, properties)
    )
    constructed = User.model_construct(
        id="ada", created_at=None, updated_at=NOW, name="Ada", nested={"a": [1]}
    )
    assert encode_json(trusted) == encode_json(constructed)
    assert trusted.model_dump(by_alias=True) == constructed.model_dump(by_alias=True)
    assert trusted.typename == "User"
    assert trusted.model_fields_set == {"id", "created_at", "updated_at"}


def test_defaults_fill_the_fields_not_given() -> None:
    settings = TenantSettings.trusted({})
    assert settings.branding is None and settings.preference_set is None


def test_extra_keys_are_dropped_on_models_that_do_not_keep_them() -> None:
    settings = TenantSettings.trusted({"branding": {"logo": "x"}}, {"stray": 1})
    assert encode_json(settings) == b'{"branding":{"logo":"x"},"preference_set":null}'


def test_a_missing_required_field_is_refused() -> None:
    with pytest.raises(TypeError, match="collection"):
        Object.trusted({"id": "o", "updated_at": NOW, "properties": {}})


def _response_models() -> Iterator[type[ResponseModel]]:
    for module in pkgutil.iter_modules(clarion.schemas.__path__):
        importlib.import_module(f"clarion.schemas.{module.name}")
    pending = [ResponseModel]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        yield model


def test_an_instance_holds_exactly_what_trusted_sets() -> None:
    assert BaseModel.__slots__ == (
        "__dict__",
        "__pydantic_fields_set__",
        "__pydantic_extra__",
        "__pydantic_private__",
    )


RESPONSE_MODELS: list[type[ResponseModel]] = sorted(_response_models(), key=lambda model: model.__qualname__)


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=str)
def test_trusted_sets_every_attribute_as_model_construct_does(model: type[ResponseModel]) -> None:
    fields: dict[str, Any] = {
        name: f"{name}-value" for name, field in model.model_fields.items() if field.is_required()
    }
    extra: dict[str, Any] = {"custom": {"nested": [1]}}
    trusted = model.trusted(fields, extra)
    constructed = model.model_construct(**extra, **fields)
    for attribute in BaseModel.__slots__:
        assert getattr(trusted, attribute) == getattr(constructed, attribute), attribute

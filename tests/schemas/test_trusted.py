"""`ResponseModel.trusted` builds what `model_construct` builds, only faster: same fields, same wire form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clarion.api.responses import encode_json
from clarion.schemas.base import custom_properties
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

"""Preference sets on the wire: `PreferenceSetRequest` and its parts as Knock's spec allows them, the bodies
of the single-section updates, and the `PreferenceSet` response.

Values are booleans, channel-type maps or condition lists exactly where the spec allows them; anything else
is refused with the offending field named. Channel types are Knock's six: email, sms, push, chat,
in_app_feed and http. A preference object may carry `"__strategy__": "merge" | "replace"`, which a tenant
default uses to force its value over a recipient's (`clarion.store.preference_merge`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    RootModel,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

from clarion.schemas.base import RequestModel, TypedResponseModel
from clarion.schemas.omittable import Omittable
from clarion.store.preferences import PersistenceStrategy, PreferenceSetRecord

PreferenceStrategy = Literal["merge", "replace"]

# Enum values arrive as JSON strings; lax mode converts them to the enum while still refusing non-members.
LaxPersistenceStrategy = Annotated[PersistenceStrategy, Strict(False)]


class ConditionOperator(StrEnum):
    EQUAL_TO = "equal_to"
    NOT_EQUAL_TO = "not_equal_to"
    GREATER_THAN = "greater_than"
    LESS_THAN = "less_than"
    GREATER_THAN_OR_EQUAL_TO = "greater_than_or_equal_to"
    LESS_THAN_OR_EQUAL_TO = "less_than_or_equal_to"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    EMPTY = "empty"
    NOT_EMPTY = "not_empty"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    CONTAINS_ALL = "contains_all"
    NOT_CONTAINS_ALL = "not_contains_all"
    IS_TIMESTAMP = "is_timestamp"
    IS_NOT_TIMESTAMP = "is_not_timestamp"
    IS_TIMESTAMP_ON_OR_AFTER = "is_timestamp_on_or_after"
    IS_TIMESTAMP_BEFORE = "is_timestamp_before"
    IS_TIMESTAMP_ON_OR_AFTER_DATE = "is_timestamp_on_or_after_date"
    IS_TIMESTAMP_BEFORE_DATE = "is_timestamp_before_date"
    IS_TIMESTAMP_BETWEEN = "is_timestamp_between"
    IS_BETWEEN = "is_between"
    IS_AUDIENCE_MEMBER = "is_audience_member"
    IS_NOT_AUDIENCE_MEMBER = "is_not_audience_member"


class Condition(RequestModel):
    variable: str
    operator: Annotated[ConditionOperator, Strict(False)]
    argument: str | None


class PreferenceSetChannelTypeSetting(RequestModel):
    conditions: list[Condition]


class PreferenceSetChannelSetting(RequestModel):
    conditions: list[Condition]


class PreferenceSetCommercialSubscribedSetting(RequestModel):
    conditions: list[Condition]


def _boolean_or(model: type[BaseModel]) -> PlainValidator:
    """Validate a `boolean | object` preference value by its JSON type, so that an error names the field
    rather than each member of the union."""

    def validate(value: Any) -> Any:
        if isinstance(value, bool | model):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError("bool_or_object", "Input should be a boolean or an object")
        return model.model_validate(value)

    return PlainValidator(validate, json_schema_input_type=bool | model)


def _dump_setting(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return value


_SETTING = PlainSerializer(_dump_setting, return_type=bool | dict[str, Any])

ChannelTypeValue = Annotated[
    bool | PreferenceSetChannelTypeSetting, _boolean_or(PreferenceSetChannelTypeSetting), _SETTING
]
ChannelValue = Annotated[
    bool | PreferenceSetChannelSetting, _boolean_or(PreferenceSetChannelSetting), _SETTING
]
CommercialSubscribedValue = Annotated[
    bool | PreferenceSetCommercialSubscribedSetting,
    _boolean_or(PreferenceSetCommercialSubscribedSetting),
    _SETTING,
]


class PreferenceSetChannelTypes(RequestModel):
    """Channel type → preference; unknown channel types are refused."""

    strategy: PreferenceStrategy | None = Field(default=None, alias="__strategy__")
    email: Omittable[ChannelTypeValue] = None
    sms: Omittable[ChannelTypeValue] = None
    push: Omittable[ChannelTypeValue] = None
    chat: Omittable[ChannelTypeValue] = None
    in_app_feed: Omittable[ChannelTypeValue] = None
    http: Omittable[ChannelTypeValue] = None


CHANNEL_TYPES = frozenset(name for name in PreferenceSetChannelTypes.model_fields if name != "strategy")


class PreferenceSetChannels(RequestModel):
    """Channel id → preference."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, ChannelValue]

    strategy: PreferenceStrategy | None = Field(default=None, alias="__strategy__")


class PreferenceSetWorkflowCategorySettingObject(RequestModel):
    strategy: PreferenceStrategy | None = Field(default=None, alias="__strategy__")
    channel_types: PreferenceSetChannelTypes | None = None
    channels: PreferenceSetChannels | None = None
    conditions: list[Condition] | None = None


PreferenceSetWorkflowCategorySetting = Annotated[
    bool | PreferenceSetWorkflowCategorySettingObject,
    _boolean_or(PreferenceSetWorkflowCategorySettingObject),
    _SETTING,
]


class PreferenceSetRequest(RequestModel):
    """A whole set. `id` and `__typename` are accepted and ignored, so that a set read from the API can be
    written back as it is; the set id comes from the path."""

    persistence_strategy: Omittable[LaxPersistenceStrategy] = Field(
        default=None, alias="__persistence_strategy__"
    )
    id: str | None = None
    typename: str | None = Field(default=None, alias="__typename")
    categories: dict[str, PreferenceSetWorkflowCategorySetting] | None = None
    channel_types: PreferenceSetChannelTypes | None = None
    channels: PreferenceSetChannels | None = None
    commercial_subscribed: CommercialSubscribedValue | None = None
    workflows: dict[str, PreferenceSetWorkflowCategorySetting] | None = None

    def body(self) -> dict[str, Any]:
        """The set as stored: the sections the caller sent, without the write options."""
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude_unset=True,
            exclude={"persistence_strategy", "id", "typename"},
        )


def validate_inline_set(value: Any) -> dict[str, Any]:
    """An inline preference set (identify, set object, trigger) validated as a `PreferenceSetRequest` and
    reduced to its stored body; inline sets are always deep-merged, whatever strategy they name."""
    return PreferenceSetRequest.model_validate(value).body()


class PreferenceSetWorkflows(RootModel[dict[str, PreferenceSetWorkflowCategorySetting]]):
    """Body of the `…/workflows` and `…/categories` updates: key → preference."""

    model_config = ConfigDict(strict=True)

    def body(self) -> dict[str, Any]:
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return dumped


class WorkflowCategorySettingRequest(PreferenceSetWorkflowCategorySettingObject):
    """Body of the `…/workflows/{key}` and `…/categories/{key}` updates: `{"subscribed": bool}`, or the
    settings object itself."""

    subscribed: bool | None = None

    @model_validator(mode="after")
    def _subscribed_alone(self) -> WorkflowCategorySettingRequest:
        if self.subscribed is not None and self.model_fields_set - {"subscribed"}:
            raise ValueError("subscribed cannot be combined with channel_types, channels or conditions")
        return self

    def setting(self) -> bool | dict[str, Any]:
        if self.subscribed is not None:
            return self.subscribed
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"subscribed"})


class ChannelTypeSettingRequest(RequestModel):
    """Body of the `…/channel_types/{type}` update: `{"subscribed": bool}` or `{"conditions": [...]}`."""

    subscribed: bool | None = None
    conditions: list[Condition] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ChannelTypeSettingRequest:
        if (self.subscribed is None) == (self.conditions is None):
            raise ValueError("send either subscribed or conditions")
        return self

    def setting(self) -> bool | dict[str, Any]:
        if self.subscribed is not None:
            return self.subscribed
        return {"conditions": [c.model_dump(mode="json") for c in self.conditions or []]}


class PreferenceSet(TypedResponseModel):
    typename: str = Field(default="PreferenceSet", alias="__typename")
    id: str
    categories: dict[str, Any] | None = None
    channel_types: dict[str, Any] | None = None
    channels: dict[str, Any] | None = None
    commercial_subscribed: bool | dict[str, Any] | None = None
    workflows: dict[str, Any] | None = None

    @classmethod
    def from_record(cls, record: PreferenceSetRecord) -> PreferenceSet:
        body = record.preferences
        return cls(
            id=record.id,
            categories=body.get("categories"),
            channel_types=body.get("channel_types"),
            channels=body.get("channels"),
            commercial_subscribed=body.get("commercial_subscribed"),
            workflows=body.get("workflows"),
        )

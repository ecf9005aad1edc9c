"""The base models every schema builds on: wire serialisation, `__typename`, Knock's timestamps.

Responses serialise by alias (so `typename` goes out as `__typename`) with timestamps as ISO-8601 UTC
ending in `Z`. Requests reject values of the wrong type instead of coercing them, as Knock does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


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


class TypedResponseModel(ResponseModel):
    """A Knock entity: carries `__typename`."""

    typename: str = Field(alias="__typename")


class PageInfo(TypedResponseModel):
    typename: str = Field(default="PageInfo", alias="__typename")
    after: str | None
    before: str | None
    page_size: int

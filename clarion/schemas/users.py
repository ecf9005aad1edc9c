"""Users on the wire: `User`, the identify requests, merge and the bulk requests."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from clarion.schemas.base import (
    PageInfo,
    RequestModel,
    ResponseModel,
    Timestamp,
    TypedResponseModel,
    custom_properties,
)
from clarion.schemas.recipients import RecipientUpsertRequest
from clarion.store.recipients import RecipientRecord

RecipientId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class IdentifyUserRequest(RecipientUpsertRequest):
    email: str | None = None
    phone_number: str | None = None
    avatar: str | None = None


class InlineIdentifyUserRequest(IdentifyUserRequest):
    id: RecipientId

    def properties(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        return super().properties(exclude=exclude | {"id"})


class MergeUserRequest(RequestModel):
    from_user_id: RecipientId


class BulkIdentifyUsersRequest(RequestModel):
    users: list[InlineIdentifyUserRequest] = Field(min_length=1, max_length=1000)


class BulkDeleteUsersRequest(RequestModel):
    user_ids: list[RecipientId] = Field(min_length=1, max_length=1000)


class User(TypedResponseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    typename: str = Field(default="User", alias="__typename")
    id: str
    created_at: Any = None
    updated_at: Timestamp

    @classmethod
    def from_record(cls, record: RecipientRecord, **extra: Any) -> User:
        return cls.trusted(
            {
                "id": record.id,
                "created_at": record.properties.get("created_at"),
                "updated_at": record.updated_at,
            },
            custom_properties(cls, {**record.properties, **extra} if extra else record.properties),
        )


class ListUsersResponse(ResponseModel):
    entries: list[User]
    page_info: PageInfo

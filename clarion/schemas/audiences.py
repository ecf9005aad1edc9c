"""Audience members on the wire: the add/remove requests and `AudienceMember`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field, StringConstraints

from clarion.channels import ChannelRegistry
from clarion.errors import FieldError, InvalidInputError
from clarion.schemas.base import PageInfo, RequestModel, ResponseModel, Timestamp, TypedResponseModel
from clarion.schemas.channel_data import validate_inline_channel_data
from clarion.schemas.users import InlineIdentifyUserRequest, User
from clarion.store.audiences import AudienceMemberInput, AudienceMemberRecord, MemberKey
from clarion.store.recipients import InlineRecipientData

MAX_MEMBERS = 1000

TenantId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class AudienceMemberRequest(RequestModel):
    user: InlineIdentifyUserRequest
    tenant: TenantId | None = None

    def key(self) -> MemberKey:
        return MemberKey(self.user.id, self.tenant)


class AddAudienceMembersRequest(RequestModel):
    members: list[AudienceMemberRequest] = Field(max_length=MAX_MEMBERS)


def member_inputs(
    members: Sequence[AudienceMemberRequest], channels: ChannelRegistry
) -> list[AudienceMemberInput]:
    """Members to add as the store takes them, each user's inline channel data checked against its channels;
    one 422 lists every bad entry as `members.<index>.user.channel_data…`."""
    inputs: list[AudienceMemberInput] = []
    errors: list[FieldError] = []
    for index, member in enumerate(members):
        try:
            channel_data = validate_inline_channel_data(
                channels, member.user.channel_data, field=f"members.{index}.user.channel_data"
            )
        except InvalidInputError as exc:
            errors.extend(exc.errors)
            continue
        inline = InlineRecipientData(channel_data=channel_data, preferences=member.user.preferences)
        inputs.append(AudienceMemberInput(member.key(), member.user.properties(), inline))
    if errors:
        raise InvalidInputError(errors=errors)
    return inputs


class RemoveAudienceMembersRequest(RequestModel):
    members: list[AudienceMemberRequest] = Field(max_length=MAX_MEMBERS)


class AudienceMember(TypedResponseModel):
    typename: str = Field(default="AudienceMember", alias="__typename")
    added_at: Timestamp
    user_id: str
    tenant: str | None
    user: User | None

    @classmethod
    def from_record(cls, record: AudienceMemberRecord) -> AudienceMember:
        return cls(
            added_at=record.added_at,
            user_id=record.user_id,
            tenant=record.tenant,
            user=User.from_record(record.user) if record.user is not None else None,
        )


class ListAudienceMembersResponse(ResponseModel):
    entries: list[AudienceMember]
    page_info: PageInfo

"""Channel data on the wire, and the one check that a recipient's data fits its channel's provider.

Each provider that takes channel data has a shape from Knock's spec: push tokens or devices (FCM, APNs, Expo),
target ARNs or devices (Amazon SNS), player ids (OneSignal), connections (Slack, Microsoft Teams, Discord).
`validate_channel_data` checks one channel's data and returns it in the form it is stored and read back:
push data always carries both `tokens` and `devices` (Knock returns both, whichever was set), chat data always
carries `connections`. `validate_inline_channel_data` does the same for the `channel_data` map of identify,
set-object and set-tenant requests. Providers without a shape (email, SMS, in-app, webhook) take no channel
data. The channels themselves come from `clarion.channels`; the rows live in `clarion.store.channel_data`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError

from clarion.channels import Channel, ChannelRegistry, Provider, canonical_uuid
from clarion.errors import FieldError, InvalidInputError
from clarion.schemas.base import RequestModel, TypedResponseModel

M = TypeVar("M", bound=BaseModel)


class PushDevice(RequestModel):
    token: str
    locale: str | None = None
    timezone: str | None = None


class PushChannelDataTokensOnly(RequestModel):
    tokens: list[str]


class PushChannelDataDevicesOnly(RequestModel):
    devices: list[PushDevice]


class PushChannelDataFull(RequestModel):
    tokens: list[str]
    devices: list[PushDevice]


class AWSSNSPushDevice(RequestModel):
    target_arn: str
    locale: str | None = None
    timezone: str | None = None


class AWSSNSPushChannelDataTargetARNsOnly(RequestModel):
    target_arns: list[str]


class AWSSNSPushChannelDataDevicesOnly(RequestModel):
    devices: list[AWSSNSPushDevice]


class AWSSNSPushChannelDataFull(RequestModel):
    target_arns: list[str]
    devices: list[AWSSNSPushDevice]


class OneSignalChannelDataPlayerIdsOnly(RequestModel):
    player_ids: list[str]


class IncomingWebhook(RequestModel):
    url: str


class SlackTokenConnection(RequestModel):
    access_token: str | None = None
    channel_id: str | None = None
    channel_name: str | None = None
    user_id: str | None = None
    knock_tenant_id: str | None = None


class SlackIncomingWebhookConnection(RequestModel):
    incoming_webhook: IncomingWebhook
    knock_tenant_id: str | None = None


class SlackChannelDataTokenObject(RequestModel):
    access_token: str | None


class MsTeamsTokenConnection(RequestModel):
    ms_teams_channel_id: str | None = None
    ms_teams_team_id: str | None = None
    ms_teams_tenant_id: str | None = None
    ms_teams_user_id: str | None = None
    knock_tenant_id: str | None = None


class MsTeamsIncomingWebhookConnection(RequestModel):
    incoming_webhook: IncomingWebhook
    knock_tenant_id: str | None = None


class DiscordChannelConnection(RequestModel):
    channel_id: str
    knock_tenant_id: str | None = None


class DiscordIncomingWebhookConnection(RequestModel):
    incoming_webhook: IncomingWebhook
    knock_tenant_id: str | None = None


def _webhook_or(token_form: str, webhook_form: str) -> Discriminator:
    """A connection is the webhook form when it names an `incoming_webhook`, else the token/channel form;
    choosing up front reports only the chosen form's errors."""

    def choose(value: Any) -> str:
        # Called on request dicts when validating and on model instances when serialising.
        webhook = (
            "incoming_webhook" in value if isinstance(value, dict) else hasattr(value, "incoming_webhook")
        )
        return webhook_form if webhook else token_form

    return Discriminator(choose)


SlackConnection = Annotated[
    Annotated[SlackTokenConnection, Tag("SlackTokenConnection")]
    | Annotated[SlackIncomingWebhookConnection, Tag("SlackIncomingWebhookConnection")],
    _webhook_or("SlackTokenConnection", "SlackIncomingWebhookConnection"),
]
MsTeamsConnection = Annotated[
    Annotated[MsTeamsTokenConnection, Tag("MsTeamsTokenConnection")]
    | Annotated[MsTeamsIncomingWebhookConnection, Tag("MsTeamsIncomingWebhookConnection")],
    _webhook_or("MsTeamsTokenConnection", "MsTeamsIncomingWebhookConnection"),
]
DiscordConnection = Annotated[
    Annotated[DiscordChannelConnection, Tag("DiscordChannelConnection")]
    | Annotated[DiscordIncomingWebhookConnection, Tag("DiscordIncomingWebhookConnection")],
    _webhook_or("DiscordChannelConnection", "DiscordIncomingWebhookConnection"),
]

# The union tags above appear in validation error locations; they are class names, never wire fields.
_UNION_TAGS = frozenset(
    form.__name__
    for form in (
        SlackTokenConnection,
        SlackIncomingWebhookConnection,
        MsTeamsTokenConnection,
        MsTeamsIncomingWebhookConnection,
        DiscordChannelConnection,
        DiscordIncomingWebhookConnection,
    )
)


class SlackChannelData(RequestModel):
    connections: list[SlackConnection] = Field(default_factory=list)
    token: SlackChannelDataTokenObject | None = None


class MsTeamsChannelData(RequestModel):
    connections: list[MsTeamsConnection] = Field(default_factory=list)
    ms_teams_tenant_id: str | None = None


class DiscordChannelData(RequestModel):
    connections: list[DiscordConnection]


class ChannelDataRequest(RequestModel):
    data: dict[str, Any]


class ChannelData(TypedResponseModel):
    typename: str = Field(default="ChannelData", alias="__typename")
    channel_id: str
    data: dict[str, Any]
    provider: str | None = None

    @classmethod
    def of(cls, channel: Channel, data: dict[str, Any]) -> ChannelData:
        return cls(channel_id=channel.id, data=data, provider=channel.provider.value)


def _parse(model: type[M], data: Any, field: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            path = [field, *(str(part) for part in error["loc"] if part not in _UNION_TAGS)]
            errors.append(FieldError(".".join(path), error["msg"], error["type"]))
        raise InvalidInputError(errors=errors) from exc


def _missing(field: str, name: str) -> InvalidInputError:
    return InvalidInputError(errors=[FieldError(f"{field}.{name}", "Field required", "missing")])


def _form(data: Any, items: str, devices: str, *forms: type[BaseModel]) -> type[BaseModel]:
    """Which of the (items-only, devices-only, both) forms the caller sent."""
    items_only, devices_only, full = forms
    if isinstance(data, dict) and devices in data:
        return full if items in data else devices_only
    return items_only


def _push(data: Any, field: str) -> dict[str, Any]:
    form = _form(
        data,
        "tokens",
        "devices",
        PushChannelDataTokensOnly,
        PushChannelDataDevicesOnly,
        PushChannelDataFull,
    )
    parsed = _parse(form, data, field)
    devices = _merge_devices(
        [d.model_dump() for d in getattr(parsed, "devices", [])],
        getattr(parsed, "tokens", []),
        "token",
    )
    return {"tokens": [d["token"] for d in devices], "devices": devices}


def _aws_sns(data: Any, field: str) -> dict[str, Any]:
    form = _form(
        data,
        "target_arns",
        "devices",
        AWSSNSPushChannelDataTargetARNsOnly,
        AWSSNSPushChannelDataDevicesOnly,
        AWSSNSPushChannelDataFull,
    )
    parsed = _parse(form, data, field)
    devices = _merge_devices(
        [d.model_dump() for d in getattr(parsed, "devices", [])],
        getattr(parsed, "target_arns", []),
        "target_arn",
    )
    return {"target_arns": [d["target_arn"] for d in devices], "devices": devices}


def _merge_devices(devices: list[dict[str, Any]], bare: list[str], address: str) -> list[dict[str, Any]]:
    """Devices first, then bare tokens no device carries, each address once (a repeated token would be
    sent the same push twice)."""
    merged: dict[str, dict[str, Any]] = {}
    for device in devices:
        merged.setdefault(device[address], device)
    for value in bare:
        merged.setdefault(value, {address: value, "locale": None, "timezone": None})
    return list(merged.values())


def _one_signal(data: Any, field: str) -> dict[str, Any]:
    return _parse(OneSignalChannelDataPlayerIdsOnly, data, field).model_dump()


def _chat(model: type[BaseModel], alternative: str | None) -> Callable[[Any, str], dict[str, Any]]:
    """Chat data needs `connections`, except that a tenant may hold only the shared credential
    (`alternative`: Slack's `token`, Teams' `ms_teams_tenant_id`), as Knock's docs show."""

    def validate(data: Any, field: str) -> dict[str, Any]:
        if isinstance(data, dict) and "connections" not in data and alternative not in data:
            raise _missing(field, "connections")
        dumped = _parse(model, data, field).model_dump(exclude_unset=True)
        return {"connections": [], **dumped}

    return validate


SHAPES: dict[Provider, Callable[[Any, str], dict[str, Any]]] = {
    Provider.PUSH_FCM: _push,
    Provider.PUSH_APNS: _push,
    Provider.PUSH_EXPO: _push,
    Provider.PUSH_AWS_SNS: _aws_sns,
    Provider.PUSH_ONE_SIGNAL: _one_signal,
    Provider.CHAT_SLACK: _chat(SlackChannelData, "token"),
    Provider.CHAT_MS_TEAMS: _chat(MsTeamsChannelData, "ms_teams_tenant_id"),
    Provider.CHAT_DISCORD: _chat(DiscordChannelData, None),
}
"""Provider → its data check, returning the stored form. A provider absent here takes no channel data."""


def validate_channel_data(channel: Channel, data: Any, *, field: str = "data") -> dict[str, Any]:
    """`data` checked against `channel`'s provider and normalised; a 422 naming `field…` otherwise."""
    shape = SHAPES.get(channel.provider)
    if shape is None:
        kind = f"{channel.type.value}, {channel.provider.value}"
        raise InvalidInputError.field(field, f"the channel {channel.key!r} ({kind}) takes no channel data")
    return shape(data, field)


def validate_inline_channel_data(
    channels: ChannelRegistry, channel_data: Mapping[str, Any] | None, *, field: str = "channel_data"
) -> dict[str, dict[str, Any]] | None:
    """The `channel_data` map (channel id → data) of an identify/set request, every entry checked against
    its channel and keyed by the channel's canonical id; one 422 lists every bad entry as `field.<id>…`."""
    if channel_data is None:
        return None
    checked: dict[str, dict[str, Any]] = {}
    errors: list[FieldError] = []
    for channel_id, data in channel_data.items():
        where = f"{field}.{channel_id}"
        channel = channels.get(channel_id)
        if channel is None:
            message = "is not a configured channel id" if canonical_uuid(channel_id) else "must be a UUID"
            errors.append(FieldError(where, message))
            continue
        try:
            checked[channel.id] = validate_channel_data(channel, data, field=where)
        except InvalidInputError as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInputError(errors=errors)
    return checked

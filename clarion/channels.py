"""The installation's channels: read once from a YAML file, validated, secrets taken from the environment.

The file (`Settings.resolved_channels_file`, by default `<data_dir>/channels.yml`) lists every channel with
its id (a UUID: what the API and the SDKs address), key (what workflow steps reference), type, provider and
provider settings. Channels are shared by every environment of the installation. String values under
`settings` may reference environment variables as `${NAME}` or `${NAME:-fallback}` (`$${` is a literal
`${`); they are expanded at load, so the file holds no secrets, and expanded values stay strings: each
provider coerces its own settings (`clarion.providers`).

When the file does not exist, `load_channels(…, create=True)` writes the default set
(`clarion/defaults/channels.yml`) there with fresh ids, atomically: processes starting together on one
filesystem all load the same file. Processes that do not share a filesystem must be given the same file, or
their channel ids differ. Every problem is one `ChannelsFileError` naming the file and the field.

Which data a recipient stores per channel, and its validation, live in `clarion.schemas.channel_data`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clarion.errors import ClarionError


class ChannelType(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    CHAT = "chat"
    IN_APP_FEED = "in_app_feed"
    HTTP = "http"


class Provider(StrEnum):
    """Provider keys, spelled as Knock does (`<type>_<name>`, the values of `ChannelData.provider`)."""

    IN_APP_FEED_KNOCK = "in_app_feed_knock"
    EMAIL_SMTP = "email_smtp"
    EMAIL_SENDGRID = "email_sendgrid"
    EMAIL_POSTMARK = "email_postmark"
    EMAIL_MAILGUN = "email_mailgun"
    SMS_TWILIO = "sms_twilio"
    PUSH_FCM = "push_fcm"
    PUSH_APNS = "push_apns"
    PUSH_EXPO = "push_expo"
    PUSH_AWS_SNS = "push_aws_sns"
    PUSH_ONE_SIGNAL = "push_one_signal"
    CHAT_SLACK = "chat_slack"
    CHAT_MS_TEAMS = "chat_ms_teams"
    CHAT_DISCORD = "chat_discord"
    HTTP_KNOCK_WEBHOOK = "http_knock_webhook"


PROVIDER_TYPES: dict[Provider, ChannelType] = {
    Provider.IN_APP_FEED_KNOCK: ChannelType.IN_APP_FEED,
    Provider.EMAIL_SMTP: ChannelType.EMAIL,
    Provider.EMAIL_SENDGRID: ChannelType.EMAIL,
    Provider.EMAIL_POSTMARK: ChannelType.EMAIL,
    Provider.EMAIL_MAILGUN: ChannelType.EMAIL,
    Provider.SMS_TWILIO: ChannelType.SMS,
    Provider.PUSH_FCM: ChannelType.PUSH,
    Provider.PUSH_APNS: ChannelType.PUSH,
    Provider.PUSH_EXPO: ChannelType.PUSH,
    Provider.PUSH_AWS_SNS: ChannelType.PUSH,
    Provider.PUSH_ONE_SIGNAL: ChannelType.PUSH,
    Provider.CHAT_SLACK: ChannelType.CHAT,
    Provider.CHAT_MS_TEAMS: ChannelType.CHAT,
    Provider.CHAT_DISCORD: ChannelType.CHAT,
    Provider.HTTP_KNOCK_WEBHOOK: ChannelType.HTTP,
}


class ChannelsFileError(ClarionError):
    """The channels file is missing, unreadable, or declares something invalid."""


@dataclass(frozen=True)
class Channel:
    id: str
    key: str
    type: ChannelType
    provider: Provider
    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)


class ChannelRegistry:
    """The configured channels, found by id (any UUID spelling) or by key."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        self._channels = list(channels)
        self._by_id = {channel.id: channel for channel in self._channels}
        self._by_key = {channel.key: channel for channel in self._channels}

    def get(self, channel_id: str) -> Channel | None:
        canonical = canonical_uuid(channel_id)
        return self._by_id.get(canonical) if canonical else None

    def by_key(self, key: str) -> Channel | None:
        return self._by_key.get(key)

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)


def canonical_uuid(value: str) -> str | None:
    """`value` as a lower-case hyphenated UUID, or None when it is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


class _ChannelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    key: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=255)
    type: ChannelType
    provider: Provider
    name: str | None = Field(default=None, min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)


class _ChannelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[_ChannelEntry]


_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_NEW_ID = "{{uuid}}"


def load_channels(
    path: Path, *, environ: Mapping[str, str] | None = None, create: bool = False
) -> ChannelRegistry:
    """Read and validate the channels file, expanding `${VAR}` references from `environ` (the process
    environment by default). With `create`, a missing file is first written with the default set."""
    if create and not path.exists():
        write_default_channels(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChannelsFileError(f"{path}: the channels file does not exist") from None
    except OSError as exc:
        raise ChannelsFileError(f"{path}: cannot read the channels file: {exc}") from exc
    return parse_channels(text, source=str(path), environ=os.environ if environ is None else environ)


def parse_channels(text: str, *, source: str, environ: Mapping[str, str]) -> ChannelRegistry:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ChannelsFileError(f"{source}: not valid YAML: {exc}") from exc
    try:
        parsed = _ChannelsFile.model_validate(document)
    except ValidationError as exc:
        raise ChannelsFileError(_describe(source, exc)) from exc
    problems: list[str] = []
    channels: list[Channel] = []
    first_index: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(parsed.channels):
        where = f"{source}: channels[{index}]"
        channel_id = canonical_uuid(entry.id)
        if channel_id is None:
            problems.append(f"{where}.id: {entry.id!r} is not a UUID")
            continue
        if PROVIDER_TYPES[entry.provider] is not entry.type:
            providers = ", ".join(p.value for p, t in PROVIDER_TYPES.items() if t is entry.type)
            problems.append(
                f"{where}.provider: {entry.provider.value!r} is not a provider of {entry.type.value} "
                f"channels (one of: {providers})"
            )
        for attribute, value in (("id", channel_id), ("key", entry.key)):
            seen = first_index.setdefault((attribute, value), index)
            if seen != index:
                problems.append(f"{where}.{attribute}: {value!r} is already used by channels[{seen}]")
        settings = _expand(entry.settings, f"{where} ({entry.key}).settings", environ, problems)
        channels.append(
            Channel(
                id=channel_id,
                key=entry.key,
                type=entry.type,
                provider=entry.provider,
                name=entry.name or entry.key,
                settings=settings,
            )
        )
    if problems:
        raise ChannelsFileError("\n".join(problems))
    return ChannelRegistry(channels)


def write_default_channels(path: Path) -> None:
    """Write the default channels file at `path` with fresh ids, unless a file appears there first."""
    template = resources.files("clarion").joinpath("defaults/channels.yml").read_text(encoding="utf-8")
    text = template
    while _NEW_ID in text:
        text = text.replace(_NEW_ID, str(uuid.uuid4()), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        draft.write_text(text, encoding="utf-8")
        # A hard link never replaces an existing file, so concurrent first starts keep one winner's ids.
        os.link(draft, path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ChannelsFileError(f"{path}: cannot write the default channels file: {exc}") from exc
    finally:
        draft.unlink(missing_ok=True)


def _expand(value: Any, where: str, environ: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):
        return _expand_string(value, where, environ, problems)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", environ, problems) for i, v in enumerate(value)]
    return value


def _expand_string(value: str, where: str, environ: Mapping[str, str], problems: list[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$${":
            return "${"
        inner = match.group(1)
        variable = _VARIABLE.match(inner) if inner is not None else None
        if variable is None:
            problems.append(f"{where}: {text!r} is not a valid ${{NAME}} or ${{NAME:-fallback}} reference")
            return ""
        name, fallback = variable.group(1), variable.group(2)
        if fallback is not None:
            return environ.get(name) or fallback
        if name not in environ:
            problems.append(f"{where}: the environment variable {name} is not set")
            return ""
        return environ[name]

    return _REFERENCE.sub(substitute, value)


def _describe(source: str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
        lines.append(f"{source}: {location.lstrip('.') or 'document'}: {error['msg']}")
    return "\n".join(lines)

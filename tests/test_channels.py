"""The channels file: the default set, validation errors naming file and field, `${VAR}` expansion, the
registry, and `clarion channels list`."""

from __future__ import annotations

import functools
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from clarion.channels import (
    ChannelRegistry,
    ChannelsFileError,
    ChannelType,
    Provider,
    load_channels,
    parse_channels,
    write_default_channels,
)
from clarion.cli import main
from clarion.runtime import Runtime

FCM_ID = "3c5a1a9e-0b1e-4a57-9b7c-8b8f9a1d2e3f"
SLACK_ID = "7d2f6c1b-5e4a-4c3b-8a9d-0f1e2d3c4b5a"


def channels_yaml(*entries: str) -> str:
    return "channels:\n" + "".join(entries)


def entry(
    channel_id: str = FCM_ID,
    key: str = "push",
    type_: str = "push",
    provider: str = "push_fcm",
    settings: str = "{}",
) -> str:
    return (
        f"  - id: {channel_id}\n    key: {key}\n    type: {type_}\n    provider: {provider}\n"
        f"    settings: {settings}\n"
    )


def parse(text: str, environ: dict[str, str] | None = None) -> ChannelRegistry:
    return parse_channels(text, source="channels.yml", environ=environ or {})


def parse_error(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ChannelsFileError) as caught:
        parse(text, environ)
    return caught.value.message


def test_default_file_is_written_once_with_fresh_ids_and_loads_without_env_vars(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "channels.yml"
    registry = load_channels(path, environ={}, create=True)
    assert path.exists()
    by_key = {channel.key: channel for channel in registry}
    assert {(c.key, c.type, c.provider) for c in registry} >= {
        ("in-app-feed", ChannelType.IN_APP_FEED, Provider.IN_APP_FEED_KNOCK),
        ("email", ChannelType.EMAIL, Provider.EMAIL_SMTP),
        ("push-fcm", ChannelType.PUSH, Provider.PUSH_FCM),
        ("push-apns", ChannelType.PUSH, Provider.PUSH_APNS),
        ("slack", ChannelType.CHAT, Provider.CHAT_SLACK),
    }
    ids = [channel.id for channel in registry]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(channel_id).version == 4 for channel_id in ids)
    assert by_key["email"].settings["host"] == "localhost"
    assert by_key["email"].settings["port"] == "1025"

    again = load_channels(path, environ={"SMTP_HOST": "mail.internal"}, create=True)
    assert [channel.id for channel in again] == ids
    email = again.by_key("email")
    assert email is not None
    assert email.settings["host"] == "mail.internal"

    other = load_channels(tmp_path / "elsewhere.yml", environ={}, create=True)
    assert not set(ids) & {channel.id for channel in other}


def test_default_file_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "channels.yml"
    path.write_text(channels_yaml(entry()))
    write_default_channels(path)
    assert [channel.key for channel in load_channels(path, environ={})] == ["push"]
    assert list(tmp_path.iterdir()) == [path]


def test_starts_writing_the_default_file_at_once_all_load_the_same_one(tmp_path: Path) -> None:
    for attempt in range(20):
        folder = tmp_path / str(attempt)
        path = folder / "channels.yml"
        with ThreadPoolExecutor(max_workers=8) as pool:
            loaded = list(pool.map(functools.partial(load_channels, create=True), [path] * 8))
        assert len({tuple(channel.id for channel in registry) for registry in loaded}) == 1
        assert [path.name for path in folder.iterdir()] == ["channels.yml"]


def test_missing_file_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ChannelsFileError, match="does not exist"):
        load_channels(tmp_path / "absent.yml")


def test_registry_finds_channels_by_id_in_any_spelling_and_by_key() -> None:
    registry = parse(channels_yaml(entry(), entry(SLACK_ID, "slack", "chat", "chat_slack")))
    assert len(registry) == 2
    fcm = registry.get(FCM_ID.upper())
    assert fcm is not None
    assert (fcm.id, fcm.key, fcm.name) == (FCM_ID, "push", "push")
    assert registry.by_key("slack") is registry.get(SLACK_ID)
    assert registry.get("not-a-uuid") is None
    assert registry.get(str(uuid.uuid4())) is None
    assert registry.by_key("nope") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (channels_yaml(entry(type_="pigeon")), "channels.yml: channels[0].type: Input should be"),
        (channels_yaml(entry(provider="carrier")), "channels.yml: channels[0].provider: Input should be"),
        (
            channels_yaml(entry(provider="chat_slack")),
            "channels.yml: channels[0].provider: 'chat_slack' is not a provider of push channels",
        ),
        (channels_yaml(entry(channel_id="fcm-1")), "channels.yml: channels[0].id: 'fcm-1' is not a UUID"),
        (
            channels_yaml(entry(), entry(key="other")),
            f"channels.yml: channels[1].id: '{FCM_ID}' is already used by channels[0]",
        ),
        (
            channels_yaml(entry(), entry(channel_id=SLACK_ID)),
            "channels.yml: channels[1].key: 'push' is already used by channels[0]",
        ),
        (channels_yaml(entry(key="has space")), "channels.yml: channels[0].key: String should match"),
        (channels_yaml(entry()) + "    colour: red\n", "channels.yml: channels[0].colour: Extra inputs"),
        ("channels: {}\n", "channels.yml: channels: Input should be a valid list"),
        ("other: []\n", "channels.yml: channels: Field required"),
        ("channels: [\n", "channels.yml: not valid YAML"),
    ],
)
def test_invalid_files_name_the_file_and_field(text: str, expected: str) -> None:
    assert expected in parse_error(text)


def test_every_problem_is_reported_at_once() -> None:
    message = parse_error(channels_yaml(entry(channel_id="x"), entry(provider="chat_slack")))
    assert "channels[0].id" in message
    assert "channels[1].provider" in message


def test_settings_expand_environment_variables() -> None:
    settings = (
        "{token: '${SLACK_TOKEN}', host: '${HOST:-localhost}', empty: '${EMPTY:-fallback}', "
        "literal: 'a$${NOT_EXPANDED}b', nested: {list: ['x-${SLACK_TOKEN}']}, port: 25}"
    )
    registry = parse(
        channels_yaml(entry(SLACK_ID, "slack", "chat", "chat_slack", settings)),
        {"SLACK_TOKEN": "xoxb-1", "EMPTY": ""},
    )
    slack = registry.by_key("slack")
    assert slack is not None
    assert slack.settings == {
        "token": "xoxb-1",
        "host": "localhost",
        "empty": "fallback",
        "literal": "a${NOT_EXPANDED}b",
        "nested": {"list": ["x-xoxb-1"]},
        "port": 25,
    }


def test_missing_environment_variable_names_channel_and_variable() -> None:
    message = parse_error(
        channels_yaml(entry(SLACK_ID, "slack", "chat", "chat_slack", "{auth: {token: '${SLACK_TOKEN}'}}"))
    )
    assert message == (
        "channels.yml: channels[0] (slack).settings.auth.token: "
        "the environment variable SLACK_TOKEN is not set"
    )


@pytest.mark.parametrize("reference", ["${}", "${1ABC}", "${A B}", "${UNCLOSED"])
def test_malformed_references_are_errors(reference: str) -> None:
    message = parse_error(channels_yaml(entry(settings=f"{{value: '{reference}'}}")))
    assert "channels[0] (push).settings.value" in message
    assert "is not a valid ${NAME} or ${NAME:-fallback} reference" in message


async def test_runtime_loads_the_default_file_from_its_data_dir(runtime: Runtime) -> None:
    path = runtime.settings.resolved_channels_file
    assert path == runtime.settings.data_dir / "channels.yml"
    assert [c.id for c in runtime.channels] == [c.id for c in load_channels(path)]
    assert runtime.channels.by_key("push-fcm") is not None


def test_cli_channels_list_prints_one_line_per_channel(tmp_path: Path) -> None:
    environ = {"CLARION_DATA_DIR": str(tmp_path)}
    write_default_channels(tmp_path / "channels.yml")  # as `clarion serve` does at its first start
    result = CliRunner().invoke(main, ["channels", "list"], env=environ, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    registry = load_channels(tmp_path / "channels.yml", environ={})
    assert lines == [[c.id, c.key, c.type.value, c.provider.value] for c in registry]

    custom = tmp_path / "custom.yml"
    custom.write_text(channels_yaml(entry()))
    result = CliRunner().invoke(
        main, ["channels", "list"], env={**environ, "CLARION_CHANNELS_FILE": str(custom)}
    )
    assert result.output == f"{FCM_ID}\tpush\tpush\tpush_fcm\n"


def test_cli_channels_list_reports_an_invalid_file(tmp_path: Path) -> None:
    custom = tmp_path / "custom.yml"
    custom.write_text(channels_yaml(entry(type_="pigeon")))
    result = CliRunner().invoke(main, ["channels", "list"], env={"CLARION_CHANNELS_FILE": str(custom)})
    assert result.exit_code != 0
    assert f"{custom}: channels[0].type" in result.output

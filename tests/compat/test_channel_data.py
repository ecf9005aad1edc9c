"""Channel data through the official Knock SDK: set (overwrite), get, unset, for users and objects."""

from __future__ import annotations

import contextlib

import knockapi
import pytest
from knockapi import Knock

from tests.compat.live_server import (
    DISCORD_CHANNEL_ID,
    MS_TEAMS_CHANNEL_ID,
    ONE_SIGNAL_CHANNEL_ID,
    PUSH_FCM_CHANNEL_ID,
    PUSH_SNS_CHANNEL_ID,
    SLACK_CHANNEL_ID,
)

UNCONFIGURED_CHANNEL_ID = "00000000-0000-4000-8000-000000000000"


def test_push_tokens_are_read_back_with_devices(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    stored = knock.users.set_channel_data("ann", PUSH_FCM_CHANNEL_ID, data={"tokens": ["tok-1", "tok-2"]})
    assert stored.api_typename == "ChannelData"
    assert stored.channel_id == PUSH_FCM_CHANNEL_ID
    assert stored.data.to_dict(exclude_none=True) == {
        "tokens": ["tok-1", "tok-2"],
        "devices": [{"token": "tok-1"}, {"token": "tok-2"}],
    }
    assert knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID) == stored


def test_set_overwrites_previous_data(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.users.set_channel_data("ann", PUSH_FCM_CHANNEL_ID, data={"tokens": ["old"]})
    knock.users.set_channel_data(
        "ann", PUSH_FCM_CHANNEL_ID, data={"devices": [{"token": "new", "locale": "fr-FR", "timezone": None}]}
    )
    data = knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID).data.to_dict(exclude_none=True)
    assert data == {"tokens": ["new"], "devices": [{"token": "new", "locale": "fr-FR"}]}


def test_every_provider_shape_round_trips(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    slack = {
        "connections": [
            {"access_token": "xoxb-1", "channel_id": "C123"},
            {"incoming_webhook": {"url": "https://hooks.slack.com/services/T/B/X"}},
        ]
    }
    stored = knock.users.set_channel_data("ann", SLACK_CHANNEL_ID, data=slack)  # type: ignore[arg-type]
    assert stored.data.to_dict(exclude_none=True) == slack

    arns = {"target_arns": ["arn:aws:sns:eu-west-1:123:endpoint/GCM/app/1"]}
    sns = knock.users.set_channel_data("ann", PUSH_SNS_CHANNEL_ID, data=arns)  # type: ignore[arg-type]
    assert sns.data.to_dict(exclude_none=True)["target_arns"] == arns["target_arns"]

    player_ids = {"player_ids": ["player-1"]}
    one_signal = knock.users.set_channel_data("ann", ONE_SIGNAL_CHANNEL_ID, data=player_ids)  # type: ignore[arg-type]
    assert one_signal.data.to_dict(exclude_none=True) == player_ids

    teams = {"connections": [{"ms_teams_channel_id": "19:abc", "ms_teams_team_id": "team-1"}]}
    stored_teams = knock.users.set_channel_data("ann", MS_TEAMS_CHANNEL_ID, data=teams)  # type: ignore[arg-type]
    assert stored_teams.data.to_dict(exclude_none=True) == teams

    discord = {"connections": [{"channel_id": "998877"}]}
    stored_discord = knock.users.set_channel_data("ann", DISCORD_CHANNEL_ID, data=discord)  # type: ignore[arg-type]
    assert stored_discord.data.to_dict(exclude_none=True) == discord


def test_unset_then_get_is_404(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    with pytest.raises(knockapi.NotFoundError):
        knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID)
    knock.users.set_channel_data("ann", PUSH_FCM_CHANNEL_ID, data={"tokens": ["tok"]})
    knock.users.unset_channel_data("ann", PUSH_FCM_CHANNEL_ID)
    with pytest.raises(knockapi.NotFoundError):
        knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID)


def test_identify_sets_channel_data_inline(knock: Knock) -> None:
    knock.users.update("ann", channel_data={PUSH_FCM_CHANNEL_ID: {"tokens": ["inline"]}})
    assert knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID).data.to_dict(exclude_none=True) == {
        "tokens": ["inline"],
        "devices": [{"token": "inline"}],
    }


def test_data_that_does_not_fit_the_provider_is_422(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.users.set_channel_data("ann", PUSH_FCM_CHANNEL_ID, data={"tokens": ["kept"]})
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.users.set_channel_data("ann", PUSH_FCM_CHANNEL_ID, data={"tokens": "not-a-list"})  # type: ignore[typeddict-item]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"
    assert knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID).data.to_dict(exclude_none=True)[
        "tokens"
    ] == ["kept"]


def test_unconfigured_channel_is_refused(knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    with pytest.raises(knockapi.APIStatusError) as raised:
        knock.users.set_channel_data("ann", UNCONFIGURED_CHANNEL_ID, data={"tokens": ["tok"]})
    assert 400 <= raised.value.status_code < 500
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "channel_invalid"


def test_object_channel_data(knock: Knock) -> None:
    knock.objects.set("projects", "p1", name="Apollo")
    slack = {"connections": [{"incoming_webhook": {"url": "https://hooks.slack.com/services/T/B/Y"}}]}
    stored = knock.objects.set_channel_data("projects", "p1", SLACK_CHANNEL_ID, data=slack)  # type: ignore[arg-type]
    assert stored.channel_id == SLACK_CHANNEL_ID
    assert stored.data.to_dict(exclude_none=True) == slack
    assert knock.objects.get_channel_data("projects", "p1", SLACK_CHANNEL_ID) == stored
    knock.objects.unset_channel_data("projects", "p1", SLACK_CHANNEL_ID)
    with pytest.raises(knockapi.NotFoundError):
        knock.objects.get_channel_data("projects", "p1", SLACK_CHANNEL_ID)


def test_publishable_key_manages_a_users_channel_data(knock: Knock, public_knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    public_knock.users.set_channel_data("ann", PUSH_FCM_CHANNEL_ID, data={"tokens": ["from-browser"]})
    assert public_knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID).data.to_dict(exclude_none=True)[
        "tokens"
    ] == ["from-browser"]
    public_knock.users.unset_channel_data("ann", PUSH_FCM_CHANNEL_ID)
    with pytest.raises(knockapi.PermissionDeniedError):
        public_knock.objects.get_channel_data("projects", "p1", SLACK_CHANNEL_ID)


def test_environments_are_isolated(knock: Knock, other_knock: Knock) -> None:
    knock.users.update("ann", name="Ann")
    knock.users.set_channel_data("ann", PUSH_FCM_CHANNEL_ID, data={"tokens": ["mine"]})
    with pytest.raises(knockapi.NotFoundError):
        other_knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID)
    # Whether Knock answers 204 or 404 here is not documented; either way nothing of `knock`'s may change.
    with contextlib.suppress(knockapi.NotFoundError):
        other_knock.users.unset_channel_data("ann", PUSH_FCM_CHANNEL_ID)
    assert knock.users.get_channel_data("ann", PUSH_FCM_CHANNEL_ID).data.to_dict(exclude_none=True)[
        "tokens"
    ] == ["mine"]

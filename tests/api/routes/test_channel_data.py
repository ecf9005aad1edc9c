from __future__ import annotations

from typing import Any

import pytest

from clarion.channels import PROVIDER_TYPES, Channel, ChannelRegistry, Provider
from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error

UNKNOWN_CHANNEL = "0b3e1c8e-1111-4222-8333-944455556666"


def channel_id(env: EnvFixture, key: str) -> str:
    channel = env.runtime.channels.by_key(key)
    assert channel is not None
    return channel.id


def user_path(env: EnvFixture, user_id: str, key: str) -> str:
    return f"/v1/users/{user_id}/channel_data/{channel_id(env, key)}"


def object_path(env: EnvFixture, collection: str, object_id: str, key: str) -> str:
    return f"/v1/objects/{collection}/{object_id}/channel_data/{channel_id(env, key)}"


def device(token: str, locale: str | None = None, timezone: str | None = None) -> dict[str, Any]:
    return {"token": token, "locale": locale, "timezone": timezone}


@pytest.fixture
def every_provider(env: EnvFixture, monkeypatch: pytest.MonkeyPatch) -> dict[Provider, str]:
    """Replace the configured channels with one channel per provider, for the duration of a test."""
    channels = [
        Channel(
            f"00000000-0000-4000-8000-{index:012d}",
            provider.value,
            PROVIDER_TYPES[provider],
            provider,
            provider,
        )
        for index, provider in enumerate(Provider)
    ]
    monkeypatch.setattr(env.runtime, "channels", ChannelRegistry(channels))
    return {channel.provider: channel.id for channel in channels}


async def test_user_push_tokens_round_trip(env: EnvFixture) -> None:
    path = user_path(env, "u1", "push-fcm")
    response = await env.put(path, json={"data": {"tokens": ["t1", "t2"]}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "__typename": "ChannelData",
        "channel_id": channel_id(env, "push-fcm"),
        "provider": "push_fcm",
        "data": {"tokens": ["t1", "t2"], "devices": [device("t1"), device("t2")]},
    }
    assert (await env.get(path)).json() == body
    # Setting channel data creates the user, as Knock does.
    assert (await env.get("/v1/users/u1")).status_code == 200


async def test_set_replaces_and_devices_are_read_back_as_tokens_too(env: EnvFixture) -> None:
    path = user_path(env, "u1", "push-apns")
    await env.put(path, json={"data": {"tokens": ["old"]}})
    response = await env.put(
        path, json={"data": {"devices": [{"token": "d1", "locale": "fr-FR", "timezone": "Europe/Paris"}]}}
    )
    assert response.status_code == 200, response.text
    expected = {"tokens": ["d1"], "devices": [device("d1", "fr-FR", "Europe/Paris")]}
    assert response.json()["data"] == expected
    assert (await env.get(path)).json()["data"] == expected
    both = await env.put(path, json={"data": {"tokens": ["d1", "t2", "t2"], "devices": [{"token": "d1"}]}})
    assert both.json()["data"] == {"tokens": ["d1", "t2"], "devices": [device("d1"), device("t2")]}


async def test_set_keeps_the_properties_of_an_existing_user(env: EnvFixture) -> None:
    await env.put("/v1/users/u1", json={"name": "Ann"})
    await env.put(user_path(env, "u1", "push-fcm"), json={"data": {"tokens": ["t"]}})
    assert (await env.get("/v1/users/u1")).json()["name"] == "Ann"


async def test_unset_and_unset_data_is_404(env: EnvFixture) -> None:
    path = user_path(env, "u1", "push-fcm")
    assert_error(await env.get(path), 404, "resource_missing")
    await env.put(path, json={"data": {"tokens": ["t"]}})
    response = await env.delete(path)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await env.get(path), 404, "resource_missing")
    assert (await env.delete(path)).status_code == 204
    assert (await env.get("/v1/users/u1")).status_code == 200


async def test_channels_are_independent(env: EnvFixture) -> None:
    await env.put(user_path(env, "u1", "push-fcm"), json={"data": {"tokens": ["fcm"]}})
    await env.put(user_path(env, "u1", "push-apns"), json={"data": {"tokens": ["apns"]}})
    await env.delete(user_path(env, "u1", "push-apns"))
    assert (await env.get(user_path(env, "u1", "push-fcm"))).json()["data"]["tokens"] == ["fcm"]


async def test_unknown_channel_is_404_and_writes_nothing(env: EnvFixture) -> None:
    for method, path in (
        ("PUT", f"/v1/users/u1/channel_data/{UNKNOWN_CHANNEL}"),
        ("GET", f"/v1/users/u1/channel_data/{UNKNOWN_CHANNEL}"),
        ("DELETE", f"/v1/users/u1/channel_data/{UNKNOWN_CHANNEL}"),
        ("PUT", f"/v1/objects/projects/p1/channel_data/{UNKNOWN_CHANNEL}"),
        ("GET", f"/v1/objects/projects/p1/channel_data/{UNKNOWN_CHANNEL}"),
        ("DELETE", f"/v1/objects/projects/p1/channel_data/{UNKNOWN_CHANNEL}"),
    ):
        response = await env.request(method, path, json={"data": {"tokens": ["t"]}})
        assert_error(response, 404, "channel_invalid")
    assert_error(await env.get("/v1/users/u1"), 404)
    assert_error(await env.get("/v1/objects/projects/p1"), 404)


async def test_channel_id_must_be_a_uuid(env: EnvFixture) -> None:
    body = assert_error(await env.get("/v1/users/u1/channel_data/push-fcm"), 422, "invalid_params")
    assert body["errors"][0]["field"] == "channel_id"


async def test_channel_id_is_matched_in_any_spelling(env: EnvFixture) -> None:
    canonical = channel_id(env, "push-fcm")
    response = await env.put(
        f"/v1/users/u1/channel_data/{canonical.upper()}", json={"data": {"tokens": ["t"]}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["channel_id"] == canonical
    assert (await env.get(f"/v1/users/u1/channel_data/{canonical}")).status_code == 200


@pytest.mark.parametrize(
    ("key", "payload", "fields"),
    [
        ("push-fcm", {}, {"data"}),
        ("push-fcm", {"data": []}, {"data"}),
        ("push-fcm", {"data": {"tokens": "t"}}, {"data.tokens"}),
        ("push-fcm", {"data": {"tokens": [1]}}, {"data.tokens.0"}),
        ("push-fcm", {"data": {}}, {"data.tokens"}),
        ("push-fcm", {"data": {"devices": [{"locale": "en"}]}}, {"data.devices.0.token"}),
        ("push-fcm", {"data": {"connections": []}}, {"data.tokens", "data.connections"}),
        ("push-fcm", {"data": {"tokens": ["t"]}, "extra": 1}, {"extra"}),
        ("slack", {"data": {"tokens": ["t"]}}, {"data.connections"}),
        (
            "slack",
            {"data": {"connections": [{"incoming_webhook": {}}]}},
            {"data.connections.0.incoming_webhook.url"},
        ),
        (
            "slack",
            {"data": {"connections": [{"incoming_webhook": {"url": "u"}, "channel_id": "C1"}]}},
            {"data.connections.0.channel_id"},
        ),
        ("slack", {"data": {"connections": [{"channel_id": 5}]}}, {"data.connections.0.channel_id"}),
        ("slack", {"data": {"connections": [7]}}, {"data.connections.0"}),
        ("email", {"data": {"tokens": ["t"]}}, {"data"}),
        ("in-app-feed", {"data": {}}, {"data"}),
    ],
)
async def test_malformed_data_is_422_naming_the_field_and_writes_nothing(
    env: EnvFixture, key: str, payload: dict[str, Any], fields: set[str]
) -> None:
    path = user_path(env, "u1", key)
    body = assert_error(await env.put(path, json=payload), 422, "invalid_params")
    assert {error["field"] for error in body["errors"]} == fields
    assert_error(await env.get("/v1/users/u1"), 404)


async def test_channel_without_channel_data_says_so(env: EnvFixture) -> None:
    body = assert_error(await env.put(user_path(env, "u1", "email"), json={"data": {}}), 422)
    assert body["errors"][0]["message"] == "the channel 'email' (email, email_smtp) takes no channel data"


async def test_object_slack_connections_round_trip(env: EnvFixture) -> None:
    path = object_path(env, "projects", "p1", "slack")
    connections = [
        {"access_token": "xoxb-1", "channel_id": "C1"},
        {"incoming_webhook": {"url": "https://hooks.slack.test/1"}},
        {"user_id": "U1", "knock_tenant_id": "acme"},
    ]
    response = await env.put(path, json={"data": {"connections": connections}})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "__typename": "ChannelData",
        "channel_id": channel_id(env, "slack"),
        "provider": "chat_slack",
        "data": {"connections": connections},
    }
    assert (await env.get(path)).json() == response.json()
    # The object is created empty when it did not exist.
    assert (await env.get("/v1/objects/projects/p1")).json()["properties"] == {}
    assert (await env.delete(path)).status_code == 204
    assert_error(await env.get(path), 404, "resource_missing")


async def test_tenant_may_hold_only_the_slack_token(env: EnvFixture) -> None:
    path = object_path(env, "$tenants", "acme", "slack")
    response = await env.put(path, json={"data": {"token": {"access_token": "xoxb-tenant"}}})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"connections": [], "token": {"access_token": "xoxb-tenant"}}


async def test_set_on_object_keeps_its_properties(env: EnvFixture) -> None:
    await env.put("/v1/objects/projects/p1", json={"name": "Apollo"})
    await env.put(object_path(env, "projects", "p1", "push-fcm"), json={"data": {"tokens": ["t"]}})
    assert (await env.get("/v1/objects/projects/p1")).json()["properties"] == {"name": "Apollo"}


async def test_object_routes_check_the_collection(env: EnvFixture) -> None:
    path = f"/v1/objects/$users/u1/channel_data/{channel_id(env, 'push-fcm')}"
    for method in ("GET", "PUT", "DELETE"):
        body = assert_error(await env.request(method, path, json={"data": {"tokens": ["t"]}}), 422)
        assert body["errors"][0]["field"] == "collection"
    assert_error(await env.get("/v1/users/u1"), 404)


async def test_every_provider_shape(env: EnvFixture, every_provider: dict[Provider, str]) -> None:
    accepted: list[tuple[Provider, dict[str, Any], dict[str, Any]]] = [
        (
            Provider.PUSH_EXPO,
            {"tokens": ["ExponentPushToken[x]"]},
            {"tokens": ["ExponentPushToken[x]"], "devices": [device("ExponentPushToken[x]")]},
        ),
        (
            Provider.PUSH_AWS_SNS,
            {"target_arns": ["arn:1"]},
            {
                "target_arns": ["arn:1"],
                "devices": [{"target_arn": "arn:1", "locale": None, "timezone": None}],
            },
        ),
        (
            Provider.PUSH_AWS_SNS,
            {"devices": [{"target_arn": "arn:2", "locale": "de"}]},
            {
                "target_arns": ["arn:2"],
                "devices": [{"target_arn": "arn:2", "locale": "de", "timezone": None}],
            },
        ),
        (
            Provider.PUSH_ONE_SIGNAL,
            {"player_ids": ["5ab2c6ea-2b3c-4d5e-8f90-123456789abc"]},
            {"player_ids": ["5ab2c6ea-2b3c-4d5e-8f90-123456789abc"]},
        ),
        (
            Provider.CHAT_MS_TEAMS,
            {
                "connections": [
                    {"ms_teams_team_id": "team", "ms_teams_channel_id": "19:abc@thread.tacv2"},
                    {"incoming_webhook": {"url": "https://teams.test/hook"}},
                ],
                "ms_teams_tenant_id": None,
            },
            {
                "connections": [
                    {"ms_teams_team_id": "team", "ms_teams_channel_id": "19:abc@thread.tacv2"},
                    {"incoming_webhook": {"url": "https://teams.test/hook"}},
                ],
                "ms_teams_tenant_id": None,
            },
        ),
        (
            Provider.CHAT_MS_TEAMS,
            {"ms_teams_tenant_id": "entra-tenant"},
            {"connections": [], "ms_teams_tenant_id": "entra-tenant"},
        ),
        (
            Provider.CHAT_DISCORD,
            {"connections": [{"channel_id": "123"}, {"incoming_webhook": {"url": "https://discord.test/h"}}]},
            {"connections": [{"channel_id": "123"}, {"incoming_webhook": {"url": "https://discord.test/h"}}]},
        ),
    ]
    for provider, data, stored in accepted:
        path = f"/v1/users/u1/channel_data/{every_provider[provider]}"
        response = await env.put(path, json={"data": data})
        assert response.status_code == 200, (provider, response.text)
        assert response.json()["provider"] == provider.value
        assert response.json()["data"] == stored
        assert (await env.get(path)).json()["data"] == stored

    refused: list[tuple[Provider, dict[str, Any], set[str]]] = [
        (Provider.PUSH_AWS_SNS, {"tokens": ["t"]}, {"data.target_arns", "data.tokens"}),
        (
            Provider.PUSH_AWS_SNS,
            {"devices": [{"token": "t"}]},
            {"data.devices.0.target_arn", "data.devices.0.token"},
        ),
        (Provider.PUSH_ONE_SIGNAL, {"player_ids": "p"}, {"data.player_ids"}),
        (Provider.CHAT_MS_TEAMS, {}, {"data.connections"}),
        (Provider.CHAT_MS_TEAMS, {"connections": [{"user_id": "U1"}]}, {"data.connections.0.user_id"}),
        (Provider.CHAT_DISCORD, {"token": {"access_token": "t"}}, {"data.connections"}),
        (Provider.CHAT_DISCORD, {"connections": [{}]}, {"data.connections.0.channel_id"}),
        (Provider.HTTP_KNOCK_WEBHOOK, {"url": "u"}, {"data"}),
        (Provider.SMS_TWILIO, {}, {"data"}),
    ]
    for provider, data, fields in refused:
        path = f"/v1/users/u2/channel_data/{every_provider[provider]}"
        body = assert_error(await env.put(path, json={"data": data}), 422, "invalid_params")
        assert {error["field"] for error in body["errors"]} == fields, provider
    assert_error(await env.get("/v1/users/u2"), 404)


async def test_identify_with_inline_channel_data(env: EnvFixture) -> None:
    fcm = channel_id(env, "push-fcm")
    slack = channel_id(env, "slack")
    response = await env.put(
        "/v1/users/u1",
        json={
            "name": "Ann",
            "channel_data": {
                fcm.upper(): {"devices": [{"token": "d1", "timezone": "UTC"}]},
                slack: {"connections": [{"user_id": "U1"}]},
            },
        },
    )
    assert response.status_code == 200, response.text
    assert "channel_data" not in response.json()
    assert (await env.get(f"/v1/users/u1/channel_data/{fcm}")).json()["data"] == {
        "tokens": ["d1"],
        "devices": [device("d1", timezone="UTC")],
    }
    assert (await env.get(f"/v1/users/u1/channel_data/{slack}")).json()["data"] == {
        "connections": [{"user_id": "U1"}]
    }


async def test_identify_refuses_bad_inline_channel_data_and_writes_nothing(env: EnvFixture) -> None:
    fcm = channel_id(env, "push-fcm")
    email = channel_id(env, "email")
    body = assert_error(
        await env.put(
            "/v1/users/u1",
            json={
                "name": "Ann",
                "channel_data": {
                    UNKNOWN_CHANNEL: {"tokens": ["t"]},
                    "push-fcm": {"tokens": ["t"]},
                    fcm: {"tokens": [1]},
                    email: {"tokens": ["t"]},
                },
            },
        ),
        422,
        "invalid_params",
    )
    messages = {error["field"]: error["message"] for error in body["errors"]}
    assert messages == {
        f"channel_data.{UNKNOWN_CHANNEL}": "is not a configured channel id",
        "channel_data.push-fcm": "must be a UUID",
        f"channel_data.{fcm}.tokens.0": "Input should be a valid string",
        f"channel_data.{email}": "the channel 'email' (email, email_smtp) takes no channel data",
    }
    assert_error(await env.get("/v1/users/u1"), 404)
    assert_error(await env.put("/v1/users/u1", json={"channel_data": {fcm: []}}), 422, "invalid_params")
    assert_error(await env.get("/v1/users/u1"), 404)


async def test_deleting_the_user_deletes_its_channel_data(env: EnvFixture) -> None:
    path = user_path(env, "u1", "push-fcm")
    await env.put(path, json={"data": {"tokens": ["t"]}})
    assert (await env.delete("/v1/users/u1")).status_code == 204
    await env.put("/v1/users/u1", json={})
    assert_error(await env.get(path), 404)


async def test_publishable_key_may_use_user_channel_data_only(env: EnvFixture) -> None:
    path = user_path(env, "u1", "push-fcm")
    response = await env.put(path, json={"data": {"tokens": ["t"]}}, kind=KeyKind.PUBLISHABLE)
    assert response.status_code == 200, response.text
    assert (await env.get(path, kind=KeyKind.PUBLISHABLE)).json()["data"]["tokens"] == ["t"]
    assert (await env.delete(path, kind=KeyKind.PUBLISHABLE)).status_code == 204

    object_data = object_path(env, "projects", "p1", "slack")
    for method in ("GET", "PUT", "DELETE"):
        response = await env.request(
            method, object_data, json={"data": {"connections": []}}, kind=KeyKind.PUBLISHABLE
        )
        assert_error(response, 403, "incorrect_token_type")
    assert_error(await env.get("/v1/objects/projects/p1"), 404)


async def test_environments_are_isolated(env: EnvFixture, other_env: EnvFixture) -> None:
    user = user_path(env, "shared", "push-fcm")
    obj = object_path(env, "projects", "shared", "slack")
    await env.put(user, json={"data": {"tokens": ["env-one"]}})
    await env.put(obj, json={"data": {"connections": [{"channel_id": "C-one"}]}})
    for path in (user, obj):
        assert_error(await other_env.get(path), 404, "resource_missing")
        assert (await other_env.delete(path)).status_code == 204
    await other_env.put(user, json={"data": {"tokens": ["env-two"]}})
    await other_env.put(obj, json={"data": {"connections": [{"channel_id": "C-two"}]}})
    assert (await env.get(user)).json()["data"]["tokens"] == ["env-one"]
    assert (await env.get(obj)).json()["data"]["connections"] == [{"channel_id": "C-one"}]
    assert (await other_env.get(user)).json()["data"]["tokens"] == ["env-two"]

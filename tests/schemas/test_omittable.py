"""Fields Knock's document lets a caller leave out but not set to null: an explicit null is a 422 naming the
field, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import EnvFixture, assert_error, feed_channel_id

NULLS = [
    ("PUT", "/v1/objects/things/t1", {"name": "T", "channel_data": None}, "channel_data"),
    ("PUT", "/v1/objects/things/t1", {"name": "T", "preferences": None}, "preferences"),
    (
        "PUT",
        "/v1/users/u1/preferences/default",
        {"__persistence_strategy__": None},
        "__persistence_strategy__",
    ),
    ("PUT", "/v1/users/u1/preferences/default", {"channel_types": {"email": None}}, "channel_types.email"),
    ("PUT", "/v1/tenants/t1", {"name": "T", "settings": None}, "settings"),
    (
        "POST",
        "/v1/users/bulk/preferences",
        {"user_ids": ["u1"], "preferences": {"id": None, "channel_types": {"email": True}}},
        "preferences.id",
    ),
    (
        "POST",
        "/v1/tenants/bulk/set",
        {"tenants": [{"id": "t1", "channel_data": None}]},
        "tenants.0.tenant.channel_data",
    ),
    ("POST", "/v1/notify/cancel", {"name": "w", "cancellation_key": "k", "recipients": None}, "recipients"),
    (
        "POST",
        "/v1/objects/things/bulk/set",
        {"objects": [{"id": "t1", "preferences": None}]},
        "objects.0.preferences",
    ),
    (
        "POST",
        "/v1/workflows/w/trigger",
        {"recipients": [{"id": "t1", "collection": "things", "name": "T", "channel_data": None}]},
        "recipients.0.object.channel_data",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NULLS, ids=[case[-1] for case in NULLS])
async def test_null_where_knock_allows_none_is_refused_naming_the_field(
    env: EnvFixture, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    await env.put("/v1/users/u1", json={"name": "U"})
    refused = assert_error(await env.request(method, path, json=body), 422, "invalid_params")
    assert [error["field"] for error in refused["errors"]] == [field]
    assert_error(await env.get("/v1/objects/things/t1"), 404)
    assert_error(await env.get("/v1/tenants/t1"), 404)
    preferences = (await env.get("/v1/users/u1/preferences/default")).json()
    assert preferences["channel_types"] in (None, {})


async def test_a_null_filter_of_a_channel_bulk_update_is_refused(env: EnvFixture) -> None:
    path = f"/v1/channels/{feed_channel_id(env.runtime)}/messages/bulk/seen"
    refused = assert_error(await env.post(path, json={"user_ids": ["u1"], "tenants": None}), 422)
    assert [error["field"] for error in refused["errors"]] == ["tenants"]


async def test_the_workflow_cancel_still_takes_null_recipients_as_the_spec_allows(env: EnvFixture) -> None:
    response = await env.post("/v1/workflows/w/cancel", json={"cancellation_key": "k", "recipients": None})
    assert response.status_code == 204, response.text

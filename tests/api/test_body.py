"""Reading a request body: whole however its ASGI messages split it, refused past the limit, and parsed
with Knock's errors for what JSON (or the stores) cannot hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from clarion.api.app import all_routes
from clarion.api.body import MAX_BODY_BYTES, parse_json, read_body
from clarion.errors import InvalidInputError
from clarion.schemas.workflows import TriggerWorkflowRequest
from tests.conftest import EnvFixture, assert_error, feed_channel_id, push_workflow, run_workflow_jobs


def _request(*messages: Message) -> Request:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return Request({"type": "http", "method": "PUT", "headers": []}, receive)


def _chunk(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_split_over_several_messages_is_read_whole() -> None:
    request = _request(_chunk(b'{"a":', True), _chunk(b"", True), _chunk(b"1}", False))
    assert await read_body(request) == b'{"a":1}'


async def test_a_body_without_a_declared_length_is_refused_once_past_the_limit() -> None:
    half = b"x" * (MAX_BODY_BYTES // 2 + 1)
    request = _request(_chunk(half, True), _chunk(half, True), _chunk(b"never read", False))
    with pytest.raises(InvalidInputError) as refused:
        await read_body(request)
    assert refused.value.status == 413


async def test_a_client_gone_mid_body_is_a_disconnect() -> None:
    request = _request(_chunk(b'{"a":', True), {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnect):
        await read_body(request)


NOT_FINITE = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1E+400",
    b"1" * 320 + b".5",
    b"2" * 220 + b"e99",
]


@pytest.mark.parametrize("number", NOT_FINITE)
def test_a_number_json_has_no_place_for_is_invalid_json_naming_where_it_stands(number: bytes) -> None:
    raw = b'{"recipients": ["u1"], "data": {"items": [1, {"price": ' + number + b"}]}}"
    with pytest.raises(InvalidInputError) as refused:
        parse_json(raw, TriggerWorkflowRequest)
    assert (refused.value.status, refused.value.code) == (400, "invalid_json")
    assert [(e.field, e.type) for e in refused.value.errors] == [("data.items.1.price", "json_invalid")]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"recipients": ["u1"], "data": {"note": "NaN and Infinity", "e": "1e999", "long": "'
        + b"9" * 300
        + b'"}}',
        b'{"recipients": ["u1"], "data": {"big": 1e308, "tiny": 1e-999, "integer": ' + b"9" * 400 + b"}}",
    ],
)
def test_the_same_bytes_in_strings_and_numbers_in_range_are_accepted(raw: bytes) -> None:
    assert parse_json(raw, TriggerWorkflowRequest).data


@pytest.mark.parametrize("depth", [990, 5_000, 200_000])
@pytest.mark.parametrize("inner", [b'"\\u0000"', b'"a"', b"NaN"])
def test_a_body_nested_past_any_recursion_limit_is_a_4xx(depth: int, inner: bytes) -> None:
    raw = b'{"recipients": ["u1"], "data": {"deep": ' + b"[" * depth + inner + b"]" * depth + b"}}"
    with pytest.raises(InvalidInputError) as refused:
        parse_json(raw, TriggerWorkflowRequest)
    assert 400 <= refused.value.status < 500


def _with_number(template: str, number: bytes) -> bytes:
    return template.encode().replace(b"NUMBER", number)


@pytest.mark.parametrize("number", [b"NaN", b"-Infinity", b"1e999"])
async def test_a_number_json_has_no_place_for_is_refused_everywhere_and_writes_nothing(
    env: EnvFixture, tmp_path: Path, number: bytes
) -> None:
    await push_workflow(env, tmp_path, "greeting", {"name": "Greeting", "steps": []})
    writes = [
        ("POST", "/v1/workflows/greeting/trigger", '{"recipients": ["u1"], "data": {"n": NUMBER}}', "data.n"),
        (
            "POST",
            "/v1/workflows/greeting/trigger",
            '{"recipients": [{"id": "u1", "score": NUMBER}]}',
            "recipients.0.score",
        ),
        ("PUT", "/v1/users/u1", '{"score": NUMBER}', "score"),
        ("PUT", "/v1/objects/things/t1", '{"score": NUMBER}', "score"),
        ("POST", "/v1/users/bulk/identify", '{"users": [{"id": "u1", "score": NUMBER}]}', "users.0.score"),
        ("PUT", "/v1/tenants/t1", '{"settings": {"branding": {"n": NUMBER}}}', "settings.branding.n"),
    ]
    for method, path, template, field in writes:
        response = await env.request(
            method, path, content=_with_number(template, number), headers={"content-type": "application/json"}
        )
        body = assert_error(response, 400, "invalid_json")
        assert [error["field"] for error in body["errors"]] == [field], (path, body)
    await run_workflow_jobs(env.runtime)
    assert_error(await env.get("/v1/users/u1"), 404)
    assert_error(await env.get("/v1/objects/things/t1"), 404)
    assert_error(await env.get("/v1/tenants/t1"), 404)
    runs = await env.get("/v1/workflow_recipient_runs", params={"workflow": "greeting"})
    assert runs.json()["items"] == []


async def test_no_endpoint_answers_a_bad_body_with_a_server_error(env: EnvFixture) -> None:
    bodies = [
        b'{"data": {"n": NaN}, "id": Infinity}',
        b"[" * 990 + b'"\\u0000"' + b"]" * 990,
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ]
    for route in all_routes():
        path = re.sub(r"\{\w+\}", "x", route.path)
        for method in sorted((route.methods or set()) - {"GET", "HEAD"}):
            for raw in bodies:
                response = await env.request(
                    method, path, content=raw, headers={"content-type": "application/json"}
                )
                assert response.status_code < 500, (method, path, raw[:20], response.text)


async def test_the_deepest_body_accepted_passes_every_later_walk_of_its_data(
    env: EnvFixture, tmp_path: Path
) -> None:
    def nested(depth: int, leaf: str) -> str:
        return '{"a": ' * depth + f'"{leaf}"' + "}" * depth

    deepest = 199  # with the body's own object, the 200 levels Pydantic's parser reads
    for leaf in ("first", "second"):  # the second identify deep-merges into the first
        response = await env.put(
            "/v1/users/deep",
            content=f'{{"name": "Deep", "p": {nested(deepest, leaf)}}}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
    stored = (await env.get("/v1/users/deep")).json()["p"]
    for _ in range(deepest):
        stored = stored["a"]
    assert stored == "second"
    too_deep = await env.put(
        "/v1/users/deeper",
        content=f'{{"p": {nested(deepest + 1, "x")}}}',
        headers={"content-type": "application/json"},
    )
    assert_error(too_deep, 400, "invalid_json")

    steps = [
        {
            "ref": "in_app_feed_1",
            "type": "channel",
            "channel_key": "in-app-feed",
            "conditions": {"all": [{"variable": "data.a.a.a", "operator": "exists", "argument": ""}]},
            "template": {"markdown_body": "{{ data | json | size }} {{ recipient.p | json | size }}"},
        }
    ]
    await push_workflow(env, tmp_path, "deep", {"name": "Deep", "steps": steps})
    trigger = await env.post(
        "/v1/workflows/deep/trigger",
        content=f'{{"recipients": ["deep"], "data": {nested(deepest - 1, "leaf")}}}',
        headers={"content-type": "application/json"},
    )
    assert trigger.status_code == 200, trigger.text
    await run_workflow_jobs(env.runtime)
    feed = await env.get(f"/v1/users/deep/feeds/{feed_channel_id(env.runtime)}")
    [item] = feed.json()["entries"]
    # The `json` filter writes what was sent, spacing included: the whole document reached the template.
    assert item["blocks"][0]["content"].split() == [
        str(len(nested(deepest - 1, "leaf"))),
        str(len(nested(deepest, "second"))),
    ]

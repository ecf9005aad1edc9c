"""A fetch step's settings: what a push accepts and refuses (naming the field), how a run's request is
rendered from them, and how the response's data joins the run's."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from clarion.engine.fetch_settings import (
    USER_AGENT,
    FetchSettings,
    InvalidFetchRequestError,
    merge_fetched_data,
    parse_fetch_settings,
    sign,
)
from clarion.engine.frozen import freeze
from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateError, TemplateRenderer

RENDERER = TemplateRenderer()
FIELD = "steps.1.settings"


def parse(settings: Any) -> FetchSettings:
    return parse_fetch_settings(settings, FIELD, RENDERER)


def test_the_management_specs_example_parses() -> None:
    settings = parse(
        {
            "body": None,
            "headers": [{"key": "X-API-Key", "value": "1234567890"}],
            "method": "get",
            "query_params": [{"key": "key", "value": "value"}],
            "url": "https://example.com",
        }
    )
    assert settings == FetchSettings(
        method="get",
        url="https://example.com",
        headers=(("X-API-Key", "1234567890"),),
        query_params=(("key", "value"),),
        body=None,
        response_path=None,
        signing_key=None,
    )


def test_the_method_defaults_to_get_and_the_cli_settings_are_read() -> None:
    settings = parse(
        {
            "url": "https://api.example.com/{{ recipient.id }}",
            "headers": "{{ data.headers | json }}",
            "response_path": "account.details",
            "signing_key": "sk_123",
        }
    )
    assert settings.method == "get"
    assert settings.headers == "{{ data.headers | json }}"
    assert settings.query_params == ()
    assert settings.response_path == ("account", "details")
    assert settings.signing_key == "sk_123"


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        (None, FIELD, "must be an object with `method` and `url`"),
        ({"method": "get"}, f"{FIELD}.url", "is required"),
        ({"url": "  "}, f"{FIELD}.url", "must be a non-empty string"),
        ({"url": "https://x.example", "method": "head"}, f"{FIELD}.method", "must be one of get, post, put"),
        ({"url": "ftp://x.example/file"}, f"{FIELD}.url", "'ftp://x.example/file' is not an http"),
        ({"url": "https://x.example/{{ data.id "}, f"{FIELD}.url", "is not valid Liquid"),
        ({"url": "https://x.example", "body": {"a": 1}}, f"{FIELD}.body", "must be a string"),
        ({"url": "https://x.example", "body": "{% if %}"}, f"{FIELD}.body", "is not valid Liquid"),
        ({"url": "https://x.example", "headers": {"a": "b"}}, f"{FIELD}.headers", "must be a list of"),
        ({"url": "https://x.example", "headers": ["a"]}, f"{FIELD}.headers.0", "must be an object"),
        ({"url": "https://x.example", "headers": [{"key": "A"}]}, f"{FIELD}.headers.0.value", "is required"),
        (
            {"url": "https://x.example", "headers": [{"key": "A", "value": 1}]},
            f"{FIELD}.headers.0.value",
            "must be a string",
        ),
        (
            {"url": "https://x.example", "headers": [{"key": "", "value": "v"}]},
            f"{FIELD}.headers.0.key",
            "must not be empty",
        ),
        (
            {"url": "https://x.example", "headers": [{"key": "Bad Name", "value": "v"}]},
            f"{FIELD}.headers.0.key",
            "is not a valid header name",
        ),
        (
            {"url": "https://x.example", "headers": [{"key": "Host", "value": "v"}]},
            f"{FIELD}.headers.0.key",
            "is set by Clarion",
        ),
        (
            {"url": "https://x.example", "headers": [{"key": "A", "value": "{{ x"}]},
            f"{FIELD}.headers.0.value",
            "is not valid Liquid",
        ),
        (
            {"url": "https://x.example", "query_params": "{{ x"},
            f"{FIELD}.query_params",
            "is not valid Liquid",
        ),
        (
            {"url": "https://x.example", "response_path": "a..b"},
            f"{FIELD}.response_path",
            "must be keys joined by dots",
        ),
        ({"url": "https://x.example", "response_path": 3}, f"{FIELD}.response_path", "must be a string"),
        ({"url": "https://x.example", "signing_key": True}, f"{FIELD}.signing_key", "must be a string"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(settings: Any, field: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse(settings)
    assert caught.value.field == field
    assert message in caught.value.message


SCOPE = {
    "recipient": {"id": "user-1", "email": "ada@example.com"},
    "data": {"plan": "pro", "headers": {"X-Tenant": "acme", "X-Retries": 2, "X-Skip": None}, "n": 5},
    "vars": {"api_key": "k-123"},
}


def test_a_request_is_rendered_from_every_liquid_field() -> None:
    settings = parse(
        {
            "method": "post",
            "url": "https://api.example.com/users/{{ recipient.id }}?v=1",
            "headers": [
                {"key": "X-API-Key", "value": "{{ vars.api_key }}"},
                {"key": "{{ 'X-Plan' }}", "value": " {{ data.plan }} "},
            ],
            "query_params": [{"key": "email", "value": "{{ recipient.email }}"}, {"key": "v", "value": "2"}],
            "body": '{"plan": "{{ data.plan }}", "n": {{ data.n }}}',
        }
    )
    request = settings.render(RENDERER, SCOPE, name="fetch_1")
    assert request.method == "POST"
    assert str(request.url) == "https://api.example.com/users/user-1?v=2&email=ada%40example.com"
    assert request.headers == (
        ("X-API-Key", "k-123"),
        ("X-Plan", "pro"),
        ("User-Agent", USER_AGENT),
        ("Accept", "application/json"),
        ("Content-Type", "application/json"),
    )
    assert request.body == b'{"plan": "pro", "n": 5}'


def test_headers_and_query_params_may_be_one_template_of_a_json_object() -> None:
    settings = parse(
        {
            "url": "https://api.example.com/",
            "headers": "{{ data.headers | json }}",
            "query_params": '{"plan": "{{ data.plan }}", "page": 2, "all": true}',
        }
    )
    request = settings.render(RENDERER, SCOPE)
    assert request.headers[:2] == (("X-Tenant", "acme"), ("X-Retries", "2"))
    assert str(request.url) == "https://api.example.com/?plan=pro&page=2&all=true"


def test_a_body_is_sent_only_with_post_put_and_patch() -> None:
    for method, sent in (("get", False), ("delete", False), ("post", True), ("put", True), ("patch", True)):
        request = parse({"method": method, "url": "https://x.example", "body": '{"a": 1}'}).render(
            RENDERER, SCOPE
        )
        assert (request.body == b'{"a": 1}') is sent
        assert ("Content-Type", "application/json") in request.headers if sent else request.body is None


def test_a_body_that_renders_empty_sends_none() -> None:
    request = parse(
        {"method": "post", "url": "https://x.example", "body": "{% if false %}{}{% endif %}"}
    ).render(RENDERER, SCOPE)
    assert request.body is None
    assert all(name != "Content-Type" for name, _ in request.headers)


def test_credentials_in_the_url_become_an_authorization_header() -> None:
    request = parse({"url": "https://ada:p%40ss@api.example.com/x"}).render(RENDERER, SCOPE)
    assert str(request.url) == "https://api.example.com/x"
    assert ("Authorization", "Basic " + base64.b64encode(b"ada:p@ss").decode()) in request.headers


def test_the_signature_is_knocks() -> None:
    value = sign("key", b'{"a":1}', now_ms=1_700_000_000_000)
    digest = hmac.new(b"key", b'1700000000000.{"a":1}', hashlib.sha256).digest()
    assert value == f"t=1700000000000,s={base64.b64encode(digest).decode()}"
    request = parse({"url": "https://x.example", "signing_key": "key"}).render(RENDERER, SCOPE)
    assert dict(request.headers)["x-knock-signature"].startswith("t=")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "{{ data.missing }}"}, "the URL renders empty"),
        ({"url": "{{ 'file:///etc/passwd' }}"}, "'file:///etc/passwd' is not an http or https URL"),
        ({"url": "{{ 'javascript:alert(1)' }}"}, "'javascript:alert(1)' is not an http or https URL"),
        (
            {"url": "https://x.example", "method": "post", "body": '{"plan": {{ data.plan }}}'},
            "the body is not JSON",
        ),
        (
            {"url": "https://x.example", "headers": "{{ data.headers }}"},
            "fetch_1.headers must render to a JSON object",
        ),
        (
            {"url": "https://x.example", "headers": '{"a": {"b": 1}}'},
            "fetch_1.headers: the value of 'a' must be text",
        ),
        (
            {"url": "https://x.example", "headers": [{"key": "{{ data.none }}", "value": "v"}]},
            "fetch_1.headers: a key renders empty",
        ),
        (
            {"url": "https://x.example", "headers": [{"key": "{{ 'Content-Length' }}", "value": "1"}]},
            "the Content-Length header is set by Clarion",
        ),
        (
            {"url": "https://x.example", "headers": [{"key": "X-A", "value": "a{{ 'b\nc' }}"}]},
            "the value of the X-A header holds a line break",
        ),
    ],
)
def test_a_request_that_cannot_be_sent_is_refused_when_rendered(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidFetchRequestError) as caught:
        parse(settings).render(RENDERER, SCOPE, name="fetch_1")
    assert caught.value.message.startswith(message)


def test_liquid_that_fails_to_render_names_the_field() -> None:
    settings = parse({"url": "https://x.example/{{ data.plan | no_such_filter }}"})
    with pytest.raises(TemplateError) as caught:
        settings.render(RENDERER, SCOPE, name="fetch_1")
    assert caught.value.name == "fetch_1.url"


DATA = freeze({"foo": "bar", "metadata": {"count": 1}, "account": {"id": "a1", "plan": "free"}})


def test_a_response_is_shallow_merged_into_data_as_knock_documents() -> None:
    merged = merge_fetched_data(DATA, {"biz": "baz", "metadata": {"query_count": 1}}, None)
    assert merged == {
        "foo": "bar",
        "biz": "baz",
        "metadata": {"query_count": 1},
        "account": {"id": "a1", "plan": "free"},
    }
    assert DATA["metadata"] == {"count": 1}


def test_a_response_path_places_the_response_under_it() -> None:
    merged = merge_fetched_data(DATA, {"plan": "pro"}, ("account", "details"))
    assert merged["account"] == {"id": "a1", "plan": "free", "details": {"plan": "pro"}}
    assert merge_fetched_data(DATA, {"x": 1}, ("foo", "bar"))["foo"] == {"bar": {"x": 1}}
    assert merge_fetched_data(DATA, {"x": 1}, ("metadata",))["metadata"] == {"x": 1}
    assert DATA == {"foo": "bar", "metadata": {"count": 1}, "account": {"id": "a1", "plan": "free"}}


def test_no_response_body_leaves_data_as_it_was() -> None:
    assert merge_fetched_data(DATA, None, ("account",)) is DATA

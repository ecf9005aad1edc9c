"""Throttle step settings: Knock's fields parsed and refused with the field named, and what they mean for a
run at a moment the test fixes: when a window it opens closes, and which key it counts under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateRenderer
from clarion.engine.throttle_settings import parse_throttle_settings
from clarion.store.recipient_resolution import RecipientKey

NOW = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
FIELD = "steps.2.settings"
HOUR = {"unit": "hours", "value": 1}


def parse(**settings: Any) -> Any:
    return parse_throttle_settings(settings, FIELD, renderer=TemplateRenderer())


def test_a_fixed_window_and_the_default_limit() -> None:
    settings = parse(throttle_window=HOUR)
    assert (settings.window_seconds, settings.window_field_path, settings.limit, settings.key) == (
        3600,
        None,
        1,
        None,
    )
    assert settings.window_end({}, NOW) == NOW + timedelta(hours=1)
    assert parse(throttle_window=HOUR, throttle_limit=None, throttle_key=None) == settings


def test_every_setting_read() -> None:
    settings = parse(
        throttle_window_field_path="recipient.quiet_until", throttle_limit=5, throttle_key="alert_id"
    )
    assert (settings.window_seconds, settings.window_field_path) == (None, "recipient.quiet_until")
    assert (settings.limit, settings.key) == (5, "alert_id")


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        (None, FIELD, "must be an object"),
        ({}, FIELD, "needs one of `throttle_window` and `throttle_window_field_path`"),
        ({"throttle_window": HOUR, "throttle_window_field_path": "data.w"}, FIELD, "needs one of"),
        ({"throttle_window": {"unit": "days", "value": 32}}, f"{FIELD}.throttle_window", "at most 31 days"),
        ({"throttle_window": {"unit": "weeks", "value": 5}}, f"{FIELD}.throttle_window", "at most 31 days"),
        (
            {"throttle_window": {"unit": "minutes", "value": 0}},
            f"{FIELD}.throttle_window.value",
            "more than 0",
        ),
        ({"throttle_window": {"unit": "minutes"}}, f"{FIELD}.throttle_window.value", "at least 0"),
        ({"throttle_window_field_path": ""}, f"{FIELD}.throttle_window_field_path", "non-empty string"),
        ({"throttle_window": HOUR, "throttle_limit": 0}, f"{FIELD}.throttle_limit", "whole number"),
        ({"throttle_window": HOUR, "throttle_limit": 1.5}, f"{FIELD}.throttle_limit", "whole number"),
        ({"throttle_window": HOUR, "throttle_limit": 2**31}, f"{FIELD}.throttle_limit", "whole number"),
        ({"throttle_window": HOUR, "throttle_key": ["a"]}, f"{FIELD}.throttle_key", "must be a string"),
        ({"throttle_window": HOUR, "throttle_key": "{% if %}"}, f"{FIELD}.throttle_key", ""),
        ({"throttle_window": HOUR, "throttle_windows": HOUR}, f"{FIELD}.throttle_windows", "not a setting"),
    ],
)
def test_invalid_settings_are_refused_with_the_field_named(settings: Any, field: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_throttle_settings(settings, FIELD, renderer=TemplateRenderer())
    assert caught.value.field == field
    assert message in caught.value.message


def test_thirty_one_days_is_the_longest_window() -> None:
    assert parse(throttle_window={"unit": "days", "value": 31}).window_seconds == 31 * 86400


@pytest.mark.parametrize(
    ("value", "end"),
    [
        ("2030-01-08T12:00:00Z", NOW + timedelta(days=1)),
        ({"unit": "minutes", "value": 15}, NOW + timedelta(minutes=15)),
        ({"frequency": "weekly", "days": ["mon"], "hours": 9}, datetime(2030, 1, 14, 9, 0, tzinfo=UTC)),
        ({"frequency": "hourly", "minutes": 5}, datetime(2030, 1, 7, 12, 5, tzinfo=UTC)),
    ],
)
def test_a_dynamic_window_closes_when_its_value_says(value: Any, end: datetime) -> None:
    settings = parse(throttle_window_field_path="data.quiet_until")
    assert settings.window_end({"data": {"quiet_until": value}}, NOW) == end


@pytest.mark.parametrize(
    "value",
    [
        None,
        "2030-01-07T11:59:59Z",
        "2030-02-08T12:00:01Z",  # past 31 days
        {"unit": "days", "value": 32},
        {"frequency": "monthly", "day_of_month": 32},
        "not a time",
    ],
)
def test_a_dynamic_value_that_is_no_window_skips_the_step(value: Any) -> None:
    settings = parse(throttle_window_field_path="data.quiet_until")
    assert settings.window_end({"data": {"quiet_until": value}}, NOW) is None


def test_the_key_is_a_path_or_liquid_and_a_missing_or_long_one_skips_the_step() -> None:
    renderer = TemplateRenderer()
    variables = {"data": {"alert": "disk-full", "long": "x" * 58, "short": "x" * 57}, "actor": {"id": "ops"}}
    assert parse(throttle_window=HOUR).key_value(variables, renderer, name="t") == ""
    assert (
        parse(throttle_window=HOUR, throttle_key="alert").key_value(variables, renderer, name="t")
        == "disk-full"
    )
    liquid = parse(throttle_window=HOUR, throttle_key="{{ data.alert }}/{{ actor.id }}")
    assert liquid.key_value(variables, renderer, name="t") == "disk-full/ops"
    assert (
        parse(throttle_window=HOUR, throttle_key="data.none").key_value(variables, renderer, name="t") is None
    )
    assert (
        parse(throttle_window=HOUR, throttle_key="{{ data.none }}").key_value(variables, renderer, name="t")
        is None
    )
    # JSON- and URL-encoded, the key must stay under 64 characters: the quotes take 6 ("%22" each).
    assert (
        parse(throttle_window=HOUR, throttle_key="short").key_value(variables, renderer, name="t") == "x" * 57
    )
    assert parse(throttle_window=HOUR, throttle_key="long").key_value(variables, renderer, name="t") is None


def test_the_entry_counts_per_workflow_step_recipient_and_key() -> None:
    settings = parse(throttle_window=HOUR, throttle_limit=3)
    entry = settings.entry(
        environment_id="env",
        workflow_key="alert",
        step_ref="throttle_1",
        recipient=RecipientKey.user("u"),
        key="k",
        window_ends_at=NOW,
    )
    assert entry.limit == 3 and entry.window_ends_at == NOW
    assert entry.identity.stored() == ("env", "alert", "throttle_1", "$users", "u", "k")

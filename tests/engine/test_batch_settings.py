"""Batch step settings: Knock's fields parsed and refused with the field named, and what they mean for a run
at a moment the test fixes: when its batch closes (fixed, dynamic, relative), which batch it joins, and
what the store is handed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clarion.engine.batch_settings import (
    BatchExecutionMode,
    BatchOrder,
    BatchWindowType,
    WorkflowVersionMode,
    parse_batch_settings,
)
from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateRenderer
from clarion.store.recipient_resolution import RecipientKey

NOW = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # a Monday
FIELD = "steps.0.settings"
TEN_MINUTES = {"unit": "minutes", "value": 10}


def parse(**settings: Any) -> Any:
    return parse_batch_settings(settings, FIELD, renderer=TemplateRenderer())


def refusal(settings: Any) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        parse_batch_settings(settings, FIELD, renderer=TemplateRenderer())
    return caught.value


def test_a_fixed_window_and_knocks_defaults() -> None:
    settings = parse(batch_window=TEN_MINUTES)
    assert settings.window_seconds == 600 and settings.until_field_path is None and settings.key is None
    assert settings.window_type is BatchWindowType.FIXED and not settings.sliding
    assert settings.extension_limit_seconds is None and settings.items_max_limit is None
    assert settings.render_limit == 10 and settings.order is BatchOrder.ASC
    assert settings.execution_mode is BatchExecutionMode.ACCUMULATE
    assert settings.version_mode is WorkflowVersionMode.PINNED


def test_every_setting_read() -> None:
    settings = parse(
        batch_key="{{ data.page_id }}-{{ actor.id }}",
        batch_window={"unit": "hours", "value": 12},
        batch_until_field_path="recipient.batch_until",
        batch_window_type="sliding",
        batch_window_extension_limit={"unit": "days", "value": 1},
        batch_items_max_limit=1000,
        batch_items_render_limit=100,
        batch_order="desc",
        batch_execution_mode="flush_leading",
        workflow_version_mode="latest",
    )
    assert settings.key == "{{ data.page_id }}-{{ actor.id }}"
    assert (settings.window_seconds, settings.until_field_path) == (43_200, "recipient.batch_until")
    assert settings.sliding and settings.extension_limit_seconds == 86_400
    assert (settings.items_max_limit, settings.render_limit, settings.order) == (1000, 100, BatchOrder.DESC)
    assert settings.execution_mode is BatchExecutionMode.FLUSH_LEADING
    assert settings.version_mode is WorkflowVersionMode.LATEST


def test_nulls_read_as_left_out() -> None:
    settings = parse(
        batch_key=None,
        batch_window=TEN_MINUTES,
        batch_until_field_path=None,
        batch_window_type=None,
        batch_window_extension_limit=None,
        batch_items_max_limit=None,
        batch_items_render_limit=None,
        batch_order=None,
        batch_execution_mode=None,
        workflow_version_mode=None,
    )
    assert settings == parse(batch_window=TEN_MINUTES)
    assert parse(batch_window=TEN_MINUTES, batch_key="").key is None


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ("ten minutes", FIELD, "must be an object"),
        ({}, FIELD, "needs `batch_window` or `batch_until_field_path`"),
        (
            {"batch_window": {"unit": "fortnights", "value": 1}},
            f"{FIELD}.batch_window.unit",
            "must be one of",
        ),
        ({"batch_window": {"unit": "minutes", "value": -1}}, f"{FIELD}.batch_window.value", "at least 0"),
        ({"batch_window": {"unit": "minutes", "value": 0}}, f"{FIELD}.batch_window.value", "more than 0"),
        ({"batch_window": {"unit": "days", "value": 366}}, f"{FIELD}.batch_window", "at most 365 days"),
        ({"batch_window": 600}, f"{FIELD}.batch_window", "duration object"),
        ({"batch_until_field_path": ""}, f"{FIELD}.batch_until_field_path", "non-empty string"),
        ({"batch_until_field_path": 3}, f"{FIELD}.batch_until_field_path", "non-empty string"),
        (
            {"batch_window": TEN_MINUTES, "batch_window_type": "rolling"},
            f"{FIELD}.batch_window_type",
            "fixed, sliding",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_window_type": "sliding"},
            f"{FIELD}.batch_window_extension_limit",
            "required with a sliding window",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_window_extension_limit": {"unit": "weeks", "value": 60}},
            f"{FIELD}.batch_window_extension_limit",
            "at most 365 days",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_items_max_limit": 1},
            f"{FIELD}.batch_items_max_limit",
            "2 to 1000",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_items_max_limit": 1001},
            f"{FIELD}.batch_items_max_limit",
            "2 to 1000",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_items_max_limit": "5"},
            f"{FIELD}.batch_items_max_limit",
            "2 to 1000",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_items_max_limit": True},
            f"{FIELD}.batch_items_max_limit",
            "2 to 1000",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_items_render_limit": 0},
            f"{FIELD}.batch_items_render_limit",
            "1 to 100",
        ),
        (
            {"batch_window": TEN_MINUTES, "batch_items_render_limit": 101},
            f"{FIELD}.batch_items_render_limit",
            "1 to 100",
        ),
        ({"batch_window": TEN_MINUTES, "batch_order": "newest"}, f"{FIELD}.batch_order", "asc, desc"),
        (
            {"batch_window": TEN_MINUTES, "batch_execution_mode": "flush"},
            f"{FIELD}.batch_execution_mode",
            "accumulate, flush_leading",
        ),
        (
            {"batch_window": TEN_MINUTES, "workflow_version_mode": "newest"},
            f"{FIELD}.workflow_version_mode",
            "pinned, latest",
        ),
        ({"batch_window": TEN_MINUTES, "batch_key": 7}, f"{FIELD}.batch_key", "must be a string"),
        ({"batch_window": TEN_MINUTES, "batch_key": "{{ data.page_id "}, f"{FIELD}.batch_key", ""),
        (
            {"batch_window": TEN_MINUTES, "batch_window_field_path": "data.window"},
            f"{FIELD}.batch_window_field_path",
            "is not a setting of this step",
        ),
    ],
)
def test_invalid_settings_are_refused_with_the_field_named(settings: Any, field: str, message: str) -> None:
    error = refusal(settings)
    assert error.field == field
    assert message in error.message


def test_a_fixed_window_closes_its_length_after_now() -> None:
    assert parse(batch_window=TEN_MINUTES).window_end({}, NOW) == NOW + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("value", "end"),
    [
        ("2030-01-07T13:00:00Z", NOW + timedelta(hours=1)),
        ("2030-01-07T14:00:00+01:00", NOW + timedelta(hours=1)),
        ({"unit": "seconds", "value": 30}, NOW + timedelta(seconds=30)),
        ({"unit": "weeks", "value": 2}, NOW + timedelta(weeks=2)),
        ({"frequency": "daily", "hours": 9, "minutes": 30}, datetime(2030, 1, 8, 9, 30, tzinfo=UTC)),
        ({"frequency": "weekly", "days": ["fri"], "hours": 9}, datetime(2030, 1, 11, 9, 0, tzinfo=UTC)),
    ],
)
def test_a_dynamic_window_closes_when_its_value_says(value: Any, end: datetime) -> None:
    settings = parse(batch_until_field_path="data.batch_until")
    assert settings.window_end({"data": {"batch_until": value}}, NOW) == end


def test_a_dynamic_window_is_read_from_any_namespace_in_the_recipients_timezone() -> None:
    settings = parse(batch_until_field_path="recipient.digest")
    recipient = {"timezone": "America/New_York", "digest": {"frequency": "daily", "hours": 9}}
    # 12:00 UTC is 07:00 in New York: 09:00 there is 14:00 UTC the same day.
    assert settings.window_end({"recipient": recipient}, NOW) == datetime(2030, 1, 7, 14, 0, tzinfo=UTC)
    unnamed = parse(batch_until_field_path="batch_until")
    assert unnamed.window_end({"data": {"batch_until": "2030-01-07T13:00:00Z"}}, NOW) == NOW + timedelta(
        hours=1
    )


def test_a_relative_window_is_an_offset_after_the_moment_found() -> None:
    settings = parse(batch_until_field_path="data.appointment", batch_window={"unit": "hours", "value": 1})
    variables = {"data": {"appointment": "2030-01-08T09:00:00Z"}}
    assert settings.window_end(variables, NOW) == datetime(2030, 1, 8, 10, 0, tzinfo=UTC)
    # A moment just past is still a window once the offset carries it into the future.
    assert settings.window_end({"data": {"appointment": "2030-01-07T11:30:00Z"}}, NOW) == NOW + timedelta(
        minutes=30
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "tomorrow",
        "2030-01-07T13:00:00",  # no offset
        "2030-01-07T11:00:00Z",  # in the past
        "2030-01-07T12:00:00Z",  # now
        "2031-01-08T12:00:00Z",  # past 365 days
        {"unit": "seconds", "value": 0},
        {"unit": "fortnights", "value": 1},
        {"unit": "days", "value": 10**30},
        {"frequency": "yearly"},
        {"frequency": "weekly", "hours": 9},  # a weekly rule names its days
        {"frequency": "daily", "minutes": 7},
        {"frequency": "daily", "interval": 2},
        ["2030-01-07T13:00:00Z"],
        42,
    ],
)
def test_a_dynamic_value_that_is_no_window_skips_the_step(value: Any) -> None:
    settings = parse(batch_until_field_path="data.batch_until")
    assert settings.window_end({"data": {"batch_until": value}}, NOW) is None
    assert settings.window_end({}, NOW) is None


def test_the_batch_key_is_a_path_or_liquid_and_missing_means_none() -> None:
    renderer = TemplateRenderer()
    variables = {"data": {"page_id": 7, "kind": "comment"}, "actor": {"id": "dennis"}}
    assert parse(batch_window=TEN_MINUTES).key_value(variables, renderer, name="b") == ""
    assert (
        parse(batch_window=TEN_MINUTES, batch_key="page_id").key_value(variables, renderer, name="b") == "7"
    )
    assert (
        parse(batch_window=TEN_MINUTES, batch_key="data.kind").key_value(variables, renderer, name="b")
        == "comment"
    )
    liquid = parse(batch_window=TEN_MINUTES, batch_key="{{ data.kind }}-{{ actor.id }}")
    assert liquid.key_value(variables, renderer, name="b") == "comment-dennis"
    assert (
        parse(batch_window=TEN_MINUTES, batch_key="data.nothing").key_value(variables, renderer, name="b")
        == ""
    )


def test_pinned_batches_are_per_version_and_latest_ones_per_step() -> None:
    names = {"environment_id": "env", "workflow_key": "wf", "recipient": RecipientKey.user("u"), "key": "k"}
    pinned = parse(batch_window=TEN_MINUTES).identity(version_id="v1", step_ref="batch_1", **names)
    latest = parse(batch_window=TEN_MINUTES, workflow_version_mode="latest").identity(
        version_id="v1", step_ref="batch_1", **names
    )
    assert (pinned.version_id, pinned.step_ref) == ("v1", "")
    assert (latest.version_id, latest.step_ref) == ("", "batch_1")


def test_the_join_carries_the_settings_the_store_applies() -> None:
    names = {"environment_id": "env", "workflow_key": "wf", "recipient": RecipientKey.user("u"), "key": ""}
    sliding = parse(
        batch_window=TEN_MINUTES,
        batch_window_type="sliding",
        batch_window_extension_limit={"unit": "hours", "value": 1},
        batch_items_max_limit=5,
        batch_execution_mode="flush_leading",
    )
    identity = sliding.identity(version_id="v", step_ref="s", **names)
    entry = sliding.join(run_id="r", identity=identity, actor=None, data={"a": 1}, closes_at=NOW)
    assert (entry.extension_limit_seconds, entry.max_items, entry.flush_leading) == (3600, 5, True)
    fixed = parse(batch_window=TEN_MINUTES, batch_window_extension_limit={"unit": "hours", "value": 1})
    assert (
        fixed.join(run_id="r", identity=identity, actor=None, data={}, closes_at=NOW).extension_limit_seconds
        is None
    )

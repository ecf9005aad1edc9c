"""Window rules: the next moment of `{frequency, days, hours, minutes, day_of_month}` after a moment the test
fixes, on a timezone's wall clock, daylight-saving changes included; rules Knock would not take are none."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clarion.engine.window_rules import WindowRule, next_occurrence, parse_window_rule

MONDAY_NOON = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def rule(**fields: Any) -> WindowRule:
    parsed = parse_window_rule(fields)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"frequency": "hourly"}, datetime(2030, 1, 7, 13, 0)),
        ({"frequency": "hourly", "minutes": 45}, datetime(2030, 1, 7, 12, 45)),
        ({"frequency": "hourly", "days": "weekends"}, datetime(2030, 1, 12, 0, 0)),
        ({"frequency": "daily"}, datetime(2030, 1, 8, 0, 0)),
        ({"frequency": "daily", "hours": 12}, datetime(2030, 1, 8, 12, 0)),  # strictly after
        ({"frequency": "daily", "hours": 13, "minutes": 30}, datetime(2030, 1, 7, 13, 30)),
        ({"frequency": "daily", "hours": 9, "days": "weekdays"}, datetime(2030, 1, 8, 9, 0)),
        ({"frequency": "weekly", "days": ["mon"], "hours": 9}, datetime(2030, 1, 14, 9, 0)),
        ({"frequency": "weekly", "days": ["mon", "wed"], "hours": 9}, datetime(2030, 1, 9, 9, 0)),
        ({"frequency": "monthly"}, datetime(2030, 2, 1, 0, 0)),
        ({"frequency": "monthly", "day_of_month": 7, "hours": 18}, datetime(2030, 1, 7, 18, 0)),
        ({"frequency": "monthly", "day_of_month": 31}, datetime(2030, 1, 31, 0, 0)),
        (
            {"frequency": "monthly", "day_of_month": 30, "hours": 23, "minutes": 55},
            datetime(2030, 1, 30, 23, 55),
        ),
        ({"frequency": "monthly", "day_of_month": 29, "days": ["fri"]}, datetime(2030, 3, 29, 0, 0)),
        ({"frequency": "daily", "hours": None, "minutes": None, "interval": 1}, datetime(2030, 1, 8, 0, 0)),
    ],
)
def test_the_next_moment_in_utc(fields: dict[str, Any], expected: datetime) -> None:
    assert next_occurrence(rule(**fields), MONDAY_NOON, UTC) == expected.replace(tzinfo=UTC)


def test_a_month_without_the_day_is_skipped() -> None:
    february = datetime(2030, 2, 1, tzinfo=UTC)
    assert next_occurrence(rule(frequency="monthly", day_of_month=31), february, UTC) == datetime(
        2030, 3, 31, tzinfo=UTC
    )


def test_the_wall_clock_is_the_timezones() -> None:
    # 12:00 UTC on Monday is 07:00 in New York: 09:00 there is 14:00 UTC.
    found = next_occurrence(rule(frequency="daily", hours=9), MONDAY_NOON, NEW_YORK)
    assert found == datetime(2030, 1, 7, 14, 0, tzinfo=UTC)
    # Tokyo is already at 21:00 Monday: its next 09:00 is Tuesday's, 00:00 UTC.
    tokyo = next_occurrence(rule(frequency="daily", hours=9), MONDAY_NOON, ZoneInfo("Asia/Tokyo"))
    assert tokyo == datetime(2030, 1, 8, 0, 0, tzinfo=UTC)


def test_daylight_saving_changes_keep_the_wall_clock() -> None:
    # New York moves to summer time on 10 March 2030: 09:00 is 14:00 UTC before and 13:00 UTC after.
    before = datetime(2030, 3, 9, 15, 0, tzinfo=UTC)
    assert next_occurrence(rule(frequency="daily", hours=9), before, NEW_YORK) == datetime(
        2030, 3, 10, 13, 0, tzinfo=UTC
    )
    # 02:30 does not exist that day; it is read as 03:30 summer time.
    skipped = next_occurrence(rule(frequency="daily", hours=2, minutes=30), before, NEW_YORK)
    assert skipped == datetime(2030, 3, 10, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"frequency": "yearly"},
        {"frequency": "weekly"},
        {"frequency": "daily", "days": []},
        {"frequency": "daily", "days": ["monday"]},
        {"frequency": "daily", "days": "workdays"},
        {"frequency": "daily", "days": [1]},
        {"frequency": "daily", "hours": 24},
        {"frequency": "daily", "hours": -1},
        {"frequency": "daily", "hours": "9"},
        {"frequency": "daily", "minutes": 7},
        {"frequency": "daily", "minutes": 60},
        {"frequency": "daily", "minutes": True},
        {"frequency": "monthly", "day_of_month": 0},
        {"frequency": "monthly", "day_of_month": 32},
        {"frequency": "daily", "interval": 2},
        {"frequency": "daily", "interval": True},
        {"frequency": "daily", "at": "09:00"},
    ],
)
def test_what_knock_would_not_take_is_no_rule(fields: dict[str, Any]) -> None:
    assert parse_window_rule(fields) is None


def test_a_rule_that_never_comes_round_has_no_next_moment() -> None:
    # Knock's rules cannot say this, but the search is bounded all the same: no 31st of February.
    impossible = WindowRule("monthly", frozenset(range(7)), 0, 0, 32)
    assert next_occurrence(impossible, MONDAY_NOON, UTC) is None

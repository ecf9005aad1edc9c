"""Dynamic windows: the value a field path finds, read as the moment a window closes: a timestamp with an
offset, a Duration after now, or a window rule in the recipient's timezone; anything else is no window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clarion.engine.dynamic_windows import after_seconds, recipient_zone, window_end

NOW = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-07T13:00:00Z", NOW + timedelta(hours=1)),
        ("2030-01-07T13:00:00.250+00:00", NOW + timedelta(hours=1, milliseconds=250)),
        ("2020-01-01T00:00:00Z", datetime(2020, 1, 1, tzinfo=UTC)),  # past: the settings refuse it
        ({"unit": "minutes", "value": 1.5}, NOW + timedelta(seconds=90)),
        ({"frequency": "hourly"}, NOW + timedelta(hours=1)),
        ("2030-01-07T13:00:00", None),
        ("2030-01-07", None),
        ({"unit": "minutes"}, None),
        ({"unit": "minutes", "value": 1, "extra": 1}, None),
        ({"unit": "days", "value": 10**12}, None),  # past what a datetime holds
        ({"frequency": "daily", "hours": 25}, None),
        (True, None),
        (3600, None),
    ],
)
def test_window_values(value: Any, expected: datetime | None) -> None:
    assert window_end(value, NOW, UTC) == expected


KNOCK_DEFAULT = ZoneInfo("Etc/UTC")


@pytest.mark.parametrize(
    ("variables", "zone"),
    [
        ({"recipient": {"timezone": "Europe/Paris"}}, ZoneInfo("Europe/Paris")),
        ({"recipient": {"timezone": "Mars/Olympus"}}, KNOCK_DEFAULT),
        ({"recipient": {"timezone": "America"}}, KNOCK_DEFAULT),
        ({"recipient": {"timezone": "../../etc/passwd"}}, KNOCK_DEFAULT),
        ({"recipient": {"timezone": "x" * 300}}, KNOCK_DEFAULT),
        ({"recipient": {"timezone": 5}}, KNOCK_DEFAULT),
        ({"recipient": {}}, KNOCK_DEFAULT),
        ({"recipient": None}, KNOCK_DEFAULT),
        ({}, KNOCK_DEFAULT),
    ],
)
def test_the_recipients_timezone_or_knocks_default(variables: dict[str, Any], zone: Any) -> None:
    assert recipient_zone(variables) == zone


def test_after_seconds_past_the_calendar_is_none() -> None:
    assert after_seconds(NOW, 60) == NOW + timedelta(minutes=1)
    assert after_seconds(NOW, 1e20) is None

"""Window rules: Knock's `{frequency, days, hours, minutes, day_of_month}` objects, which a dynamic batch or
throttle window may resolve to, meaning "until the next such moment" ("weekly on Monday at 9:00").

The next moment is found on the wall clock of a timezone (the recipient's, else UTC): `hourly` at `minutes`
past each hour, `daily` and `weekly` at `hours:minutes`, `monthly` on `day_of_month` (default the 1st) at
`hours:minutes`; `days` (`["mon", …]`, `"weekdays"` or `"weekends"`) keeps only those days, and a weekly
rule must name them. `hours` defaults to 0, `minutes` to 0 and must be a multiple of 5, as Knock requires.
Knock documents no `interval` for window rules; one of 1 is accepted, any other refused. A rule that breaks
these is not a rule (`parse_window_rule` gives None), and the step that read it is skipped.

A local time that a daylight-saving change skips is taken as the zone's `fold=0` reading of it (the moment
an hour on); one it repeats, as its first occurrence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SETS = {"weekdays": frozenset(range(5)), "weekends": frozenset({5, 6})}
FREQUENCIES = ("hourly", "daily", "weekly", "monthly")
RULE_FIELDS = frozenset({"frequency", "days", "hours", "minutes", "day_of_month", "interval"})
SEARCH_DAYS = 800
"""How far ahead a next moment is looked for: enough for the rarest rule, a monthly one on the 31st that
must also fall on a given weekday, which comes round within a year and a half."""


@dataclass(frozen=True)
class WindowRule:
    frequency: str
    weekdays: frozenset[int]
    """The days (Monday 0) the rule falls on."""
    hour: int
    minute: int
    day_of_month: int


def _whole(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _given(value: Mapping[str, Any], name: str, default: int) -> Any:
    found = value.get(name)
    return default if found is None else found


def _weekdays(days: Any) -> frozenset[int] | None:
    if days is None:
        return frozenset(range(7))
    if isinstance(days, str):
        return DAY_SETS.get(days)
    if not isinstance(days, list) or not days or not all(isinstance(day, str) for day in days):
        return None
    if not set(days) <= set(WEEKDAYS):
        return None
    return frozenset(WEEKDAYS.index(day) for day in days)


def parse_window_rule(value: Mapping[str, Any]) -> WindowRule | None:
    """The rule `value` describes, or None when it is not a valid window rule."""
    if not set(value) <= RULE_FIELDS or value.get("frequency") not in FREQUENCIES:
        return None
    frequency = str(value["frequency"])
    interval = _given(value, "interval", 1)
    if isinstance(interval, bool) or interval != 1:
        return None
    weekdays = _weekdays(value.get("days"))
    hour = _whole(_given(value, "hours", 0), 0, 23)
    minute = _whole(_given(value, "minutes", 0), 0, 55)
    day_of_month = _whole(_given(value, "day_of_month", 1), 1, 31)
    if weekdays is None or hour is None or minute is None or minute % 5 or day_of_month is None:
        return None
    if frequency == "weekly" and value.get("days") is None:
        return None
    return WindowRule(frequency, weekdays, hour, minute, day_of_month)


def _moments_on(rule: WindowRule, day: date, zone: tzinfo) -> list[datetime]:
    """The rule's moments on local `day`, earliest first, in UTC."""
    if day.weekday() not in rule.weekdays:
        return []
    if rule.frequency == "monthly" and day.day != rule.day_of_month:
        return []
    hours = range(24) if rule.frequency == "hourly" else (rule.hour,)
    # In UTC: a local time in a daylight-saving gap compares unequal to every other moment (PEP 495).
    return [
        datetime(day.year, day.month, day.day, hour, rule.minute, tzinfo=zone).astimezone(UTC)
        for hour in hours
    ]


def next_occurrence(rule: WindowRule, after: datetime, zone: tzinfo) -> datetime | None:
    """The first moment of `rule` strictly after `after`, on `zone`'s wall clock, in UTC; None if there is
    none within `SEARCH_DAYS`."""
    start = after.astimezone(zone).date()
    for offset in range(SEARCH_DAYS):
        for moment in _moments_on(rule, start + timedelta(days=offset), zone):
            if moment > after:
                return moment
    return None

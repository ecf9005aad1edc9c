"""Dynamic windows: the value a batch or throttle step's field path resolves to, read as the moment its window
closes. Knock accepts three kinds of value:

- an ISO-8601 timestamp with an offset (`2024-01-05T14:00:00Z`): that moment;
- a Duration `{unit, value}`: that long after now;
- a window rule `{frequency, days, hours, minutes, day_of_month}` (`clarion.engine.window_rules`): its next
  moment, on the recipient's wall clock (its `timezone`, else `Etc/UTC`: Clarion has no account default
  timezone), picked as send windows pick it (`clarion.engine.send_windows.recipient_timezone`).

Anything else, a timestamp without an offset included, resolves to nothing; so does a moment the calendar
cannot hold. Whether the moment is acceptable (in the future, within the step's longest window) is the
step settings' business (`clarion.engine.batch_settings`, `clarion.engine.throttle_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from clarion.engine.send_windows import recipient_timezone
from clarion.engine.step_definition import DefinitionError, duration_seconds
from clarion.engine.window_rules import next_occurrence, parse_window_rule


def recipient_zone(variables: Mapping[str, Any]) -> ZoneInfo:
    """The timezone window rules run on: the recipient's `timezone`, else Knock's default (`Etc/UTC`;
    Clarion has no account default timezone). A value that names no timezone is passed over."""
    recipient = variables.get("recipient")
    return recipient_timezone(recipient if isinstance(recipient, Mapping) else {})


def after_seconds(now: datetime, seconds: float) -> datetime | None:
    """`seconds` after `now`, or None past what a datetime holds."""
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _timestamp(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment


def window_end(value: Any, now: datetime, zone: tzinfo) -> datetime | None:
    """The moment a window given as `value` closes, or None when `value` is no window."""
    if isinstance(value, str):
        return _timestamp(value)
    if not isinstance(value, Mapping):
        return None
    if "frequency" in value:
        rule = parse_window_rule(value)
        return None if rule is None else next_occurrence(rule, now, zone)
    try:
        seconds = duration_seconds(dict(value), "window")
    except DefinitionError:
        return None
    return after_seconds(now, seconds)

"""Dynamic windows: the value a batch or throttle step's field path resolves to, read as the moment its window
closes. Knock accepts three kinds of value:

- an ISO-8601 timestamp with an offset (`2024-01-05T14:00:00Z`): that moment;
- a Duration `{unit, value}`: that long after now;
- a window rule `{frequency, days, hours, minutes, day_of_month}` (`clarion.engine.window_rules`): its next
  moment, on the recipient's wall clock (`timezone` on the recipient, else UTC: Clarion has no account
  default timezone).

Anything else, a timestamp without an offset included, resolves to nothing; so does a moment the calendar
cannot hold. Whether the moment is acceptable (in the future, within the step's longest window) is the
step settings' business (`clarion.engine.batch_settings`, `clarion.engine.throttle_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clarion.engine.window_rules import next_occurrence, parse_window_rule
from clarion.engine.workflow_definition import DefinitionError, duration_seconds


def recipient_zone(variables: Mapping[str, Any]) -> tzinfo:
    """The recipient's timezone (its `timezone` property, an IANA name), or UTC without a valid one."""
    recipient = variables.get("recipient")
    name = recipient.get("timezone") if isinstance(recipient, Mapping) else None
    if not isinstance(name, str) or not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones, a name too long
        return UTC


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

"""Send windows: when a channel step may send, as a week of wall-clock windows in the recipient's timezone.

A channel step's `send_windows` is Knock's list of `SendWindow` objects, one for each day of the week:

    {"day": "monday", "type": "send", "from": "09:00:00", "until": "17:00:00"}
    {"day": "sunday", "type": "do_not_send"}

`day` is a weekday name (Knock has no "weekdays" or "every day" shorthand); `from` and `until` are times of
day, `HH:MM:SS` or `HH:MM`, only on `send` days, defaulting to the start and the end of the day. A day's
window governs the wall-clock times of that day alone: a moment may send when, in the recipient's timezone,
its day's window is `send` and its time of day is at or after `from` and before `until`. Sending across
midnight is two days' windows (`until` left out on one, `from` on the next), since a window describes a
single day. `parse_send_windows` checks this at push and refuses, naming the field, a list that does not
give every day exactly once, an empty window (`until` not after `from`) and a week that never sends, so a
parsed week opens within a week of any moment, or two when a spring-forward skips the hours of the only
window in the first.

`next_opening` answers "may a message go now, and if not, when": it walks wall-clock time forward from
`now` in the recipient's timezone, so that a window opening inside a spring-forward gap opens when the
clocks jump past its start, and a window covering an hour that a fall-back repeats is open during both of
its passes. It assumes, as tzdata does for present and future dates, that a timezone changes its UTC offset
at most once in any 24 hours. `recipient_timezone` picks the timezone as Knock does: the push device's, the
recipient's `timezone`, then the account's default (`Etc/UTC` unless set); a name that is not a timezone
is passed over, never an error.

Holding a step until the window opens, and reading the recipient and its devices, belong to the channel
step (`clarion.engine.steps.channel`); parsing the rest of the step to `clarion.engine.workflow_definition`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clarion.engine.step_definition import DefinitionError

DEFAULT_TIMEZONE = ZoneInfo("Etc/UTC")
"""Knock's timezone when neither the device, the recipient nor the account sets one."""

SEARCH_HORIZON = timedelta(weeks=3)
"""How far `next_opening` looks: a parsed week opens within one week, or two when a DST gap swallows the
only window of the first; past this the windows never open."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
_Choice = TypeVar("_Choice", bound=StrEnum)


class Weekday(StrEnum):
    """A `SendWindow`'s `day`, declared Monday first so that a member's index is `datetime.weekday()`."""

    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"


class SendWindowType(StrEnum):
    """Whether a day's window lets messages go (between `from` and `until`) or holds them all day."""

    SEND = "send"
    DO_NOT_SEND = "do_not_send"


class SendWindowsNeverOpenError(ValueError):
    """No moment within `SEARCH_HORIZON` may send: windows that `parse_send_windows` would have refused."""


@dataclass(frozen=True, slots=True)
class SendWindow:
    """One day's window: on a `send` day, wall-clock times from `start` (inclusive) until `until`
    (exclusive; None is the end of the day) may send."""

    day: Weekday
    type: SendWindowType
    start: time = time(0)
    until: time | None = None

    def allows(self, time_of_day: time) -> bool:
        return (
            self.type is SendWindowType.SEND
            and time_of_day >= self.start
            and (self.until is None or time_of_day < self.until)
        )

    def next_change(self, wall: datetime) -> datetime:
        """The first wall-clock time after `wall` (a time on this window's day that it does not allow) at
        which, the clocks running on, it might: its start later that day, else the next midnight."""
        if self.type is SendWindowType.SEND and wall.time() < self.start:
            return datetime.combine(wall.date(), self.start)
        return datetime.combine(wall.date() + timedelta(days=1), time(0))


@dataclass(frozen=True, slots=True)
class SendWindows:
    """A channel step's week of windows, `days[datetime.weekday()]` the window of that day."""

    days: tuple[SendWindow, ...]

    def on(self, wall: datetime) -> SendWindow:
        return self.days[wall.weekday()]


def parse_send_windows(data: Any, field: str) -> SendWindows | None:
    """A channel step's `send_windows` (at dotted path `field`), or None when it has none (absent, null or
    an empty list: the step may always send)."""
    if data is None or data == []:
        return None
    if not isinstance(data, list):
        raise DefinitionError(field, "must be a list of send windows, one for each day of the week")
    by_day: dict[Weekday, SendWindow] = {}
    for index, entry in enumerate(data):
        window = _parse_window(entry, f"{field}.{index}")
        if window.day in by_day:
            raise DefinitionError(f"{field}.{index}.day", f"{window.day.value!r} has a send window already")
        by_day[window.day] = window
    missing = [day.value for day in Weekday if day not in by_day]
    if missing:
        raise DefinitionError(
            field, f"needs a send window for each day of the week; missing {', '.join(missing)}"
        )
    if all(window.type is SendWindowType.DO_NOT_SEND for window in by_day.values()):
        raise DefinitionError(field, "never allow sending: every day is `do_not_send`")
    return SendWindows(days=tuple(by_day[day] for day in Weekday))


def _parse_window(entry: Any, field: str) -> SendWindow:
    if not isinstance(entry, Mapping):
        raise DefinitionError(field, "must be a send window object with `day` and `type`")
    day = _member(Weekday, entry.get("day"), f"{field}.day")
    kind = _member(SendWindowType, entry.get("type"), f"{field}.type")
    start = _time_of_day(entry.get("from"), f"{field}.from")
    until = _time_of_day(entry.get("until"), f"{field}.until")
    if kind is SendWindowType.DO_NOT_SEND:
        for name, value in (("from", start), ("until", until)):
            if value is not None:
                raise DefinitionError(f"{field}.{name}", "is only allowed on a `send` window")
        return SendWindow(day=day, type=kind)
    start = time(0) if start is None else start
    if until is not None and until <= start:
        raise DefinitionError(
            f"{field}.until",
            "must be later than `from`; a window covers one day, so send past midnight with the next day's",
        )
    return SendWindow(day=day, type=kind, start=start, until=until)


def _member(kind: type[_Choice], value: Any, field: str) -> _Choice:
    try:
        return kind(value)
    except ValueError:
        raise DefinitionError(field, f"must be one of {', '.join(kind)}") from None


def _time_of_day(value: Any, field: str) -> time | None:
    if value is None:
        return None
    match = _TIME_OF_DAY.match(value) if isinstance(value, str) else None
    if match is None:
        raise DefinitionError(field, 'must be a time of day such as "09:00:00" (HH:MM:SS or HH:MM)')
    hour, minute, second = match.groups()
    return time(int(hour), int(minute), int(second or 0))


def next_opening(windows: SendWindows, now: datetime, timezone: ZoneInfo) -> datetime | None:
    """None when `now` may send; else the first later moment that may, in UTC.

    Raises `SendWindowsNeverOpenError` for windows that never open (which parsing refuses)."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    moment = now.astimezone(UTC)
    limit = moment + SEARCH_HORIZON
    local = moment.astimezone(timezone)
    while moment <= limit:
        wall = local.replace(tzinfo=None)
        window = windows.on(wall)
        if window.allows(wall.time()):
            return None if moment == now else moment
        # Run the clocks on to when the window might open; a change of UTC offset on the way moves the
        # wall clock by more or less than the time that passes, so stop at the change and look again.
        later = moment + (window.next_change(wall) - wall)
        if later.astimezone(timezone).utcoffset() != local.utcoffset():
            later = _offset_change(moment, later, timezone)
        moment, local = later, later.astimezone(timezone)
    raise SendWindowsNeverOpenError("the send windows never allow sending")


def _offset_change(before: datetime, after: datetime, timezone: ZoneInfo) -> datetime:
    """The moment in (before, after] at which `timezone`'s UTC offset changes, found by bisection over whole
    seconds, where tzdata places every change."""
    offset = before.astimezone(timezone).utcoffset()
    low = int((before - _EPOCH) // timedelta(seconds=1))
    high = -int((_EPOCH - after) // timedelta(seconds=1))
    while high - low > 1:
        middle = (low + high) // 2
        if (_EPOCH + timedelta(seconds=middle)).astimezone(timezone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return _EPOCH + timedelta(seconds=high)


def recipient_timezone(
    recipient: Mapping[str, Any],
    default: ZoneInfo = DEFAULT_TIMEZONE,
    *,
    device_timezone: object = None,
) -> ZoneInfo:
    """The timezone a recipient's send windows are read in: a push device's `timezone` (its channel data's
    `devices`), else the recipient's `timezone` property, else `default` (the account's timezone). A value
    that names no timezone is passed over as if unset, so a bad property never fails a run."""
    for candidate in (device_timezone, recipient.get("timezone")):
        zone = _zone(candidate) if isinstance(candidate, str) else None
        if zone is not None:
            return zone
    return default


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    # Cached, misses included: a fan-out reads the same few names for many recipients, and a name that is
    # no timezone costs a look-up on disk each time it is tried.
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None

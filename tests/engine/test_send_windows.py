"""Send windows (`clarion.engine.send_windows`): parsing a channel step's `send_windows` as a push does, and
its refusals; `next_opening` over a week, across DST changes and in timezones far from UTC, checked against
a minute-by-minute reading of the windows; the choice of the recipient's timezone. Every `now` is fixed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clarion.engine.send_windows import (
    DEFAULT_TIMEZONE,
    SendWindow,
    SendWindows,
    SendWindowsNeverOpenError,
    SendWindowType,
    Weekday,
    next_opening,
    parse_send_windows,
    recipient_timezone,
)
from clarion.engine.step_definition import DefinitionError

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKDAYS = DAYS[:5]
FIELD = "steps.0.send_windows"
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")

Hours = tuple[str | None, str | None]


def week(**sending: Hours) -> list[dict[str, Any]]:
    """A week of windows: each named day sends (from, until), None leaving a bound out; the others do not."""
    windows: list[dict[str, Any]] = []
    for day in DAYS:
        if day not in sending:
            windows.append({"day": day, "type": "do_not_send"})
            continue
        start, until = sending[day]
        windows.append({"day": day, "type": "send", "from": start, "until": until})
    return windows


def weekdays(start: str | None = "09:00:00", until: str | None = "17:00:00") -> list[dict[str, Any]]:
    return week(**dict.fromkeys(WEEKDAYS, (start, until)))


def windows_of(data: list[dict[str, Any]]) -> SendWindows:
    windows = parse_send_windows(data, FIELD)
    assert windows is not None
    return windows


def at(zone: tzinfo, year: int, month: int, day: int, *clock: int) -> datetime:
    """A wall-clock time in `zone` (the first of a repeated hour), as the aware UTC moment it is."""
    hour, minute, second, microsecond = (*clock, 0, 0, 0, 0)[:4]
    return datetime(year, month, day, hour, minute, second, microsecond, zone).astimezone(UTC)


def utc(year: int, month: int, day: int, *clock: int) -> datetime:
    return at(UTC, year, month, day, *clock)


# --- parsing ---------------------------------------------------------------------------------------


def test_a_week_parses_into_one_window_per_day_monday_first_whatever_the_order():
    data = weekdays()
    random.Random(7).shuffle(data)

    windows = windows_of(data)

    assert windows.days == (
        *(SendWindow(Weekday(day), SendWindowType.SEND, time(9), time(17)) for day in WEEKDAYS),
        SendWindow(Weekday.SATURDAY, SendWindowType.DO_NOT_SEND),
        SendWindow(Weekday.SUNDAY, SendWindowType.DO_NOT_SEND),
    )


def test_from_defaults_to_midnight_and_until_to_the_end_of_the_day():
    data = week(monday=(None, "12:00:00"), tuesday=("08:30", None), wednesday=(None, None))
    del data[0]["from"]
    del data[1]["until"]

    monday, tuesday, wednesday = windows_of(data).days[:3]

    assert (monday.start, monday.until) == (time(0), time(12))
    assert (tuesday.start, tuesday.until) == (time(8, 30), None)
    assert (wednesday.start, wednesday.until) == (time(0), None)


def test_times_may_give_seconds_or_only_minutes():
    monday = windows_of(week(monday=("09:15", "17:45:30"))).days[0]

    assert (monday.start, monday.until) == (time(9, 15), time(17, 45, 30))


@pytest.mark.parametrize("data", [None, []])
def test_no_send_windows_mean_the_step_may_always_send(data):
    assert parse_send_windows(data, FIELD) is None


def _with(index: int, **changes: Any) -> list[dict[str, Any]]:
    data = weekdays()
    data[index] = {**data[index], **changes}
    return data


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"day": "monday", "type": "send"}, FIELD, "must be a list of send windows"),
        ("weekdays", FIELD, "must be a list of send windows"),
        ([*weekdays()[:6], "sunday"], f"{FIELD}.6", "must be a send window object"),
        (_with(0, day=None), f"{FIELD}.0.day", "must be one of monday, tuesday"),
        (_with(0, day="weekdays"), f"{FIELD}.0.day", "must be one of monday"),
        (_with(0, day="every_day"), f"{FIELD}.0.day", "must be one of monday"),
        (_with(5, day="weekend"), f"{FIELD}.5.day", "must be one of monday"),
        (_with(0, day="Monday"), f"{FIELD}.0.day", "must be one of monday"),
        (_with(0, day="mon"), f"{FIELD}.0.day", "must be one of monday"),
        (_with(2, type=None), f"{FIELD}.2.type", "must be one of send, do_not_send"),
        (_with(2, type="dont_send"), f"{FIELD}.2.type", "must be one of send, do_not_send"),
        (_with(1, **{"from": "9am"}), f"{FIELD}.1.from", 'such as "09:00:00"'),
        (_with(1, **{"from": "9:00"}), f"{FIELD}.1.from", 'such as "09:00:00"'),
        (_with(1, **{"from": 900}), f"{FIELD}.1.from", 'such as "09:00:00"'),
        (_with(1, **{"from": "09:00:00Z"}), f"{FIELD}.1.from", 'such as "09:00:00"'),
        (_with(1, **{"from": "09:00:00.5"}), f"{FIELD}.1.from", 'such as "09:00:00"'),
        (_with(1, **{"from": "T09:00:00"}), f"{FIELD}.1.from", 'such as "09:00:00"'),
        (_with(1, until="24:00:00"), f"{FIELD}.1.until", 'such as "09:00:00"'),
        (_with(1, until="17:60"), f"{FIELD}.1.until", 'such as "09:00:00"'),
        (_with(1, until="17:00:60"), f"{FIELD}.1.until", 'such as "09:00:00"'),
        (_with(3, until="09:00:00"), f"{FIELD}.3.until", "must be later than `from`"),
        (_with(3, until="08:00:00"), f"{FIELD}.3.until", "must be later than `from`"),
        (_with(4, **{"from": None}, until="00:00"), f"{FIELD}.4.until", "must be later than `from`"),
        (_with(6, **{"from": "09:00:00"}), f"{FIELD}.6.from", "only allowed on a `send` window"),
        (_with(6, until="17:00:00"), f"{FIELD}.6.until", "only allowed on a `send` window"),
        (_with(6, day="monday"), f"{FIELD}.6.day", "'monday' has a send window already"),
        (weekdays()[:5], FIELD, "missing saturday, sunday"),
        (weekdays()[1:], FIELD, "missing monday"),
        (week(), FIELD, "every day is `do_not_send`"),
    ],
)
def test_a_malformed_send_window_is_refused_naming_its_field(data, field, message):
    with pytest.raises(DefinitionError) as raised:
        parse_send_windows(data, FIELD)

    assert raised.value.field == field
    assert message in str(raised.value)


# --- next_opening over a week ----------------------------------------------------------------------
# 2025-06-09 is a Monday; New York is on EDT (UTC-4) all that week.


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        ((2025, 6, 9, 8, 0), (2025, 6, 9, 9, 0)),
        ((2025, 6, 9, 0, 0), (2025, 6, 9, 9, 0)),
        ((2025, 6, 9, 9, 0), None),
        ((2025, 6, 9, 12, 30), None),
        ((2025, 6, 9, 16, 59, 59, 999999), None),
        ((2025, 6, 9, 17, 0), (2025, 6, 10, 9, 0)),
        ((2025, 6, 10, 23, 59), (2025, 6, 11, 9, 0)),
        ((2025, 6, 11, 3, 0), (2025, 6, 11, 9, 0)),
        ((2025, 6, 12, 10, 0), None),
        ((2025, 6, 13, 17, 0), (2025, 6, 16, 9, 0)),
        ((2025, 6, 14, 12, 0), (2025, 6, 16, 9, 0)),
        ((2025, 6, 15, 23, 59, 59), (2025, 6, 16, 9, 0)),
        ((2025, 6, 9, 8, 59, 59, 999999), (2025, 6, 9, 9, 0)),
    ],
)
def test_weekday_office_hours_open_at_the_next_weekday_morning(now, opening):
    moment = next_opening(windows_of(weekdays()), at(NEW_YORK, *now), NEW_YORK)

    assert moment == (None if opening is None else at(NEW_YORK, *opening))


def test_the_opening_is_a_utc_moment_whatever_zone_now_is_given_in():
    now = datetime(2025, 6, 9, 8, 0, tzinfo=NEW_YORK)

    moment = next_opening(windows_of(weekdays()), now, NEW_YORK)

    assert moment == datetime(2025, 6, 9, 13, 0, tzinfo=UTC)
    assert moment is not None and moment.tzinfo is UTC


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_opening(windows_of(weekdays()), datetime(2025, 6, 9, 8, 0), NEW_YORK)


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        ((2025, 6, 13, 20, 0), (2025, 6, 14, 10, 0)),
        ((2025, 6, 14, 11, 0), None),
        ((2025, 6, 14, 16, 0), (2025, 6, 15, 10, 0)),
        ((2025, 6, 15, 15, 59), None),
        ((2025, 6, 15, 16, 0), (2025, 6, 21, 10, 0)),
        ((2025, 6, 9, 10, 0), (2025, 6, 14, 10, 0)),
    ],
)
def test_weekend_windows_wait_through_the_working_week(now, opening):
    windows = windows_of(week(saturday=("10:00:00", "16:00:00"), sunday=("10:00:00", "16:00:00")))

    moment = next_opening(windows, at(LONDON, *now), LONDON)

    assert moment == (None if opening is None else at(LONDON, *opening))


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        ((2025, 6, 10, 23, 30), None),
        ((2025, 6, 11, 0, 0), (2025, 6, 12, 0, 0)),
        ((2025, 6, 11, 14, 0), (2025, 6, 12, 0, 0)),
        ((2025, 6, 12, 0, 0), None),
    ],
)
def test_a_do_not_send_day_holds_messages_until_the_next_sending_day(now, opening):
    all_day: Hours = (None, None)
    windows = windows_of(week(**{day: all_day for day in DAYS if day != "wednesday"}))

    moment = next_opening(windows, at(NEW_YORK, *now), NEW_YORK)

    assert moment == (None if opening is None else at(NEW_YORK, *opening))


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        ((2025, 6, 9, 21, 0), (2025, 6, 9, 22, 0)),
        ((2025, 6, 9, 23, 30), None),
        ((2025, 6, 10, 0, 0), None),
        ((2025, 6, 10, 1, 59), None),
        ((2025, 6, 10, 2, 0), (2025, 6, 11, 13, 0)),
        ((2025, 6, 11, 14, 0), (2025, 6, 12, 8, 0)),
        ((2025, 6, 12, 12, 0), (2025, 6, 16, 22, 0)),
    ],
)
def test_each_days_window_governs_its_own_day_and_adjacent_days_join_across_midnight(now, opening):
    windows = windows_of(
        week(
            monday=("22:00:00", None),
            tuesday=(None, "02:00:00"),
            wednesday=("13:00:00", "14:00:00"),
            thursday=("08:00", "12:00"),
        )
    )

    moment = next_opening(windows, at(NEW_YORK, *now), NEW_YORK)

    assert moment == (None if opening is None else at(NEW_YORK, *opening))


# --- DST changes and timezones far from UTC --------------------------------------------------------
# New York: 2025-03-09 02:00 EST becomes 03:00 EDT at 07:00 UTC; 2025-11-02 02:00 EDT becomes 01:00 EST at
# 06:00 UTC, so 01:00-02:00 passes twice (05:00-06:00 and 06:00-07:00 UTC). London: 2025-03-30 01:00 GMT
# becomes 02:00 BST at 01:00 UTC; 2025-10-26 02:00 BST becomes 01:00 GMT at 01:00 UTC. Lord Howe moves by
# half an hour: 2025-10-05 02:00 (+10:30) becomes 02:30 (+11:00) at 15:30 UTC the day before.


@pytest.mark.parametrize(
    ("zone", "sunday", "now", "opening"),
    [
        # A window opening inside the skipped hour opens when the clocks jump past its start.
        ("America/New_York", ("02:30:00", None), (2025, 3, 9, 5, 0), (2025, 3, 9, 7, 0)),
        ("America/New_York", ("03:00:00", None), (2025, 3, 9, 6, 59, 59), (2025, 3, 9, 7, 0)),
        ("America/New_York", ("01:30:00", None), (2025, 3, 9, 6, 45), None),
        # A window wholly inside the skipped hour does not happen that day: the next Sunday's does.
        ("America/New_York", ("02:00:00", "02:45:00"), (2025, 3, 9, 5, 0), (2025, 3, 16, 6, 0)),
        # A window closing inside the skipped hour is closed from the jump.
        ("America/New_York", (None, "02:30:00"), (2025, 3, 9, 6, 59), None),
        ("America/New_York", (None, "02:30:00"), (2025, 3, 9, 7, 0), (2025, 3, 16, 4, 0)),
        # A window inside the repeated hour is open during both of its passes.
        ("America/New_York", ("01:00:00", "01:30:00"), (2025, 11, 2, 5, 15), None),
        ("America/New_York", ("01:00:00", "01:30:00"), (2025, 11, 2, 5, 45), (2025, 11, 2, 6, 0)),
        ("America/New_York", ("01:00:00", "01:30:00"), (2025, 11, 2, 6, 15), None),
        ("America/New_York", ("01:00:00", "01:30:00"), (2025, 11, 2, 6, 30), (2025, 11, 9, 6, 0)),
        ("America/New_York", ("01:30:00", None), (2025, 11, 2, 6, 10), (2025, 11, 2, 6, 30)),
        # A window starting after the repeated hour waits through both passes.
        ("America/New_York", ("02:00:00", None), (2025, 11, 2, 5, 30), (2025, 11, 2, 7, 0)),
        ("Europe/London", ("01:30:00", None), (2025, 3, 30, 0, 30), (2025, 3, 30, 1, 0)),
        ("Europe/London", ("01:30:00", None), (2025, 10, 26, 0, 40), None),
        ("Europe/London", ("01:30:00", None), (2025, 10, 26, 1, 10), (2025, 10, 26, 1, 30)),
        ("Europe/London", ("01:00:00", "01:30:00"), (2025, 10, 26, 0, 45), (2025, 10, 26, 1, 0)),
        ("Australia/Lord_Howe", ("02:10:00", None), (2025, 10, 4, 14, 0), (2025, 10, 4, 15, 30)),
    ],
)
def test_dst_changes_move_openings_as_the_wall_clock_does(zone, sunday, now, opening):
    windows = windows_of(week(sunday=sunday))

    moment = next_opening(windows, utc(*now), ZoneInfo(zone))

    assert moment == (None if opening is None else utc(*opening))


@pytest.mark.parametrize(
    ("zone", "now", "opening"),
    [
        # Kiritimati is UTC+14: its Monday morning is Sunday evening in UTC.
        ("Pacific/Kiritimati", (2025, 6, 8, 18, 0), (2025, 6, 8, 19, 0)),
        ("Pacific/Kiritimati", (2025, 6, 8, 20, 0), None),
        ("Pacific/Kiritimati", (2025, 6, 13, 4, 0), (2025, 6, 15, 19, 0)),
        # Pago Pago is UTC-11: its Friday afternoon is Saturday in UTC.
        ("Pacific/Pago_Pago", (2025, 6, 14, 2, 0), None),
        ("Pacific/Pago_Pago", (2025, 6, 10, 5, 0), (2025, 6, 10, 20, 0)),
        ("Pacific/Pago_Pago", (2025, 6, 16, 15, 0), (2025, 6, 16, 20, 0)),
    ],
)
def test_weekdays_are_the_recipients_days_in_timezones_far_from_utc(zone, now, opening):
    moment = next_opening(windows_of(weekdays()), utc(*now), ZoneInfo(zone))

    assert moment == (None if opening is None else utc(*opening))


def test_a_day_the_timezone_skipped_waits_for_the_same_day_next_week():
    # Samoa moved across the date line: Thursday 2011-12-29 23:59:59 (-10:00) was followed by Saturday
    # 2011-12-31 00:00 (+14:00), so that Friday never happened there.
    apia = ZoneInfo("Pacific/Apia")
    windows = windows_of(week(friday=(None, None)))

    moment = next_opening(windows, datetime(2011, 12, 29, 12, 0, tzinfo=apia), apia)

    assert moment == datetime(2012, 1, 6, 0, 0, tzinfo=apia)


def test_windows_that_never_open_raise():
    closed = SendWindows(days=tuple(SendWindow(day, SendWindowType.DO_NOT_SEND) for day in Weekday))

    with pytest.raises(SendWindowsNeverOpenError):
        next_opening(closed, datetime(2025, 6, 9, tzinfo=UTC), NEW_YORK)


# --- the recipient's timezone ----------------------------------------------------------------------


def test_the_recipients_timezone_property_is_used():
    assert recipient_timezone({"id": "u1", "timezone": "America/New_York"}, LONDON) == NEW_YORK


@pytest.mark.parametrize("recipient", [{"id": "u1"}, {"id": "u1", "timezone": None}])
def test_without_a_timezone_the_account_default_is_used_and_else_utc(recipient):
    assert recipient_timezone(recipient, LONDON) == LONDON
    assert recipient_timezone(recipient) == DEFAULT_TIMEZONE == ZoneInfo("Etc/UTC")


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus_Mons",
        "",
        "America",
        "../../etc/passwd",
        "/etc/localtime",
        "America/New_York ",
        "a\x00b",
        "+05:00",
        "x" * 5000,
        42,
        ["Europe/London"],
        {"name": "Europe/London"},
    ],
)
def test_a_timezone_that_is_not_one_falls_back_without_failing(name):
    assert recipient_timezone({"id": "u1", "timezone": name}, LONDON) == LONDON
    assert recipient_timezone({"id": "u1", "timezone": "America/New_York"}, device_timezone=name) == NEW_YORK


def test_a_push_devices_timezone_wins_over_the_recipients():
    recipient = {"id": "u1", "timezone": "America/New_York"}

    assert recipient_timezone(recipient, device_timezone="Pacific/Kiritimati") == ZoneInfo(
        "Pacific/Kiritimati"
    )
    assert recipient_timezone(recipient, device_timezone=None) == NEW_YORK


def test_a_recipient_with_a_bad_timezone_has_their_windows_read_in_the_default():
    zone = recipient_timezone({"id": "u1", "timezone": "Not/A_Zone"}, LONDON)

    moment = next_opening(windows_of(weekdays()), datetime(2025, 6, 9, 7, 0, tzinfo=UTC), zone)

    assert moment == datetime(2025, 6, 9, 8, 0, tzinfo=UTC)


# --- a sweep against a minute-by-minute reading of the windows ------------------------------------
# For seeded random weeks, timezones and moments (many near DST changes), `next_opening` agrees with a
# direct reading of the JSON: what it returns may send, the microsecond before it may not, and no minute
# between `now` and it may either. Every window boundary and offset change in the sweep falls on a whole
# minute, so checking minutes is checking every moment.

SWEEP_ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
)


def _may_send(data: list[dict[str, Any]], zone: ZoneInfo, moment: datetime) -> bool:
    local = moment.astimezone(zone)
    window = next(entry for entry in data if entry["day"] == DAYS[local.weekday()])
    if window["type"] != "send":
        return False
    start = time.fromisoformat(window["from"] or "00:00")
    return start <= local.time() and (
        window["until"] is None or local.time() < time.fromisoformat(window["until"])
    )


def _offset_changes(zone: ZoneInfo, year: int) -> list[datetime]:
    hour = datetime(year, 1, 1, tzinfo=UTC)
    changes = []
    while hour.year == year:
        if (hour + timedelta(hours=1)).astimezone(zone).utcoffset() != hour.astimezone(zone).utcoffset():
            changes.append(hour)
        hour += timedelta(hours=1)
    return changes


def _random_time(rng: random.Random) -> time:
    # Half of the windows open or close in the small hours, where DST changes happen.
    hour = rng.randrange(4) if rng.random() < 0.5 else rng.randrange(24)
    return time(hour, rng.randrange(60))


def _random_week(rng: random.Random) -> list[dict[str, Any]]:
    sending: dict[str, Hours] = {}
    for day in rng.sample(DAYS, rng.randint(1, 7)):
        first, second = sorted(rng.sample([_random_time(rng) for _ in range(4)], 2))
        start = None if rng.random() < 0.2 else first.isoformat()
        until = None if rng.random() < 0.2 or first == second else second.isoformat()
        sending[day] = (start, until)
    return week(**sending)


def test_next_opening_agrees_with_a_minute_by_minute_reading():
    rng = random.Random(20250309)
    changes = {name: _offset_changes(ZoneInfo(name), 2025) for name in SWEEP_ZONES}
    for _ in range(300):
        name = rng.choice(SWEEP_ZONES)
        zone = ZoneInfo(name)
        data = _random_week(rng)
        if changes[name] and rng.random() < 0.7:
            now = rng.choice(changes[name]) + timedelta(seconds=rng.randrange(-36 * 3600, 36 * 3600))
        else:
            now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(365 * 86400))
        now += timedelta(microseconds=rng.choice((0, rng.randrange(1_000_000))))
        case = f"{name} {now.isoformat()} {data}"

        moment = next_opening(windows_of(data), now, zone)

        if moment is None:
            assert _may_send(data, zone, now), case
            continue
        assert moment > now and moment.tzinfo is UTC, case
        assert _may_send(data, zone, moment), case
        assert not _may_send(data, zone, moment - timedelta(microseconds=1)), case
        minute = now.replace(second=0, microsecond=0)
        while minute < moment:
            assert minute <= now or not _may_send(data, zone, minute), case
            minute += timedelta(minutes=1)

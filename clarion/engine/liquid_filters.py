"""Knock's own Liquid filters, the ones that need nothing but their arguments: dates and time zones, locale
formatting of dates, numbers and money, JSON, hashing, plurals, title case, array intersection and semantic
version comparison.

`FILTERS` maps each filter's Knock name to its function; `date` replaces the standard Liquid filter of that
name with Knock's version, which takes a time zone as a second argument. Dates may be ISO-8601 strings (as
Knock passes `timestamp` and the `*_at` fields), `"now"`, `"today"`, Unix seconds or `datetime` objects; a
date without an offset is taken as UTC. An undefined or nil input renders as empty, like the rest of
Liquid, while a wrong input or argument (an unknown locale, time zone or currency, malformed JSON or
version) raises `FilterArgumentError`, which the template renderer reports as a `TemplateError`.

Knock's dynamic data filters (`DATA_LOADER_FILTERS`) read the store and are not provided yet. The Liquid
environment, which registers these beside Liquid's standard filters, and Knock's `from_markdown` (it shares
the in-app markdown renderer) live in `clarion.engine.templates`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from liquid.exceptions import FilterArgumentError
from liquid.stringify import to_liquid_string
from liquid.undefined import is_undefined

DATA_LOADER_FILTERS: Final = ("user", "object", "tenant", "subscriptions")
"""Knock's dynamic data filters, which load a user, an object (by collection), a tenant or a user's
subscriptions (25 at most) from the environment at render time. They are not provided yet: they need the
store, and a template that uses one fails with an unknown-filter `TemplateError`."""

DEFAULT_LOCALE: Final = "en"
DEFAULT_CURRENCY: Final = "USD"
FORMAT_LENGTHS: Final = ("short", "medium", "long", "full")
"""The date and time format lengths that `format_date_in_locale` and `format_datetime_in_locale` accept."""

# The official regular expression from semver.org.
_SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def _is_nil(value: object) -> bool:
    return value is None or is_undefined(value)


def _text(value: object) -> str:
    return to_liquid_string(value, autoescape=False)


def _to_datetime(value: object) -> datetime | None:
    """`value` as an aware datetime, or None when it is no date."""
    parsed: datetime
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time.min)
    elif isinstance(value, str) and value in ("now", "today"):
        return datetime.now(UTC)
    elif isinstance(value, int | str) and not isinstance(value, bool) and str(value).isdigit():
        try:
            return datetime.fromtimestamp(int(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _require_datetime(value: object, filter_name: str) -> datetime:
    parsed = _to_datetime(value)
    if parsed is None:
        raise FilterArgumentError(
            f"{filter_name}: expected an ISO-8601 timestamp, found {value!r}", token=None
        )
    return parsed


def _zone(name: object, filter_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(_text(name))
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # a directory of zones: OSError
        raise FilterArgumentError(f"{filter_name}: unknown time zone {name!r}", token=None) from exc


def _locale(tag: object, filter_name: str) -> Locale:
    try:
        return Locale.parse(_text(tag), sep="-")
    except (UnknownLocaleError, ValueError) as exc:
        raise FilterArgumentError(f"{filter_name}: unknown locale {tag!r}", token=None) from exc


def _format_length(length: object, filter_name: str) -> str:
    if length not in FORMAT_LENGTHS:
        raise FilterArgumentError(
            f"{filter_name}: format must be one of {', '.join(FORMAT_LENGTHS)}, not {length!r}", token=None
        )
    return str(length)


def _to_decimal(value: object, filter_name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise FilterArgumentError(f"{filter_name}: expected a number, found {value!r}", token=None)
    try:
        # Through str, so that 10.99 is the decimal 10.99 and not its binary approximation.
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise FilterArgumentError(f"{filter_name}: expected a number, found {value!r}", token=None) from exc
    if not number.is_finite():
        raise FilterArgumentError(f"{filter_name}: expected a finite number, found {value!r}", token=None)
    return number


def _currency_code(code: object, filter_name: str) -> str:
    text = _text(code).upper()
    try:
        babel_numbers.validate_currency(text)
    except babel_numbers.UnknownCurrencyError as exc:
        raise FilterArgumentError(f"{filter_name}: unknown currency {code!r}", token=None) from exc
    return text


def knock_date(value: object, fmt: object, tz: object = None) -> str:
    """Liquid's `date` (strftime `fmt`), shown in time zone `tz` when given. A value that is no date is
    returned unchanged, as standard Liquid does."""
    if _is_nil(value):
        return ""
    parsed = _to_datetime(value)
    if parsed is None:
        return _text(value)
    if not _is_nil(tz):
        parsed = parsed.astimezone(_zone(tz, "date"))
    try:
        return parsed.strftime(_text(fmt))
    except ValueError as exc:
        raise FilterArgumentError(f"date: {exc}", token=None) from exc


def timezone(value: object, tz: object) -> str:
    """The timestamp as ISO-8601 in time zone `tz`: `"2023-12-31T19:30:00-05:00"`."""
    if _is_nil(value):
        return ""
    return _require_datetime(value, "timezone").astimezone(_zone(tz, "timezone")).isoformat()


def format_date_in_locale(value: object, locale: object, date_format: object = "short") -> str:
    """The timestamp's date in `locale`'s `date_format`: `"31 December 2023"` for en-GB, long."""
    if _is_nil(value):
        return ""
    moment = _require_datetime(value, "format_date_in_locale")
    length = _format_length(date_format, "format_date_in_locale")
    return babel_dates.format_date(moment, length, locale=_locale(locale, "format_date_in_locale"))


def format_datetime_in_locale(
    value: object, locale: object, date_format: object = "short", time_format: object = "short"
) -> str:
    """The timestamp in `locale`, date and time each at its own length, joined the locale's way:
    `"31 Dec 2023, 14:30"` for en-GB, medium, short. The time is shown in the timestamp's own offset."""
    if _is_nil(value):
        return ""
    moment = _require_datetime(value, "format_datetime_in_locale")
    resolved = _locale(locale, "format_datetime_in_locale")
    date_length = _format_length(date_format, "format_datetime_in_locale")
    time_length = _format_length(time_format, "format_datetime_in_locale")
    date_part = babel_dates.format_date(moment, date_length, locale=resolved)
    # CLDR 42 and later put a NARROW NO-BREAK SPACE before "AM"/"PM"; Knock's documented times
    # ("2:30 PM") have a plain space.
    time_part = babel_dates.format_time(moment, time_length, locale=resolved).replace("\u202f", " ")
    # The same joining babel's format_datetime does, which only takes one length for both parts.
    glue = str(resolved.datetime_formats[date_length]).replace("'", "")
    return glue.replace("{0}", time_part).replace("{1}", date_part)


def format_number(value: object, locale: object = DEFAULT_LOCALE) -> str:
    """The number with `locale`'s separators: `"10,000"`."""
    if _is_nil(value):
        return ""
    number = _to_decimal(value, "format_number")
    return babel_numbers.format_decimal(number, locale=_locale(locale, "format_number"))


def currency(value: object, code: object = DEFAULT_CURRENCY, locale: object = DEFAULT_LOCALE) -> str:
    """The amount in currency `code`, with the currency's minor digits: `"£10.00"`."""
    if _is_nil(value):
        return ""
    amount = _to_decimal(value, "currency")
    return babel_numbers.format_currency(
        amount, _currency_code(code, "currency"), locale=_locale(locale, "currency")
    )


def rounded_currency(value: object, code: object = DEFAULT_CURRENCY, locale: object = DEFAULT_LOCALE) -> str:
    """The amount rounded to a whole unit (halves up) in currency `code`: `"£11"` for 10.99."""
    if _is_nil(value):
        return ""
    amount = _to_decimal(value, "rounded_currency").quantize(Decimal(1), rounding=ROUND_HALF_UP)
    resolved = _locale(locale, "rounded_currency")
    # A copy: the pattern object belongs to babel's shared locale data.
    pattern: babel_numbers.NumberPattern = copy.copy(resolved.currency_formats["standard"])
    pattern.frac_prec = (0, 0)
    formatted: str = pattern.apply(
        amount, resolved, currency=_currency_code(code, "rounded_currency"), currency_digits=False
    )
    return formatted


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: object) -> str:
    """The value as JSON text: `{"id": "user_123", "name": "John Hammond"}`."""
    if is_undefined(value):
        return "null"
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def from_json(value: object) -> Any:
    """The value parsed from JSON text. A value that is already structured passes through, so partial
    inputs work whether they were given as JSON text or as objects."""
    if _is_nil(value):
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise FilterArgumentError(f"from_json: invalid JSON ({exc})", token=None) from exc


def pluralize(value: object, singular: object, plural: object) -> object:
    """`singular` when the count is exactly one, `plural` otherwise (zero and nil included)."""
    count = Decimal(0) if _is_nil(value) else _to_decimal(value, "pluralize")
    return singular if count == 1 else plural


def titlecase(value: object) -> str:
    """Each whitespace-separated word capitalized, its other letters lowered (Liquid's `capitalize` per
    word): `"My Project Name"`."""
    return re.sub(r"\S+", lambda word: word[0].capitalize(), _text(value))


def md5(value: object) -> str:
    return hashlib.md5(_text(value).encode()).hexdigest()


def sha256(value: object) -> str:
    return hashlib.sha256(_text(value).encode()).hexdigest()


def hmac_sha256(value: object, key: object) -> str:
    """The hex HMAC-SHA256 of the value under `key`."""
    # A missing variable as the key would otherwise sign with the empty key, silently.
    if _is_nil(key) or key == "":
        raise FilterArgumentError("hmac_sha256: the key is empty or undefined", token=None)
    return hmac.new(_text(key).encode(), _text(value).encode(), hashlib.sha256).hexdigest()


def _as_list(value: object, filter_name: str) -> list[Any]:
    if _is_nil(value):
        return []
    if not isinstance(value, list | tuple):
        raise FilterArgumentError(f"{filter_name}: expected an array, found {value!r}", token=None)
    return list(value)


def intersect(left: object, right: object) -> list[Any]:
    """The items of `left` that `right` also holds, once each, in `left`'s order."""
    others = _as_list(right, "intersect")
    common: list[Any] = []
    # Membership by list scan, not a set: items may be objects, which do not hash.
    for item in _as_list(left, "intersect"):
        if item in others and item not in common:
            common.append(item)
    return common


def _version_key(version: object) -> tuple[int, int, int, tuple[Any, ...]]:
    match = _SEMVER.match(_text(version))
    if match is None:
        raise FilterArgumentError(f"compare_versions: {version!r} is not a semantic version", token=None)
    prerelease = match["prerelease"]
    # semver.org precedence: a release ranks above its pre-releases; numeric identifiers rank below
    # alphanumeric ones; a shorter identifier list ranks lower when all before it are equal.
    rank: tuple[Any, ...] = (
        (1,)
        if prerelease is None
        else (0, *((0, int(part)) if part.isdigit() else (1, part) for part in prerelease.split(".")))
    )
    return int(match["major"]), int(match["minor"]), int(match["patch"]), rank


def compare_versions(left: object, right: object) -> int:
    """-1, 0 or 1 as semantic version `left` is lower than, equal to or higher than `right` (build
    metadata ignored)."""
    left_key, right_key = _version_key(left), _version_key(right)
    return (left_key > right_key) - (left_key < right_key)


FILTERS: Final[Mapping[str, Callable[..., object]]] = {
    "compare_versions": compare_versions,
    "currency": currency,
    "date": knock_date,
    "format_date_in_locale": format_date_in_locale,
    "format_datetime_in_locale": format_datetime_in_locale,
    "format_number": format_number,
    "from_json": from_json,
    "hmac_sha256": hmac_sha256,
    "intersect": intersect,
    "json": to_json,
    "md5": md5,
    "pluralize": pluralize,
    "rounded_currency": rounded_currency,
    "sha256": sha256,
    "timezone": timezone,
    "titlecase": titlecase,
}
"""Knock's pure filters by their Liquid names."""

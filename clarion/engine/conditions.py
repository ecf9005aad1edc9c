"""Knock's conditions: parsing `{variable, operator, argument}` conditions and their groups, and deciding
whether they hold for one workflow run.

    step, branch, trigger:  {"all": [condition, ...]}
                            {"any": [condition | {"all": [condition, ...]}, ...]}
    preference:             [condition, ...]   (all must hold)

A `variable` is `<prefix>.<path>`, the prefix one of `data`, `recipient`, `actor`, `tenant`, `vars`,
`workflow`, `run`, `refs` or `event` (wait-for-event match conditions). Each dot-separated segment of the
path selects a key, or an index into a list, and a path that finds nothing yields `""`. A string argument
of the same form is dynamic and resolved the same way. Any other string (a variable too, as the management
API allows) is static: JSON-decoded when it parses (`"5"` is 5, `'["a"]'` a list), kept as written
otherwise; quoting (`'"data.x"'`) keeps a reference-shaped string static. Besides being equal to the
decoded argument, a text value also matches the argument as written, so `"123"` equals `"123"` although
the argument decodes to a number. Ordering compares numbers and number-like text by value, other text
alphabetically; any other mix of kinds is unequal and unordered. Evaluation never raises on odd data, only
parsing a malformed definition does (`ConditionError`, naming the field).

Groups stop at the first member that decides them, so later conditions are not evaluated (nor are their
audience look-ups made); a group without members holds. Message-status conditions
(`refs.<ref>.delivery_status` or `.engagement_status` against a reserved `$message.<case>` argument) rank
a step's message by the highest of its delivery and engagement statuses:

    skipped (no message) < undelivered < bounced < delivery_attempted < queued < not_sent < sent
        < delivered < seen < read < interacted = link_clicked < archived

A ref absent from `refs` (its messages expired, or nothing is known of it) makes every status condition on
it false, the negating ones included; a ref whose `delivery_status` is None produced no message (skipped).

Building the scope is the caller's job: the trigger, the step runner, branch steps and preference
evaluation gather the run's data, which messages each ref produced, and whether the recipient is in an
audience (applying Knock's tenant rule to memberships). Rendering Liquid belongs to
`clarion.engine.templates`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from operator import eq, ge, gt, le, lt, ne
from typing import Any, Literal

import orjson

logger = logging.getLogger(__name__)


class ConditionError(ValueError):
    """A condition definition is malformed; `field` is the dotted path of the bad part (e.g.
    `conditions.all.2.operator`)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class Operator(StrEnum):
    """Knock's condition operators: the management API's, plus three that only the public API's
    preference conditions name (`is_not_timestamp`, `is_timestamp_before_date`,
    `is_timestamp_on_or_after_date`)."""

    EQUAL_TO = "equal_to"
    NOT_EQUAL_TO = "not_equal_to"
    GREATER_THAN = "greater_than"
    LESS_THAN = "less_than"
    GREATER_THAN_OR_EQUAL_TO = "greater_than_or_equal_to"
    LESS_THAN_OR_EQUAL_TO = "less_than_or_equal_to"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    CONTAINS_ALL = "contains_all"
    NOT_CONTAINS_ALL = "not_contains_all"
    IS_TIMESTAMP_BEFORE = "is_timestamp_before"
    IS_TIMESTAMP_ON_OR_AFTER = "is_timestamp_on_or_after"
    IS_TIMESTAMP_BETWEEN = "is_timestamp_between"
    IS_BETWEEN = "is_between"
    EMPTY = "empty"
    NOT_EMPTY = "not_empty"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    IS_TIMESTAMP = "is_timestamp"
    IS_NOT_TIMESTAMP = "is_not_timestamp"
    IS_TIMESTAMP_BEFORE_NOW = "is_timestamp_before_now"
    IS_TIMESTAMP_ON_OR_AFTER_NOW = "is_timestamp_on_or_after_now"
    IS_TIMESTAMP_BEFORE_DATE = "is_timestamp_before_date"
    IS_TIMESTAMP_ON_OR_AFTER_DATE = "is_timestamp_on_or_after_date"
    IS_AUDIENCE_MEMBER = "is_audience_member"
    IS_NOT_AUDIENCE_MEMBER = "is_not_audience_member"


@dataclass(frozen=True)
class Condition:
    variable: str
    operator: str
    """An `Operator` once parsed; a condition built with any other operator never holds."""
    argument: Any
    """As given in the definition: a string, number, list or None."""


@dataclass(frozen=True)
class ConditionGroup:
    mode: Literal["all", "any"]
    members: tuple[Condition | ConditionGroup, ...]


def parse_condition_group(value: Any, field: str = "conditions") -> ConditionGroup | None:
    """Parses a step/branch/trigger `conditions` value: `{"all": [...]}` or `{"any": [...]}`, where an `any`
    may hold nested `{"all": [...]}` groups. None and `{}` mean no conditions."""
    if value is None or value == {}:
        return None
    return _parse_group(value, field, nested=False)


def parse_condition_list(value: Any, field: str = "conditions") -> ConditionGroup:
    """A preference's plain list of conditions, all of which must hold."""
    if not isinstance(value, list):
        raise ConditionError("must be a list of conditions", field=field)
    return ConditionGroup(
        "all", tuple(_parse_member(item, f"{field}.{index}", None) for index, item in enumerate(value))
    )


def _parse_group(value: Any, field: str, *, nested: bool) -> ConditionGroup:
    if not _is_group(value) or len(value) != 1:
        raise ConditionError('must be {"all": [...]} or {"any": [...]}', field=field)
    mode: Literal["all", "any"] = "all" if "all" in value else "any"
    if nested and mode == "any":
        raise ConditionError('a group inside "any" must be {"all": [...]}', field=field)
    items = value[mode]
    field = f"{field}.{mode}"
    if not isinstance(items, list):
        raise ConditionError("must be a list", field=field)
    return ConditionGroup(
        mode, tuple(_parse_member(item, f"{field}.{index}", mode) for index, item in enumerate(items))
    )


def _parse_member(value: Any, field: str, mode: str | None) -> Condition | ConditionGroup:
    """One entry of a group in `mode` (None: of a preference's list); only `any` may hold groups."""
    if _is_group(value) and "variable" not in value:
        if mode != "any":
            raise ConditionError("must be a condition, not a group", field=field)
        return _parse_group(value, field, nested=True)
    if not isinstance(value, dict):
        raise ConditionError("must be a condition object", field=field)
    variable = value.get("variable")
    if not isinstance(variable, str) or not variable:
        raise ConditionError("must be a non-empty string", field=f"{field}.variable")
    operator = value.get("operator")
    if operator is None:
        raise ConditionError("is required", field=f"{field}.operator")
    try:
        parsed = Operator(operator)
    except ValueError:
        raise ConditionError(f"unknown operator {operator!r}", field=f"{field}.operator") from None
    return Condition(variable, parsed, value.get("argument"))


def _is_group(value: Any) -> bool:
    return isinstance(value, dict) and ("all" in value or "any" in value)


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class ConditionScope:
    variables: Mapping[str, Any]
    """Top-level namespaces: 'data', 'recipient', 'actor', 'tenant', 'vars', 'workflow', 'run', 'event',
    'refs' (refs: {step_ref: {'delivery_status': str | None, 'engagement_status': list[str]}}, the highest
    of the step's messages; other keys under a ref are looked up like any data)."""
    now: datetime
    """Timezone-aware: what relative timestamps and the `*_now` operators count from."""
    is_audience_member: Callable[[str], Awaitable[bool]] | None = None
    """Audience key -> whether the run's recipient is a member (the caller applies the tenant rule). Without
    it, neither audience operator holds."""
    render: Callable[[str], str] | None = None
    """Renders a Liquid timestamp argument like '{{ data.when }}'; None means such arguments are taken
    literally. An argument it raises on is no timestamp."""

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")


async def conditions_hold(group: ConditionGroup | None, scope: ConditionScope) -> bool:
    """True when there is no group or the group holds. Short-circuits."""
    return group is None or await _group_holds(group, scope)


async def _group_holds(group: ConditionGroup, scope: ConditionScope) -> bool:
    if not group.members:
        return True
    deciding = group.mode == "any"
    for member in group.members:
        if isinstance(member, ConditionGroup):
            holds = await _group_holds(member, scope)
        else:
            holds = await _condition_holds(member, scope)
        if holds is deciding:
            return deciding
    return not deciding


async def _condition_holds(condition: Condition, scope: ConditionScope) -> bool:
    if condition.operator in _AUDIENCE_OPERATORS:
        return await _audience_holds(condition, scope)
    status = _STATUS_VARIABLE.fullmatch(condition.variable)
    argument = condition.argument
    if status is not None and isinstance(argument, str) and argument.startswith(_STATUS_ARGUMENT):
        ref, kind = status.groups()
        return _status_holds(condition.operator, ref, kind, argument.removeprefix(_STATUS_ARGUMENT), scope)
    check = _CHECKS.get(condition.operator)
    if check is None:
        return False
    variable, _ = _resolve(condition.variable, scope)
    value, written = _resolve(argument, scope) if isinstance(argument, str) else (argument, None)
    return check(
        _Operands(
            variable="" if variable is _UNSET else variable,
            variable_set=variable is not _UNSET,
            argument="" if value is _UNSET else value,
            written=written,
            dynamic=isinstance(argument, str) and written is None,
            scope=scope,
        )
    )


_UNSET: Any = object()
"""What a path that finds nothing resolves to, before it becomes `""`; only `exists` and `not_exists` tell
the two apart."""

_REFERENCE = re.compile(
    r"(data|recipient|actor|tenant|vars|workflow|run|refs|event)\.([^.\s]+(?:\.[^.\s]+)*)"
)
_INDEX = re.compile(r"[0-9]+")


def is_reference(text: str) -> bool:
    """Whether a string argument is dynamic: a path into the scope (`data.plan`) rather than a value."""
    return _REFERENCE.fullmatch(text) is not None


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class _Operands:
    variable: Any
    variable_set: bool
    argument: Any
    written: str | None
    """The argument as written, when it was a static string."""
    dynamic: bool
    """The argument was resolved from the run's data, which is never rendered: Liquid arriving in a trigger
    payload is data, not a template."""
    scope: ConditionScope


def _resolve(text: str, scope: ConditionScope) -> tuple[Any, str | None]:
    """A reference's value (or `_UNSET`), or a static string's decoded value and the string itself."""
    reference = _REFERENCE.fullmatch(text)
    if reference is None:
        try:
            return orjson.loads(text), text
        except orjson.JSONDecodeError:
            return text, text
    prefix, path = reference.groups()
    return _lookup(scope.variables.get(prefix, _UNSET), path), None


def _lookup(current: Any, path: str) -> Any:
    for segment in path.split("."):
        if isinstance(current, Mapping) and segment in current:
            current = current[segment]
        elif isinstance(current, list | tuple) and _INDEX.fullmatch(segment) and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return _UNSET
    return current


def _number(value: Any) -> int | float | None:
    """The number a value stands for: a JSON number, or text that is one (`"5"`, not `"007"`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _NUMBER.fullmatch(value)):
        if not any(match.groups()):
            try:
                return int(value)
            except ValueError:  # more digits than Python converts
                return None
        value = float(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value, booleans only with booleans, lists and objects member by member."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_equal(left[key], right[key]) for key in left)
    return bool(left == right)


def _matches(value: Any, operands: _Operands) -> bool:
    return _equal(value, operands.argument) or (isinstance(value, str) and value == operands.written)


def _comparable(left: Any, right: Any) -> tuple[Any, Any] | None:
    """The pair to order: both as numbers when both are number-like, else both text, else none."""
    left_number, right_number = _number(left), _number(right)
    if left_number is not None and right_number is not None:
        return left_number, right_number
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    return None


def _pair(value: Any) -> tuple[Any, Any] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    return None


Check = Callable[[_Operands], bool]


def _ordered(test: Callable[[Any, Any], bool]) -> Check:
    def check(operands: _Operands) -> bool:
        pair = _comparable(operands.variable, operands.argument)
        return pair is not None and test(*pair)

    return check


def _contains(operands: _Operands) -> bool:
    haystack, needle = operands.variable, operands.argument
    if isinstance(haystack, list | tuple):
        if isinstance(needle, list | tuple):
            return any(_equal(item, wanted) for item in haystack for wanted in needle)
        return any(_matches(item, operands) for item in haystack)
    if isinstance(haystack, str):
        if isinstance(needle, list | tuple):
            return any(_equal(haystack, item) for item in needle)
        text = _text(operands)
        return text is not None and text in haystack
    return False


def _text(operands: _Operands) -> str | None:
    """The argument as text, for a substring test: as written where it was, else a scalar's JSON."""
    argument = operands.argument
    if isinstance(argument, str):
        return argument
    if operands.written is not None:
        return operands.written
    if isinstance(argument, bool | int | float):
        return orjson.dumps(argument).decode()
    return None


def _contains_all(operands: _Operands) -> bool:
    haystack, needles = operands.variable, operands.argument
    return (
        isinstance(haystack, list | tuple)
        and isinstance(needles, list | tuple)
        and all(any(_equal(item, wanted) for item in haystack) for wanted in needles)
    )


def _empty(operands: _Operands) -> bool:
    value = operands.variable
    return value is None or value == "" or (isinstance(value, list | tuple) and not value)


def _is_between(operands: _Operands) -> bool:
    value, bounds = _number(operands.variable), _pair(operands.argument)
    if value is None or bounds is None:
        return False
    low, high = _number(bounds[0]), _number(bounds[1])
    return low is not None and high is not None and low <= value <= high


_RELATIVE = re.compile(r"\s*([0-9]+)\s+(minute|hour|day|week)s?\s+(from\s+now|ago)\s*", re.IGNORECASE)
_UNITS = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}


def _timestamp(value: Any) -> datetime | None:
    """An ISO-8601 text (or a datetime or date) as a UTC moment; a naive one is taken as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _argument_timestamp(value: Any, operands: _Operands) -> datetime | None:
    """A timestamp argument: Liquid (rendered first), relative (`7 days ago`) or absolute."""
    if not isinstance(value, str):
        return _timestamp(value)
    scope = operands.scope
    if scope.render is not None and not operands.dynamic and ("{{" in value or "{%" in value):
        try:
            value = scope.render(value)
        except Exception:  # a broken template is odd data, which must not fail the run
            logger.warning("condition argument %r failed to render", value, exc_info=True)
            return None
    relative = _RELATIVE.fullmatch(value)
    if relative is None:
        return _timestamp(value)
    count, unit, direction = relative.groups()
    try:
        offset = int(count) * _UNITS[unit.lower()]
        return scope.now - offset if direction.lower() == "ago" else scope.now + offset
    except OverflowError:
        return None


def _against_argument(test: Callable[[datetime, datetime], bool]) -> Check:
    def check(operands: _Operands) -> bool:
        moment = _timestamp(operands.variable)
        bound = _argument_timestamp(operands.argument, operands)
        return moment is not None and bound is not None and test(moment, bound)

    return check


def _against_now(test: Callable[[datetime, datetime], bool]) -> Check:
    def check(operands: _Operands) -> bool:
        moment = _timestamp(operands.variable)
        return moment is not None and test(moment, operands.scope.now)

    return check


def _timestamp_between(operands: _Operands) -> bool:
    moment, bounds = _timestamp(operands.variable), _pair(operands.argument)
    if moment is None or bounds is None:
        return False
    start = _argument_timestamp(bounds[0], operands)
    end = _argument_timestamp(bounds[1], operands)
    return start is not None and end is not None and start <= moment <= end


_CHECKS: dict[str, Check] = {
    Operator.EQUAL_TO: lambda operands: _matches(operands.variable, operands),
    Operator.NOT_EQUAL_TO: lambda operands: not _matches(operands.variable, operands),
    Operator.GREATER_THAN: _ordered(gt),
    Operator.LESS_THAN: _ordered(lt),
    Operator.GREATER_THAN_OR_EQUAL_TO: _ordered(ge),
    Operator.LESS_THAN_OR_EQUAL_TO: _ordered(le),
    Operator.CONTAINS: _contains,
    Operator.NOT_CONTAINS: lambda operands: not _contains(operands),
    Operator.CONTAINS_ALL: _contains_all,
    # Lists only, like contains_all, but a variable that is no list holds none of the arguments.
    Operator.NOT_CONTAINS_ALL: lambda operands: (
        isinstance(operands.argument, list | tuple) and not _contains_all(operands)
    ),
    Operator.IS_TIMESTAMP_BEFORE: _against_argument(lt),
    Operator.IS_TIMESTAMP_ON_OR_AFTER: _against_argument(ge),
    Operator.IS_TIMESTAMP_BETWEEN: _timestamp_between,
    Operator.IS_BETWEEN: _is_between,
    Operator.EMPTY: _empty,
    Operator.NOT_EMPTY: lambda operands: not _empty(operands),
    Operator.EXISTS: lambda operands: operands.variable_set and operands.variable is not None,
    Operator.NOT_EXISTS: lambda operands: not operands.variable_set or operands.variable is None,
    Operator.IS_TIMESTAMP: lambda operands: _timestamp(operands.variable) is not None,
    Operator.IS_NOT_TIMESTAMP: lambda operands: _timestamp(operands.variable) is None,
    Operator.IS_TIMESTAMP_BEFORE_NOW: _against_now(lt),
    Operator.IS_TIMESTAMP_ON_OR_AFTER_NOW: _against_now(ge),
    Operator.IS_TIMESTAMP_BEFORE_DATE: _against_argument(lambda moment, bound: moment.date() < bound.date()),
    Operator.IS_TIMESTAMP_ON_OR_AFTER_DATE: _against_argument(
        lambda moment, bound: moment.date() >= bound.date()
    ),
}
"""Every operator but the audience ones, which need an await."""


_AUDIENCE_OPERATORS = frozenset({Operator.IS_AUDIENCE_MEMBER, Operator.IS_NOT_AUDIENCE_MEMBER})


async def _audience_holds(condition: Condition, scope: ConditionScope) -> bool:
    key = condition.argument
    # An audience key is taken as written: "123" names an audience, it is not the number 123.
    if isinstance(key, str) and (reference := _REFERENCE.fullmatch(key)):
        prefix, path = reference.groups()
        key = _lookup(scope.variables.get(prefix, _UNSET), path)
    if not isinstance(key, str) or not key or scope.is_audience_member is None:
        return False
    member = await scope.is_audience_member(key)
    return member if condition.operator == Operator.IS_AUDIENCE_MEMBER else not member


_STATUS_VARIABLE = re.compile(r"refs\.([^.\s]+)\.(delivery_status|engagement_status)")
_STATUS_ARGUMENT = "$message."
_SKIPPED = "skipped"
_SKIPPED_RANK = -1
_STATUS_RANKS = {
    "undelivered": 0,
    "bounced": 1,
    "delivery_attempted": 2,
    "queued": 3,
    "not_sent": 4,
    "sent": 5,
    "delivered": 6,
    "seen": 7,
    "read": 8,
    "interacted": 9,
    "link_clicked": 9,
    "archived": 10,
}
_RANK_TESTS: dict[str, Callable[[int, int], bool]] = {
    Operator.EQUAL_TO: eq,
    Operator.NOT_EQUAL_TO: ne,
    Operator.GREATER_THAN: gt,
    Operator.LESS_THAN: lt,
    Operator.GREATER_THAN_OR_EQUAL_TO: ge,
    Operator.LESS_THAN_OR_EQUAL_TO: le,
}
_ENGAGEMENT_CASES: dict[str, tuple[str, str | None]] = {
    "seen": ("seen", None),
    "seen_not_read": ("seen", "read"),
    "read": ("read", None),
    "read_not_link_clicked": ("read", "link_clicked"),
    "interacted": ("interacted", None),
    "link_clicked": ("link_clicked", None),
    "archived": ("archived", None),
}
"""Engagement case -> the status the message must have, and the one it must not."""


def _status_holds(operator: str, ref: str, kind: str, case: str, scope: ConditionScope) -> bool:
    refs = scope.variables.get("refs")
    entry = refs.get(ref) if isinstance(refs, Mapping) else None
    if not isinstance(entry, Mapping):
        return False
    statuses = entry.get("engagement_status")
    engaged = (
        {status for status in statuses if isinstance(status, str)} if isinstance(statuses, list) else set()
    )
    if kind == "engagement_status":
        rule = _ENGAGEMENT_CASES.get(case)
        if rule is None or operator not in (Operator.CONTAINS, Operator.NOT_CONTAINS):
            return False
        required, excluded = rule
        has = required in engaged and excluded not in engaged
        return has if operator == Operator.CONTAINS else not has
    wanted = _SKIPPED_RANK if case == _SKIPPED else _STATUS_RANKS.get(case)
    test = _RANK_TESTS.get(operator)
    rank = _message_rank(entry.get("delivery_status"), engaged)
    return wanted is not None and test is not None and rank is not None and test(rank, wanted)


def _message_rank(delivery: Any, engaged: set[str]) -> int | None:
    """The rank of the highest status, `_SKIPPED_RANK` without a message, None for an unknown status."""
    statuses = [*engaged, delivery] if isinstance(delivery, str) else list(engaged)
    ranks = [_STATUS_RANKS[status] for status in statuses if status in _STATUS_RANKS]
    if ranks:
        return max(ranks)
    return _SKIPPED_RANK if delivery is None else None

"""Knock's conditions (`clarion.engine.conditions`): one table per operator family, evaluated against a fixed
scope and a fixed `now`, then groups and their short-circuit, audiences, message statuses and parse errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clarion.engine.conditions import (
    Condition,
    ConditionError,
    ConditionGroup,
    ConditionScope,
    Operator,
    conditions_hold,
    parse_condition_group,
    parse_condition_list,
)

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


VARIABLES: dict[str, Any] = {
    "data": {
        "plan": "pro",
        "count": 5,
        "count_text": "5",
        "price": 9.5,
        "flag": True,
        "nothing": None,
        "blank": "",
        "no_items": [],
        "no_fields": {},
        "tags": ["vip", "beta"],
        "numbers": [1, 2],
        "codes": ["42"],
        "roles": ["admin", "editor", "viewer"],
        "role": "senior engineer",
        "code": "007",
        "label": "data.plan",
        "foreign": "foo.bar",
        "items": [{"name": "first"}, {"name": "second"}],
        "created_at": "2025-06-01T00:00:00Z",
        "naive_at": "2025-06-01T00:00:00",
        "morning": "2025-06-01T01:00:00Z",
        "last_year": "2024-12-31",
        "ten_days_ago": _iso(NOW - timedelta(days=10)),
        "sixty_days_ago": _iso(NOW - timedelta(days=60)),
        "ten_minutes_ago": _iso(NOW - timedelta(minutes=10)),
        "twenty_minutes_ago": _iso(NOW - timedelta(minutes=20)),
        "in_five_days": _iso(NOW + timedelta(days=5)),
        "in_ten_days": _iso(NOW + timedelta(days=10)),
        "in_a_day_less_a_minute": _iso(NOW + timedelta(hours=23, minutes=59)),
        "in_a_day": _iso(NOW + timedelta(days=1)),
        "now": _iso(NOW),
        "deadline": "2025-07-01T00:00:00Z",
        "start": "2025-05-01",
        "liquid": "{{ data.deadline }}",
        "dino": "trex",
        "audience": "vip",
        "huge": "1" * 5000,
    },
    "recipient": {"id": "u1", "muted_dinos": ["trex"], "created_at": "2025-06-10T00:00:00Z"},
    "actor": {"id": "u2"},
    "tenant": {"id": "acme"},
    "vars": {"region": "eu"},
    "workflow": {"key": "welcome", "categories": ["marketing"]},
    "run": {"total_activities": 3},
    "event": {"type": "paid"},
    "refs": {
        "wait": {"matched": True},
        "email_sent": {"delivery_status": "sent", "engagement_status": []},
        "email_delivered": {"delivery_status": "delivered", "engagement_status": []},
        "email_bounced": {"delivery_status": "bounced", "engagement_status": []},
        "email_failed": {"delivery_status": "undelivered", "engagement_status": []},
        "email_skipped": {"delivery_status": None, "engagement_status": []},
        "email_clicked": {"delivery_status": "delivered", "engagement_status": ["read", "link_clicked"]},
        "feed_seen": {"delivery_status": "delivered", "engagement_status": ["seen"]},
        "feed_read": {"delivery_status": "sent", "engagement_status": ["seen", "read"]},
        "feed_done": {"delivery_status": "sent", "engagement_status": ["seen", "interacted", "archived"]},
    },
}


def _render(template: str) -> str:
    """A stand-in for Liquid that knows one variable and chokes on anything else."""
    if template == "{{ data.deadline }}":
        return str(VARIABLES["data"]["deadline"])
    raise ValueError(f"cannot render {template}")


SCOPE = ConditionScope(variables=VARIABLES, now=NOW, render=_render)


async def _holds(variable: str, operator: str, argument: Any, scope: ConditionScope = SCOPE) -> bool:
    condition = {"variable": variable, "operator": operator, "argument": argument}
    return await conditions_hold(parse_condition_list([condition]), scope)


Case = tuple[str, str, Any, bool]

EQUALITY: list[Case] = [
    ("data.plan", "equal_to", "pro", True),
    ("data.plan", "equal_to", "free", False),
    ("data.plan", "not_equal_to", "free", True),
    ("data.plan", "not_equal_to", "pro", False),
    ("data.count", "equal_to", "5", True),
    ("data.count", "equal_to", 5, True),
    ("data.count", "equal_to", '"5"', False),
    ("data.count_text", "equal_to", "5", True),
    ("data.count_text", "equal_to", 5, False),
    ("data.price", "equal_to", "9.50", True),
    ("data.flag", "equal_to", "true", True),
    ("data.flag", "equal_to", "1", False),
    ("data.code", "equal_to", "007", True),
    ("data.code", "equal_to", "7", False),
    ("data.nothing", "equal_to", "null", True),
    ("data.tags", "equal_to", '["vip", "beta"]', True),
    ("data.tags", "equal_to", '["beta", "vip"]', False),
    ("data.missing", "equal_to", "", True),
    ("data.missing", "not_equal_to", "", False),
    ("data.plan.deeper", "equal_to", "", True),
    ("workflow.key", "equal_to", "welcome", True),
    ("run.total_activities", "equal_to", "3", True),
    ("vars.region", "equal_to", "eu", True),
    ("tenant.id", "equal_to", "acme", True),
    ("event.type", "equal_to", "paid", True),
    ("refs.wait.matched", "equal_to", "true", True),
    ("data.items.1.name", "equal_to", "second", True),
    ("data.items.5.name", "equal_to", "", True),
    ("data.items.first.name", "equal_to", "first", False),
]

ORDERING: list[Case] = [
    ("run.total_activities", "greater_than", "2", True),
    ("run.total_activities", "greater_than", "3", False),
    ("run.total_activities", "greater_than_or_equal_to", "3", True),
    ("run.total_activities", "greater_than_or_equal_to", "4", False),
    ("run.total_activities", "less_than", "4", True),
    ("run.total_activities", "less_than", "3", False),
    ("run.total_activities", "less_than_or_equal_to", "3", True),
    ("run.total_activities", "less_than_or_equal_to", "2", False),
    ("data.count_text", "greater_than", "4", True),
    ("data.price", "less_than", "9.75", True),
    ("data.plan", "greater_than", "free", True),
    ("data.plan", "greater_than", "5", False),
    ("data.plan", "less_than", "5", False),
    ("data.missing", "less_than", "5", False),
    ("data.flag", "greater_than", "0", False),
    ("data.tags", "greater_than", "0", False),
]

MEMBERSHIP: list[Case] = [
    ("data.role", "contains", "engineer", True),
    ("data.role", "contains", "designer", False),
    ("data.tags", "contains", "vip", True),
    ("data.tags", "contains", "gamma", False),
    ("data.tags", "contains", '["gamma", "beta"]', True),
    ("data.tags", "contains", '["gamma"]', False),
    ("data.plan", "contains", '["free", "pro"]', True),
    ("data.plan", "contains", '["free"]', False),
    ("data.code", "contains", "0", True),
    ("data.numbers", "contains", "2", True),
    ("data.codes", "contains", "42", True),
    ("data.count", "contains", "5", False),
    ("workflow.categories", "contains", "marketing", True),
    ("data.role", "not_contains", "designer", True),
    ("data.role", "not_contains", "engineer", False),
    ("data.tags", "not_contains", "gamma", True),
    ("data.tags", "not_contains", "vip", False),
    ("data.tags", "not_contains", '["gamma", "beta"]', False),
    ("data.missing", "not_contains", "vip", True),
    ("data.roles", "contains_all", '["admin", "editor"]', True),
    ("data.roles", "contains_all", '["admin", "owner"]', False),
    ("data.roles", "contains_all", "admin", False),
    ("data.role", "contains_all", '["senior engineer"]', False),
    ("data.roles", "not_contains_all", '["admin", "owner"]', True),
    ("data.roles", "not_contains_all", '["admin", "editor"]', False),
    ("data.roles", "not_contains_all", "owner", False),
    ("data.missing", "not_contains_all", '["admin"]', True),
]

PRESENCE: list[Case] = [
    ("data.blank", "empty", None, True),
    ("data.nothing", "empty", None, True),
    ("data.no_items", "empty", None, True),
    ("data.missing", "empty", None, True),
    ("data.plan", "empty", None, False),
    ("data.no_fields", "empty", None, False),
    ("data.count", "empty", None, False),
    ("data.plan", "not_empty", None, True),
    ("data.blank", "not_empty", None, False),
    ("data.missing", "not_empty", None, False),
    ("data.plan", "exists", None, True),
    ("data.blank", "exists", None, True),
    ("data.no_items", "exists", None, True),
    ("data.nothing", "exists", None, False),
    ("data.missing", "exists", None, False),
    ("data.nothing", "not_exists", None, True),
    ("data.missing", "not_exists", None, True),
    ("data.blank", "not_exists", None, False),
    ("data.plan", "not_exists", None, False),
]

RANGES: list[Case] = [
    ("data.count", "is_between", "[1, 5]", True),
    ("data.count", "is_between", "[5, 9]", True),
    ("data.count", "is_between", "[6, 9]", False),
    ("data.count_text", "is_between", '["4", "6"]', True),
    ("data.price", "is_between", [9, 10], True),
    ("data.plan", "is_between", "[1, 5]", False),
    ("data.count", "is_between", "[1]", False),
    ("data.count", "is_between", "5", False),
]

TIMESTAMPS: list[Case] = [
    ("data.created_at", "is_timestamp", None, True),
    ("data.last_year", "is_timestamp", None, True),
    ("data.plan", "is_timestamp", None, False),
    ("data.count", "is_timestamp", None, False),
    ("data.missing", "is_timestamp", None, False),
    ("data.plan", "is_not_timestamp", None, True),
    ("data.created_at", "is_not_timestamp", None, False),
    ("data.created_at", "is_timestamp_before", "2025-06-02", True),
    ("data.created_at", "is_timestamp_before", "2025-06-01T00:00:00Z", False),
    ("data.created_at", "is_timestamp_on_or_after", "2025-06-01T00:00:00Z", True),
    ("data.created_at", "is_timestamp_on_or_after", "2025-06-01T00:00:01Z", False),
    ("data.created_at", "is_timestamp_before", "2025-06-01T01:00:00+02:00", False),
    ("data.created_at", "is_timestamp_on_or_after", "2025-06-01T01:00:00+02:00", True),
    ("data.naive_at", "is_timestamp_on_or_after", "2025-06-01T00:00:00Z", True),
    ("data.naive_at", "is_timestamp_before", "2025-06-01T00:00:01Z", True),
    ("data.morning", "is_timestamp_before", "2025-06-01T23:00:00Z", True),
    ("data.morning", "is_timestamp_before_date", "2025-06-01T23:00:00Z", False),
    ("data.morning", "is_timestamp_before_date", "2025-06-02T00:00:00Z", True),
    ("data.morning", "is_timestamp_on_or_after_date", "2025-06-01T23:00:00Z", True),
    ("data.morning", "is_timestamp_on_or_after_date", "2025-06-02", False),
    ("data.ten_days_ago", "is_timestamp_on_or_after", "30 days ago", True),
    ("data.sixty_days_ago", "is_timestamp_on_or_after", "30 days ago", False),
    ("data.in_five_days", "is_timestamp_before", "7 days from now", True),
    ("data.in_ten_days", "is_timestamp_before", "7 days from now", False),
    ("data.ten_minutes_ago", "is_timestamp_on_or_after", "15 minutes ago", True),
    ("data.twenty_minutes_ago", "is_timestamp_on_or_after", "15 minutes ago", False),
    ("data.in_a_day_less_a_minute", "is_timestamp_before", "1 day from now", True),
    ("data.in_a_day", "is_timestamp_before", "1 day from now", False),
    ("data.in_a_day", "is_timestamp_on_or_after", "1 day from now", True),
    ("data.sixty_days_ago", "is_timestamp_before", "2 Weeks Ago", True),
    ("data.ten_days_ago", "is_timestamp_before", "2 hours ago", True),
    ("data.created_at", "is_timestamp_before", "{{ data.deadline }}", True),
    ("data.deadline", "is_timestamp_before", "{{ data.deadline }}", False),
    ("data.created_at", "is_timestamp_before", "{{ data.unknown }}", False),
    ("data.created_at", "is_timestamp_before", "data.deadline", True),
    ("data.created_at", "is_timestamp_before", "data.liquid", False),
    ("data.created_at", "is_timestamp_before", "soon", False),
    ("data.plan", "is_timestamp_before", "7 days from now", False),
    ("data.created_at", "is_timestamp_between", '["2025-01-01", "2025-12-31"]', True),
    ("data.last_year", "is_timestamp_between", '["2025-01-01", "2025-12-31"]', False),
    ("data.created_at", "is_timestamp_between", '["2025-06-01T00:00:00Z", "2025-06-01T00:00:00Z"]', True),
    ("data.created_at", "is_timestamp_between", ["{{ data.deadline }}", "2025-12-31"], False),
    ("data.deadline", "is_timestamp_between", ["2025-06-01", "{{ data.deadline }}"], True),
    ("data.created_at", "is_timestamp_between", "2025-01-01", False),
    ("data.ten_days_ago", "is_timestamp_between", '["30 days ago", "1 day ago"]', True),
    ("data.ten_days_ago", "is_timestamp_before_now", None, True),
    ("data.in_five_days", "is_timestamp_before_now", None, False),
    ("data.in_five_days", "is_timestamp_on_or_after_now", None, True),
    ("data.now", "is_timestamp_on_or_after_now", None, True),
    ("data.ten_days_ago", "is_timestamp_on_or_after_now", None, False),
    ("data.missing", "is_timestamp_before_now", None, False),
]

DYNAMIC_ARGUMENTS: list[Case] = [
    ("recipient.id", "not_equal_to", "actor.id", True),
    ("recipient.id", "equal_to", "actor.id", False),
    ("recipient.muted_dinos", "not_contains", "data.dino", False),
    ("recipient.muted_dinos", "contains", "data.dino", True),
    ("data.blank", "equal_to", "data.missing", True),
    ("data.plan", "equal_to", "data.label", False),
    ("data.label", "equal_to", "data.plan", False),
    ("data.label", "equal_to", '"data.plan"', True),
    ("data.foreign", "equal_to", "foo.bar", True),
    ("data.plan", "equal_to", "foo.bar", False),
    ("run.total_activities", "less_than", "data.count", True),
    ("recipient.created_at", "is_timestamp_on_or_after", "data.created_at", True),
    ("5", "greater_than", "4", True),
    ("pro", "equal_to", "data.plan", True),
]

ALL_CASES = EQUALITY + ORDERING + MEMBERSHIP + PRESENCE + RANGES + TIMESTAMPS + DYNAMIC_ARGUMENTS


def _ids(cases: list[Case]) -> list[str]:
    return [f"{name} {operator} {argument!r} -> {expected}" for name, operator, argument, expected in cases]


@pytest.mark.parametrize(("variable", "operator", "argument", "expected"), EQUALITY, ids=_ids(EQUALITY))
async def test_equality(variable: str, operator: str, argument: Any, expected: bool) -> None:
    assert await _holds(variable, operator, argument) is expected


@pytest.mark.parametrize(("variable", "operator", "argument", "expected"), ORDERING, ids=_ids(ORDERING))
async def test_ordering(variable: str, operator: str, argument: Any, expected: bool) -> None:
    assert await _holds(variable, operator, argument) is expected


@pytest.mark.parametrize(("variable", "operator", "argument", "expected"), MEMBERSHIP, ids=_ids(MEMBERSHIP))
async def test_membership(variable: str, operator: str, argument: Any, expected: bool) -> None:
    assert await _holds(variable, operator, argument) is expected


@pytest.mark.parametrize(("variable", "operator", "argument", "expected"), PRESENCE, ids=_ids(PRESENCE))
async def test_presence(variable: str, operator: str, argument: Any, expected: bool) -> None:
    assert await _holds(variable, operator, argument) is expected


@pytest.mark.parametrize(("variable", "operator", "argument", "expected"), RANGES, ids=_ids(RANGES))
async def test_numeric_ranges_include_their_bounds(
    variable: str, operator: str, argument: Any, expected: bool
) -> None:
    assert await _holds(variable, operator, argument) is expected


@pytest.mark.parametrize(("variable", "operator", "argument", "expected"), TIMESTAMPS, ids=_ids(TIMESTAMPS))
async def test_timestamps(variable: str, operator: str, argument: Any, expected: bool) -> None:
    assert await _holds(variable, operator, argument) is expected


@pytest.mark.parametrize(
    ("variable", "operator", "argument", "expected"), DYNAMIC_ARGUMENTS, ids=_ids(DYNAMIC_ARGUMENTS)
)
async def test_dynamic_arguments_resolve_like_variables(
    variable: str, operator: str, argument: Any, expected: bool
) -> None:
    assert await _holds(variable, operator, argument) is expected


def test_the_tables_cover_every_operator_both_ways() -> None:
    outcomes = {(operator, expected) for _, operator, _, expected in ALL_CASES + STATUSES}
    outcomes |= {(operator, expected) for operator, _, expected in AUDIENCES}
    assert {operator for operator, _ in outcomes} == set(Operator)
    assert outcomes == {(operator, expected) for operator in Operator for expected in (True, False)}


async def test_liquid_arguments_are_literal_without_a_renderer() -> None:
    literal = ConditionScope(variables=VARIABLES, now=NOW)
    assert await _holds("data.created_at", "is_timestamp_before", "{{ data.deadline }}", literal) is False


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ConditionScope(variables={}, now=datetime(2025, 6, 15, 12, 0))


ODD_DATA: list[tuple[str, str, Any]] = [
    ("data.created_at", "is_timestamp_before", "99999999999 weeks from now"),
    ("data.created_at", "is_timestamp_before", "9999999 weeks ago"),
    ("data.count", "equal_to", "1" * 5000),
    ("data.huge", "greater_than", "4"),
    ("data.count", "greater_than", "1e999"),
    ("data.no_fields", "contains", "x"),
    ("data.no_fields", "contains_all", "[{}]"),
    ("data.tags", "is_between", '[{"a": 1}, []]'),
    ("data.items", "greater_than", '[{"name": "first"}]'),
    ("refs.email_sent.delivery_status.more", "equal_to", "$message.sent"),
]


@pytest.mark.parametrize(("variable", "operator", "argument"), ODD_DATA)
async def test_odd_data_is_false_rather_than_an_error(variable: str, operator: str, argument: Any) -> None:
    assert await _holds(variable, operator, argument) is False


ODD_REFS: list[Any] = [
    "nonsense",
    {"email": "nonsense"},
    {"email": {"delivery_status": ["sent"], "engagement_status": "seen"}},
    {"email": {"delivery_status": "exploded", "engagement_status": [{"seen": True}]}},
]


@pytest.mark.parametrize("refs", ODD_REFS)
async def test_odd_refs_hold_no_message_status(refs: Any) -> None:
    scope = ConditionScope(variables={"refs": refs}, now=NOW)
    assert await _holds("refs.email.delivery_status", "less_than", "$message.sent", scope) is False
    assert await _holds("refs.email.delivery_status", "not_equal_to", "$message.skipped", scope) is False


async def test_conditions_built_by_hand_take_plain_operators_and_unknown_ones_never_hold() -> None:
    group = ConditionGroup("all", (Condition("data.plan", "equal_to", "pro"),))
    assert await conditions_hold(group, SCOPE) is True
    unknown = ConditionGroup("any", (Condition("data.plan", "like", "pro"),))
    assert await conditions_hold(unknown, SCOPE) is False


TRUE = {"variable": "data.plan", "operator": "equal_to", "argument": "pro"}
FALSE = {"variable": "data.plan", "operator": "equal_to", "argument": "free"}


def _member(key: str) -> dict[str, Any]:
    return {"variable": "recipient.id", "operator": "is_audience_member", "argument": key}


class _Audiences:
    """Records each membership look-up; the recipient belongs to the audiences it was given."""

    def __init__(self, *members: str) -> None:
        self.members = set(members)
        self.asked: list[str] = []

    async def __call__(self, key: str) -> bool:
        self.asked.append(key)
        return key in self.members

    def scope(self) -> ConditionScope:
        return ConditionScope(variables=VARIABLES, now=NOW, is_audience_member=self)


GROUPS: list[tuple[Any, bool]] = [
    (None, True),
    ({}, True),
    ({"all": []}, True),
    ({"any": []}, True),
    ({"all": [TRUE, TRUE]}, True),
    ({"all": [TRUE, FALSE]}, False),
    ({"any": [FALSE, TRUE]}, True),
    ({"any": [FALSE, FALSE]}, False),
    ({"any": [{"all": [TRUE, FALSE]}, {"all": [TRUE, TRUE]}]}, True),
    ({"any": [{"all": [TRUE, FALSE]}, FALSE]}, False),
    ({"any": [{"all": []}, FALSE]}, True),
]


@pytest.mark.parametrize(("conditions", "expected"), GROUPS)
async def test_groups_combine_their_members(conditions: Any, expected: bool) -> None:
    assert await conditions_hold(parse_condition_group(conditions), SCOPE) is expected


async def test_preference_lists_need_every_condition() -> None:
    assert await conditions_hold(parse_condition_list([TRUE, TRUE]), SCOPE) is True
    assert await conditions_hold(parse_condition_list([TRUE, FALSE]), SCOPE) is False
    assert await conditions_hold(parse_condition_list([]), SCOPE) is True


SHORT_CIRCUITS: list[tuple[Any, bool, list[str]]] = [
    ({"all": [FALSE, _member("a")]}, False, []),
    ({"all": [TRUE, _member("a"), _member("b")]}, True, ["a", "b"]),
    ({"all": [_member("x"), _member("a")]}, False, ["x"]),
    ({"any": [TRUE, _member("a")]}, True, []),
    ({"any": [FALSE, _member("x"), _member("a"), _member("b")]}, True, ["x", "a"]),
    ({"any": [{"all": [FALSE, _member("a")]}, _member("b")]}, True, ["b"]),
    ({"any": [{"all": [_member("a"), TRUE]}, _member("b")]}, True, ["a"]),
]


@pytest.mark.parametrize(("conditions", "expected", "asked"), SHORT_CIRCUITS)
async def test_groups_stop_at_the_first_deciding_member(
    conditions: Any, expected: bool, asked: list[str]
) -> None:
    audiences = _Audiences("a", "b")
    assert await conditions_hold(parse_condition_group(conditions), audiences.scope()) is expected
    assert audiences.asked == asked


AUDIENCES: list[tuple[str, Any, bool]] = [
    ("is_audience_member", "vip", True),
    ("is_audience_member", "other", False),
    ("is_not_audience_member", "other", True),
    ("is_not_audience_member", "vip", False),
    ("is_audience_member", "data.audience", True),
    ("is_audience_member", "data.missing", False),
    ("is_audience_member", "", False),
    ("is_audience_member", None, False),
]


@pytest.mark.parametrize(("operator", "key", "expected"), AUDIENCES)
async def test_audience_membership_asks_the_scope(operator: str, key: Any, expected: bool) -> None:
    assert await _holds("recipient.id", operator, key, _Audiences("vip").scope()) is expected


async def test_audience_keys_are_taken_as_written() -> None:
    audiences = _Audiences("123")
    assert await _holds("recipient.id", "is_audience_member", "123", audiences.scope()) is True
    assert audiences.asked == ["123"]


@pytest.mark.parametrize("operator", ["is_audience_member", "is_not_audience_member"])
async def test_no_audience_operator_holds_without_a_membership_look_up(operator: str) -> None:
    assert await _holds("recipient.id", operator, "vip") is False


def _status(ref: str, kind: str, operator: str, case: str, expected: bool) -> Case:
    return (f"refs.{ref}.{kind}", operator, f"$message.{case}", expected)


def _delivery(ref: str, operator: str, case: str, expected: bool) -> Case:
    return _status(ref, "delivery_status", operator, case, expected)


def _engagement(ref: str, operator: str, case: str, expected: bool) -> Case:
    return _status(ref, "engagement_status", operator, case, expected)


STATUSES: list[Case] = [
    _delivery("email_skipped", "equal_to", "skipped", True),
    _delivery("email_sent", "equal_to", "skipped", False),
    _delivery("email_sent", "not_equal_to", "skipped", True),
    _delivery("email_skipped", "not_equal_to", "skipped", False),
    _delivery("email_failed", "equal_to", "undelivered", True),
    _delivery("email_sent", "equal_to", "undelivered", False),
    _delivery("email_bounced", "equal_to", "bounced", True),
    _delivery("email_delivered", "equal_to", "bounced", False),
    _delivery("email_sent", "greater_than_or_equal_to", "sent", True),
    _delivery("email_delivered", "greater_than_or_equal_to", "sent", True),
    _delivery("email_bounced", "greater_than_or_equal_to", "sent", False),
    _delivery("email_skipped", "greater_than_or_equal_to", "sent", False),
    _delivery("email_sent", "less_than", "sent", False),
    _delivery("email_failed", "less_than", "sent", True),
    _delivery("email_skipped", "less_than", "sent", True),
    _delivery("email_delivered", "greater_than_or_equal_to", "delivered", True),
    _delivery("email_sent", "greater_than_or_equal_to", "delivered", False),
    _delivery("feed_read", "greater_than_or_equal_to", "delivered", True),
    _delivery("email_sent", "less_than", "delivered", True),
    _delivery("feed_read", "less_than", "delivered", False),
    _delivery("email_delivered", "greater_than", "sent", True),
    _delivery("email_sent", "greater_than", "sent", False),
    _delivery("email_sent", "less_than_or_equal_to", "sent", True),
    _delivery("email_delivered", "less_than_or_equal_to", "sent", False),
    _delivery("expired", "greater_than_or_equal_to", "sent", False),
    _delivery("expired", "less_than", "sent", False),
    _delivery("expired", "equal_to", "skipped", False),
    _delivery("email_sent", "equal_to", "opened", False),
    _delivery("email_sent", "contains", "sent", False),
    _engagement("feed_seen", "contains", "seen", True),
    _engagement("email_sent", "contains", "seen", False),
    _engagement("feed_seen", "not_contains", "seen", False),
    _engagement("email_sent", "not_contains", "seen", True),
    _engagement("email_skipped", "not_contains", "seen", True),
    _engagement("feed_seen", "contains", "seen_not_read", True),
    _engagement("feed_read", "contains", "seen_not_read", False),
    _engagement("feed_read", "contains", "read", True),
    _engagement("feed_seen", "contains", "read", False),
    _engagement("feed_read", "not_contains", "read", False),
    _engagement("feed_read", "contains", "read_not_link_clicked", True),
    _engagement("email_clicked", "contains", "read_not_link_clicked", False),
    _engagement("email_clicked", "contains", "link_clicked", True),
    _engagement("email_clicked", "not_contains", "link_clicked", False),
    _engagement("feed_done", "contains", "interacted", True),
    _engagement("feed_read", "contains", "interacted", False),
    _engagement("feed_done", "contains", "archived", True),
    _engagement("feed_read", "not_contains", "archived", True),
    _engagement("expired", "not_contains", "seen", False),
    _engagement("feed_seen", "equal_to", "seen", False),
    _engagement("feed_seen", "contains", "sent", False),
    ("refs.email_sent.delivery_status", "equal_to", "sent", True),
    ("refs.email_sent.engagement_status", "empty", None, True),
]


@pytest.mark.parametrize(("variable", "operator", "argument", "expected"), STATUSES, ids=_ids(STATUSES))
async def test_message_statuses_follow_the_hierarchy(
    variable: str, operator: str, argument: Any, expected: bool
) -> None:
    assert await _holds(variable, operator, argument) is expected


def test_parsing_keeps_the_definition() -> None:
    group = parse_condition_group(
        {"any": [{"variable": "data.a", "operator": "empty"}, {"all": [{**TRUE, "argument": [1, "x"]}]}]}
    )
    assert group == ConditionGroup(
        "any",
        (
            Condition("data.a", "empty", None),
            ConditionGroup("all", (Condition("data.plan", "equal_to", [1, "x"]),)),
        ),
    )
    assert parse_condition_list([TRUE]) == ConditionGroup("all", (Condition("data.plan", "equal_to", "pro"),))


CONDITION = {"variable": "data.a", "operator": "equal_to", "argument": "1"}

GROUP_ERRORS: list[tuple[Any, str]] = [
    ("all", "conditions"),
    ([CONDITION], "conditions"),
    ({"some": [CONDITION]}, "conditions"),
    ({"all": [CONDITION], "any": [CONDITION]}, "conditions"),
    ({"all": CONDITION}, "conditions.all"),
    ({"all": [CONDITION, CONDITION, {**CONDITION, "operator": "like"}]}, "conditions.all.2.operator"),
    ({"all": [{"variable": "data.a"}]}, "conditions.all.0.operator"),
    ({"all": [{"variable": "data.a", "operator": 3}]}, "conditions.all.0.operator"),
    ({"all": [{"variable": "data.a", "operator": ["empty"]}]}, "conditions.all.0.operator"),
    ({"all": [{"operator": "empty"}]}, "conditions.all.0.variable"),
    ({"all": [{"variable": "", "operator": "empty"}]}, "conditions.all.0.variable"),
    ({"all": ["data.a"]}, "conditions.all.0"),
    ({"all": [{"all": [CONDITION]}]}, "conditions.all.0"),
    ({"any": [CONDITION, {"any": [CONDITION]}]}, "conditions.any.1"),
    ({"any": [{"all": [{"all": [CONDITION]}]}]}, "conditions.any.0.all.0"),
    ({"any": [{"all": [{**CONDITION, "operator": "like"}]}]}, "conditions.any.0.all.0.operator"),
]


@pytest.mark.parametrize(("conditions", "field"), GROUP_ERRORS)
def test_malformed_groups_name_the_bad_field(conditions: Any, field: str) -> None:
    with pytest.raises(ConditionError) as raised:
        parse_condition_group(conditions)
    assert raised.value.field == field


def test_errors_are_value_errors_under_the_given_field() -> None:
    with pytest.raises(ValueError, match="unknown operator 'like'") as raised:
        parse_condition_group({"all": [{**CONDITION, "operator": "like"}]}, field="steps.1.conditions")
    assert isinstance(raised.value, ConditionError)
    assert raised.value.field == "steps.1.conditions.all.0.operator"


LIST_ERRORS: list[tuple[Any, str]] = [
    (None, "prefs"),
    ({"all": [CONDITION]}, "prefs"),
    ([CONDITION, {"variable": "data.a", "operator": "like"}], "prefs.1.operator"),
    ([{"all": [CONDITION]}], "prefs.0"),
    ([CONDITION, 5], "prefs.1"),
]


@pytest.mark.parametrize(("conditions", "field"), LIST_ERRORS)
def test_malformed_preference_lists_name_the_bad_field(conditions: Any, field: str) -> None:
    with pytest.raises(ConditionError) as raised:
        parse_condition_list(conditions, field="prefs")
    assert raised.value.field == field

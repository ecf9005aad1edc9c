"""What an audience is, parsed from its `audience.json` (the Knock CLI's layout, the shapes of the management
API's `StaticAudience` and `DynamicAudience`):

    {"name": "Premium users", "type": "dynamic",
     "segments": [{"conditions": [{"property": "recipient.plan", "operator": "equal_to",
                                   "argument": "premium"}]}]}

A static audience has a name (and an optional description); its members are added and removed. A dynamic
audience has segments too, at least one, each with at least one `AudienceCondition`: a user is a member
when the conditions of any one segment all hold for it (segments OR'd, conditions AND'd). A condition reads
the user's properties (`recipient.<path>`, with `recipient.id`), by the operators of the management spec,
evaluated as every Knock condition is (`clarion.engine.conditions`); `recipient.created_at` and
`recipient.updated_at` are refused, as Knock reserves them. `is_audience_member` names another audience by
its key (not a path to one), whose members without a tenant count, never the audience itself. Unknown
fields (`created_at`, `sha`, … of a pulled file) are ignored. An error names the field by its dotted path
(`segments.0.conditions.1.operator`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clarion.engine.conditions import Condition, ConditionGroup, Operator, is_reference
from clarion.store.audiences import AudienceType

AUDIENCE_KEY = re.compile(r"^[a-z0-9_-]{1,255}$")
RECIPIENT_PREFIX = "recipient."
RESERVED_PROPERTIES = frozenset({"recipient.created_at", "recipient.updated_at"})
AUDIENCE_OPERATORS = (
    Operator.EQUAL_TO,
    Operator.NOT_EQUAL_TO,
    Operator.GREATER_THAN,
    Operator.LESS_THAN,
    Operator.GREATER_THAN_OR_EQUAL_TO,
    Operator.LESS_THAN_OR_EQUAL_TO,
    Operator.CONTAINS,
    Operator.NOT_CONTAINS,
    Operator.CONTAINS_ALL,
    Operator.NOT_CONTAINS_ALL,
    Operator.IS_TIMESTAMP_BEFORE,
    Operator.IS_TIMESTAMP_ON_OR_AFTER,
    Operator.IS_TIMESTAMP_BETWEEN,
    Operator.IS_BETWEEN,
    Operator.EMPTY,
    Operator.NOT_EMPTY,
    Operator.EXISTS,
    Operator.NOT_EXISTS,
    Operator.IS_TIMESTAMP,
    Operator.IS_TIMESTAMP_BEFORE_NOW,
    Operator.IS_TIMESTAMP_ON_OR_AFTER_NOW,
    Operator.IS_AUDIENCE_MEMBER,
    Operator.IS_NOT_AUDIENCE_MEMBER,
)
"""`AudienceCondition.operator` of the management spec, in its order."""
_MEMBERSHIP_OPERATORS = (Operator.IS_AUDIENCE_MEMBER, Operator.IS_NOT_AUDIENCE_MEMBER)


class AudienceDefinitionError(ValueError):
    """An audience definition is invalid at `field` (a dotted path inside `audience.json`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AudienceDefinition:
    key: str
    type: AudienceType
    name: str
    description: str | None
    segments: ConditionGroup | None
    """A dynamic audience's membership rule: any of its segments, each all of its conditions."""
    references: frozenset[str]
    """The audiences its `is_audience_member` conditions name (by a static key)."""


def _string(data: dict[str, Any], name: str, field: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise AudienceDefinitionError(f"{field}{name}", "is required")
        return None
    if not isinstance(value, str):
        raise AudienceDefinitionError(f"{field}{name}", "must be a string")
    return value


def _condition(value: Any, key: str, field: str) -> Condition:
    if not isinstance(value, dict):
        raise AudienceDefinitionError(field, "must be a condition object with `property` and `operator`")
    prop = _string(value, "property", f"{field}.", required=True)
    assert prop is not None
    if not prop.startswith(RECIPIENT_PREFIX) or prop == RECIPIENT_PREFIX:
        raise AudienceDefinitionError(
            f"{field}.property", "must be a user property, `recipient.<path>`: audiences are built from users"
        )
    if prop in RESERVED_PROPERTIES:
        raise AudienceDefinitionError(f"{field}.property", f"{prop!r} is reserved and cannot be used")
    operator = value.get("operator")
    if operator not in AUDIENCE_OPERATORS:
        raise AudienceDefinitionError(
            f"{field}.operator", f"must be one of {', '.join(AUDIENCE_OPERATORS)}, not {operator!r}"
        )
    argument = value.get("argument")
    if isinstance(argument, dict):
        raise AudienceDefinitionError(f"{field}.argument", "must be a string, number, boolean or list")
    if operator in _MEMBERSHIP_OPERATORS:
        # A static key: an audience is evaluated after those it names (`clarion.engine.audience_rules`).
        if not isinstance(argument, str) or not argument or is_reference(argument):
            raise AudienceDefinitionError(f"{field}.argument", "must be the key of an audience")
        if argument == key:
            raise AudienceDefinitionError(f"{field}.argument", "cannot name the audience itself")
    return Condition(prop, Operator(operator), argument)


def _segments(value: Any, key: str) -> ConditionGroup:
    if not isinstance(value, list) or not value:
        raise AudienceDefinitionError("segments", "must be a list of at least one segment")
    groups: list[ConditionGroup] = []
    for index, segment in enumerate(value):
        field = f"segments.{index}"
        if not isinstance(segment, dict):
            raise AudienceDefinitionError(field, "must be a segment object with `conditions`")
        conditions = segment.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise AudienceDefinitionError(f"{field}.conditions", "must be a list of at least one condition")
        groups.append(
            ConditionGroup(
                "all",
                tuple(
                    _condition(condition, key, f"{field}.conditions.{position}")
                    for position, condition in enumerate(conditions)
                ),
            )
        )
    return ConditionGroup("any", tuple(groups))


def _references(segments: ConditionGroup | None) -> frozenset[str]:
    if segments is None:
        return frozenset()
    return frozenset(
        condition.argument
        for group in segments.members
        if isinstance(group, ConditionGroup)
        for condition in group.members
        if isinstance(condition, Condition) and condition.operator in _MEMBERSHIP_OPERATORS
    )


def parse_audience(data: Any, key: str) -> AudienceDefinition:
    """A checked definition of the audience `key` from its JSON."""
    if not AUDIENCE_KEY.match(key):
        raise AudienceDefinitionError("key", "must be 1 to 255 characters of a-z, 0-9, _ and -")
    if not isinstance(data, dict):
        raise AudienceDefinitionError("", "must be an audience object")
    declared = data.get("key")
    if declared is not None and declared != key:
        raise AudienceDefinitionError("key", f"is {declared!r} but the audience is {key!r}")
    kind = data.get("type")
    if kind not in tuple(AudienceType):
        raise AudienceDefinitionError("type", 'must be "static" or "dynamic"')
    audience_type = AudienceType(kind)
    name = _string(data, "name", "", required=True)
    assert name is not None
    description = _string(data, "description", "", required=False)
    segments = None
    if audience_type is AudienceType.DYNAMIC:
        segments = _segments(data.get("segments"), key)
    elif data.get("segments"):
        raise AudienceDefinitionError("segments", "only a dynamic audience has segments")
    return AudienceDefinition(
        key=key,
        type=audience_type,
        name=name,
        description=description,
        segments=segments,
        references=_references(segments),
    )

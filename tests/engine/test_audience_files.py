"""Reading audiences from folders in the Knock CLI layout, and checking their definitions: every problem
names its file and field, and a folder is accepted whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clarion.engine.audience_files import AudienceFilesError, read_audiences
from clarion.engine.conditions import Condition, ConditionGroup, Operator
from clarion.store.audiences import AudienceType
from tests.conftest import write_audience


def condition(prop: str, operator: str, argument: Any = None) -> dict[str, Any]:
    return {"property": prop, "operator": operator, "argument": argument}


def dynamic(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"name": "Dynamic", "type": "dynamic", "segments": [{"conditions": list(conditions)}]}


def problems(root: Path) -> list[str]:
    with pytest.raises(AudienceFilesError) as raised:
        read_audiences(root)
    return [str(problem) for problem in raised.value.problems]


def test_static_and_dynamic_audiences_are_read_with_the_folder_as_key(tmp_path: Path) -> None:
    write_audience(tmp_path, "beta", {"name": "Beta testers", "type": "static", "description": None})
    write_audience(
        tmp_path,
        "premium",
        {
            "key": "premium",
            "name": "Premium",
            "description": "Paying users",
            "type": "dynamic",
            "environment": "development",
            "__readonly": {"sha": "abc"},
            "segments": [
                {"conditions": [condition("recipient.plan", "equal_to", "premium")]},
                {
                    "conditions": [
                        condition("recipient.seats", "greater_than", 10),
                        condition("recipient.id", "is_audience_member", "beta"),
                    ]
                },
            ],
        },
    )
    (tmp_path / "not-an-audience").mkdir()
    beta, premium = read_audiences(tmp_path)
    assert (beta.definition.key, beta.definition.type, beta.definition.name) == (
        "beta",
        "static",
        "Beta testers",
    )
    assert beta.definition.segments is None
    assert beta.document == {"name": "Beta testers", "type": "static", "description": None, "key": "beta"}
    assert premium.definition.type is AudienceType.DYNAMIC
    assert premium.definition.description == "Paying users"
    assert premium.definition.references == {"beta"}
    assert premium.definition.segments == ConditionGroup(
        "any",
        (
            ConditionGroup("all", (Condition("recipient.plan", Operator.EQUAL_TO, "premium"),)),
            ConditionGroup(
                "all",
                (
                    Condition("recipient.seats", Operator.GREATER_THAN, 10),
                    Condition("recipient.id", Operator.IS_AUDIENCE_MEMBER, "beta"),
                ),
            ),
        ),
    )
    assert "__readonly" not in premium.document
    assert premium.to_store().sha == read_audiences(tmp_path)[1].to_store().sha
    # A folder that is itself an audience is read alone.
    [alone] = read_audiences(tmp_path / "beta")
    assert alone.definition.key == "beta"


BAD_AUDIENCES: list[tuple[Any, str]] = [
    ([], "audience.json: must be an audience object"),
    ({"name": "x"}, 'audience.json at type: must be "static" or "dynamic"'),
    ({"name": "x", "type": "segment"}, 'audience.json at type: must be "static" or "dynamic"'),
    ({"type": "static"}, "audience.json at name: is required"),
    ({"type": "static", "name": 5}, "audience.json at name: must be a string"),
    ({"type": "static", "name": "x", "description": 5}, "audience.json at description: must be a string"),
    ({"type": "static", "name": "x", "key": "other"}, "audience.json at key: is 'other' but the audience is"),
    (
        {"type": "static", "name": "x", "segments": [{"conditions": [condition("recipient.a", "exists")]}]},
        "audience.json at segments: only a dynamic audience has segments",
    ),
    ({"type": "dynamic", "name": "x"}, "audience.json at segments: must be a list of at least one segment"),
    ({"type": "dynamic", "name": "x", "segments": []}, "at segments: must be a list of at least one segment"),
    ({"type": "dynamic", "name": "x", "segments": ["a"]}, "at segments.0: must be a segment object"),
    (
        {"type": "dynamic", "name": "x", "segments": [{"conditions": []}]},
        "at segments.0.conditions: must be a list of at least one condition",
    ),
    (
        {"type": "dynamic", "name": "x", "segments": [{"conditions": ["recipient.plan"]}]},
        "at segments.0.conditions.0: must be a condition object",
    ),
    (dynamic({"operator": "exists"}), "at segments.0.conditions.0.property: is required"),
    (
        dynamic(condition("data.plan", "exists")),
        "at segments.0.conditions.0.property: must be a user property",
    ),
    (
        dynamic(condition("recipient.", "exists")),
        "at segments.0.conditions.0.property: must be a user property",
    ),
    (
        dynamic(condition("recipient.created_at", "is_timestamp_before_now")),
        "at segments.0.conditions.0.property: 'recipient.created_at' is reserved",
    ),
    (
        dynamic(condition("recipient.a", "is_not_timestamp")),
        "at segments.0.conditions.0.operator: must be one of",
    ),
    (dynamic(condition("recipient.a", "matches")), "at segments.0.conditions.0.operator: must be one of"),
    (
        dynamic(condition("recipient.a", "equal_to", {"x": 1})),
        "at segments.0.conditions.0.argument: must be a string, number, boolean or list",
    ),
    (
        dynamic(condition("recipient.id", "is_audience_member", 5)),
        "at segments.0.conditions.0.argument: must be the key of an audience",
    ),
    (
        dynamic(condition("recipient.id", "is_audience_member", "recipient.team")),
        "at segments.0.conditions.0.argument: must be the key of an audience",
    ),
    (
        dynamic(condition("recipient.id", "is_not_audience_member", "aud")),
        "at segments.0.conditions.0.argument: cannot name the audience itself",
    ),
]


@pytest.mark.parametrize(("document", "expected"), BAD_AUDIENCES)
def test_invalid_audiences_are_refused_with_the_file_and_field(
    tmp_path: Path, document: Any, expected: str
) -> None:
    write_audience(tmp_path, "good", {"type": "static", "name": "Good"})
    folder = write_audience(tmp_path, "aud", document)
    [problem] = problems(tmp_path)
    assert problem.startswith(str(folder / "audience.json")), problem
    assert expected in problem, problem


def test_every_problem_of_a_folder_is_reported(tmp_path: Path) -> None:
    write_audience(tmp_path, "a", {"type": "static"})
    write_audience(tmp_path, "b", {"type": "dynamic", "name": "B"})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "audience.json").write_text("{not json", encoding="utf-8")
    write_audience(tmp_path, "Bad Key", {"type": "static", "name": "x"})
    found = problems(tmp_path)
    assert len(found) == 4
    assert "Bad Key/audience.json at key: must be 1 to 255 characters of a-z, 0-9, _ and -" in found[0]
    assert "a/audience.json at name: is required" in found[1]
    assert "b/audience.json at segments" in found[2]
    assert "c/audience.json: cannot be read as JSON" in found[3]


def test_audiences_naming_each_other_in_a_cycle_are_refused(tmp_path: Path) -> None:
    write_audience(tmp_path, "a", dynamic(condition("recipient.id", "is_audience_member", "b")))
    write_audience(tmp_path, "b", dynamic(condition("recipient.id", "is_not_audience_member", "c")))
    write_audience(tmp_path, "c", dynamic(condition("recipient.id", "is_audience_member", "a")))
    write_audience(tmp_path, "d", dynamic(condition("recipient.id", "is_audience_member", "a")))
    [problem] = problems(tmp_path)
    assert (
        "a/audience.json at segments: audiences cannot depend on their own membership: a → b → c → a"
        in problem
    )


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: is not a folder"]

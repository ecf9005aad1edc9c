"""Reading workflows from folders in the Knock CLI layout, and checking their definitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clarion.channels import Channel, ChannelRegistry, ChannelType, Provider
from clarion.engine.steps.channel import ChannelStep
from clarion.engine.steps.delay import DelayStep
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_files import WorkflowFilesError, read_workflows
from tests.conftest import write_workflow

REPOSITORY_WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

CHANNELS = ChannelRegistry(
    [
        Channel(
            "11111111-1111-4111-8111-111111111111",
            "in-app-feed",
            ChannelType.IN_APP_FEED,
            Provider.IN_APP_FEED_KNOCK,
            "Feed",
        ),
        Channel(
            "22222222-2222-4222-8222-222222222222", "email", ChannelType.EMAIL, Provider.EMAIL_SMTP, "Email"
        ),
    ]
)


def feed_step(**template: Any) -> dict[str, Any]:
    return {"ref": "in_app_feed_1", "type": "channel", "channel_key": "in-app-feed", "template": template}


def read(root: Path) -> list[Any]:
    return read_workflows(root, CHANNELS, TemplateRenderer())


def problems(root: Path) -> list[str]:
    with pytest.raises(WorkflowFilesError) as raised:
        read(root)
    return [str(problem) for problem in raised.value.problems]


def test_template_files_are_inlined_and_the_folder_names_the_key(tmp_path: Path) -> None:
    write_workflow(
        tmp_path,
        "new-comment",
        {
            "name": "New comment",
            "categories": ["collaboration"],
            "__readonly": {"key": "new-comment", "valid": True},
            "steps": [feed_step(**{"markdown_body@": "in_app_feed_1/markdown_body.md"})],
        },
        {"in_app_feed_1/markdown_body.md": "Hello **{{ recipient.name }}**"},
    )
    [loaded] = read(tmp_path)
    assert loaded.document == {
        "key": "new-comment",
        "name": "New comment",
        "categories": ["collaboration"],
        "steps": [
            {
                "ref": "in_app_feed_1",
                "type": "channel",
                "channel_key": "in-app-feed",
                "channel_type": "in_app_feed",
                "template": {"markdown_body": "Hello **{{ recipient.name }}**"},
            }
        ],
    }
    definition = loaded.definition
    assert (definition.key, definition.name, definition.categories) == (
        "new-comment",
        "New comment",
        ("collaboration",),
    )
    assert definition.steps == (
        ChannelStep(
            ref="in_app_feed_1",
            channel_type="in_app_feed",
            channel_key="in-app-feed",
            template={"markdown_body": "Hello **{{ recipient.name }}**"},
            conditions=None,
        ),
    )


def test_json_template_files_are_read_as_json_with_their_own_file_fields(tmp_path: Path) -> None:
    write_workflow(
        tmp_path,
        "blocks",
        {"steps": [feed_step(markdown_body="Hi", **{"action_buttons@": "in_app_feed_1/buttons.json"})]},
        {
            "in_app_feed_1/buttons.json": json.dumps(
                [{"label@": "in_app_feed_1/label.txt", "action": "/open"}]
            ),
            "in_app_feed_1/label.txt": "Open",
        },
    )
    [loaded] = read(tmp_path)
    assert loaded.document["steps"][0]["template"]["action_buttons"] == [{"label": "Open", "action": "/open"}]


def test_a_delay_step_takes_its_duration_in_seconds(tmp_path: Path) -> None:
    write_workflow(
        tmp_path,
        "delayed",
        {
            "steps": [
                {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 2}}}
            ]
        },
    )
    [loaded] = read(tmp_path)
    assert loaded.definition.steps == (
        DelayStep(ref="delay_1", delay_seconds=7200.0, until_field_path=None, conditions=None),
    )


def test_the_repository_examples_load() -> None:
    loaded = read(REPOSITORY_WORKFLOWS)
    assert [w.definition.key for w in loaded] == ["new-comment", "welcome"]


@pytest.mark.parametrize(
    ("document", "files", "expected"),
    [
        (
            {"steps": [feed_step(**{"markdown_body@": "in_app_feed_1/missing.md"})]},
            {},
            "at steps.0.template.markdown_body@: 'in_app_feed_1/missing.md' does not exist",
        ),
        (
            {"steps": [feed_step(**{"markdown_body@": "../elsewhere.md"})]},
            {},
            "at steps.0.template.markdown_body@: '../elsewhere.md' points outside the workflow's folder",
        ),
        (
            {"steps": [feed_step(markdown_body="{% if %}")]},
            {},
            "at steps.0.template.markdown_body: is not valid Liquid",
        ),
        (
            {"steps": [feed_step()]},
            {},
            "at steps.0.template.markdown_body: is required",
        ),
        (
            {"steps": [{**feed_step(markdown_body="x"), "channel_key": "sms"}]},
            {},
            "at steps.0.channel_key: no channel with key 'sms' is configured",
        ),
        (
            {"steps": [{**feed_step(markdown_body="x"), "channel_type": "email"}]},
            {},
            "at steps.0.channel_type: is 'email' but channel 'in-app-feed' is a in_app_feed channel",
        ),
        (
            {"steps": [feed_step(markdown_body="x"), feed_step(markdown_body="y")]},
            {},
            "at steps.1.ref: 'in_app_feed_1' is used by another step; refs must be unique",
        ),
        (
            {"steps": [{"ref": "wait_1", "type": "wait_for_event", "settings": {}}]},
            {},
            "at steps.0.type: 'wait_for_event' steps are not supported by Clarion yet",
        ),
        (
            {
                "steps": [
                    {
                        "ref": "delay_1",
                        "type": "delay",
                        "settings": {"delay_for": {"unit": "years", "value": 1}},
                    }
                ]
            },
            {},
            "at steps.0.settings.delay_for.unit: must be one of seconds, minutes, hours, days, weeks",
        ),
        (
            {
                "steps": [
                    {
                        **feed_step(markdown_body="x"),
                        "conditions": {"all": [{"variable": "data.x", "operator": "bigger", "argument": 1}]},
                    }
                ]
            },
            {},
            "at steps.0.conditions.all.0.operator:",
        ),
        (
            {"key": "other", "steps": []},
            {},
            "at key: is 'other' but the folder is named 'flow'",
        ),
        (
            {"steps": [], "trigger_data_json_schema": {"type": "foo"}},
            {},
            "at trigger_data_json_schema.type: is not a valid JSON schema",
        ),
        (
            {"steps": [], "trigger_data_json_schema": {"properties": {"a": {"pattern": "("}}}},
            {},
            "at trigger_data_json_schema.properties.a.pattern: is not a valid JSON schema",
        ),
    ],
)
def test_problems_name_the_file_and_the_field(
    tmp_path: Path, document: dict[str, Any], files: dict[str, str], expected: str
) -> None:
    folder = write_workflow(tmp_path, "flow", document, files)
    [problem] = problems(tmp_path)
    assert problem.startswith(f"{folder / 'workflow.json'} {expected}"), problem


def test_every_invalid_workflow_is_reported_and_none_is_accepted(tmp_path: Path) -> None:
    write_workflow(tmp_path, "good", {"steps": [feed_step(markdown_body="fine")]})
    write_workflow(tmp_path, "bad-one", {"steps": "no"})
    write_workflow(tmp_path, "bad-two", {"steps": [feed_step()]})
    reported = problems(tmp_path)
    assert len(reported) == 2
    assert "bad-one/workflow.json at steps: must be a list of steps" in reported[0]
    assert "bad-two/workflow.json at steps.0.template.markdown_body: is required" in reported[1]


def test_a_workflow_json_that_is_not_json(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "workflow.json").write_text("{not json", encoding="utf-8")
    [problem] = problems(tmp_path)
    assert problem.startswith(f"{folder / 'workflow.json'}: cannot be read as JSON")

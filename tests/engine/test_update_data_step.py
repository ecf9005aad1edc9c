"""The update data step: rendered settings shallow-merged into the run's data, seen by every later step in the
same pass and after the run waits; a render that fails halts the run; bad settings refused at push."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import parse_workflow
from tests.conftest import EnvFixture, push_workflow, run_workflow_jobs
from tests.engine.test_branch_step import feed, feed_bodies, run_events, trigger

DELAY = {"ref": "wait", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}


def update_data(ref: str, data: Any) -> dict[str, Any]:
    return {"ref": ref, "type": "update_data", "settings": {"data": data}}


async def stored_data(env: EnvFixture, user_id: str) -> dict[str, Any]:
    listed = (await env.get("/v1/workflow_recipient_runs", params={"recipient": user_id})).json()["items"]
    [run] = listed
    stored = await env.runtime.workflow_runs.get(env.id, run["id"])
    assert stored is not None
    return stored.data


async def test_merged_data_is_seen_by_later_steps_now_and_after_a_wait(
    env: EnvFixture, tmp_path: Path
) -> None:
    changes = json.dumps(
        {"full_name": "{{ data.first_name }} {{ data.last_name }}", "metadata": {"computed": True}}
    )
    body = (
        "{{ data.full_name }} from {{ data.metadata.source | default: 'nowhere' }} {{ data.metadata | json }}"
    )
    document = {
        "steps": [update_data("merge", changes), feed("now", body), DELAY, feed("later", body)],
    }
    await push_workflow(env, tmp_path, "merging", document)
    data = {"first_name": "Jane", "last_name": "Doe", "metadata": {"source": "web"}}
    await trigger(env, "merging", [{"id": "jane"}, {"id": "joe"}], data=data)

    await run_workflow_jobs(env.runtime, with_scheduled=False)
    expected = 'Jane Doe from nowhere {"computed": true}'  # nested objects are replaced whole
    assert await feed_bodies(env, "jane") == [expected]
    assert await stored_data(env, "jane") == {**data, "full_name": "Jane Doe", "metadata": {"computed": True}}

    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "jane") == await feed_bodies(env, "joe") == [expected, expected]
    events = await run_events(env, "jane")
    [updated] = [event for event in events if event["event"] == "data_updated"]
    assert (updated["step_ref"], updated["step_type"]) == ("merge", "update_data")
    assert updated["data"] == {"data": {"full_name": "Jane Doe", "metadata": {"computed": True}}}


async def test_each_recipient_merges_its_own_values_and_quotes_cannot_break_the_json(
    env: EnvFixture, tmp_path: Path
) -> None:
    changes = json.dumps({"greeting": 'Hello "{{ recipient.name }}"', "{{ recipient.id }}_seen": True})
    document = {"steps": [update_data("merge", changes), feed("show", "{{ data | json }}")]}
    await push_workflow(env, tmp_path, "quotes", document)
    await trigger(env, "quotes", [{"id": "ann", "name": 'Ann "the" Quote'}, {"id": "ben", "name": "Ben"}])
    await run_workflow_jobs(env.runtime)
    [ann] = await feed_bodies(env, "ann")
    [ben] = await feed_bodies(env, "ben")
    assert json.loads(ann) == {"greeting": 'Hello "Ann "the" Quote"', "ann_seen": True}
    assert json.loads(ben) == {"greeting": 'Hello "Ben"', "ben_seen": True}


async def test_liquid_that_renders_the_whole_document_and_steps_one_after_another(
    env: EnvFixture, tmp_path: Path
) -> None:
    document = {
        "steps": [
            update_data(
                "count", '{"count": {{ data.items | size }}, "first": {{ data.items | first | json }}}'
            ),
            update_data("again", {"count": "{{ data.count | plus: 1 }}", "items": None}),
            feed("show", "{{ data.count }} {{ data.first }} {{ data.items | default: 'none' }}"),
        ]
    }
    await push_workflow(env, tmp_path, "whole", document)
    await trigger(env, "whole", [{"id": "ann"}], data={"items": ["a", "b", "c"]})
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ann") == ["4 a none"]
    assert await stored_data(env, "ann") == {"items": None, "count": "4", "first": "a"}


async def test_conditions_after_the_step_read_the_merged_data(env: EnvFixture, tmp_path: Path) -> None:
    vip = {"all": [{"variable": "data.tier", "operator": "equal_to", "argument": "vip"}]}
    document = {
        "steps": [
            update_data("tier", {"tier": "{% if data.spent > 100 %}vip{% else %}regular{% endif %}"}),
            feed("vip_only", "welcome, vip", conditions=vip),
        ]
    }
    await push_workflow(env, tmp_path, "tiers", document)
    await trigger(
        env, "tiers", [{"id": "big", "$trigger_data": {"spent": 500}}, {"id": "small"}], data={"spent": 5}
    )
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "big") == ["welcome, vip"]
    assert await feed_bodies(env, "small") == []


async def test_a_render_that_is_not_a_json_object_is_retried_then_halts_the_run(
    env: EnvFixture, tmp_path: Path
) -> None:
    document = {"steps": [update_data("broken", '{"a": {{ data.missing }}}'), feed("never", "never")]}
    await push_workflow(env, tmp_path, "broken_data", document)
    await trigger(env, "broken_data", [{"id": "ann"}])
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ann") == []
    events = await run_events(env, "ann")
    assert events[-1]["event"] == "step_failed"
    assert events[-1]["attempt"] == 3
    assert "broken.data" in events[-1]["data"]["error"]
    assert await stored_data(env, "ann") == {}


REFUSED = [
    ({"ref": "u", "type": "update_data"}, "steps.0.settings", "`data`"),
    ({"ref": "u", "type": "update_data", "settings": {}}, "steps.0.settings.data", "required"),
    (update_data("u", "[1, 2]"), "steps.0.settings.data", "JSON object"),
    (update_data("u", 5), "steps.0.settings.data", "JSON object"),
    (update_data("u", '{"a": "{{ data.x "}'), "steps.0.settings.data.a", "not valid Liquid"),
    (update_data("u", {"a": {"b": ["{% if %}"]}}), "steps.0.settings.data.a.b.0", "not valid Liquid"),
    (update_data("u", "{{ data.x "), "steps.0.settings.data", "not valid Liquid"),
    (update_data("u", '{"a": 1}'), None, None),
    (update_data("u", "{{ data.profile | json }}"), None, None),
]


@pytest.mark.parametrize(("step", "field", "message"), REFUSED)
def test_a_push_refuses_bad_settings_naming_the_field(
    step: dict[str, Any], field: str | None, message: str | None
) -> None:
    document = {"key": "updating", "steps": [step]}
    if field is None:
        assert parse_workflow(document, None, TemplateRenderer()).steps
        return
    with pytest.raises(DefinitionError) as refused:
        parse_workflow(document, None, TemplateRenderer())
    assert refused.value.field == field
    assert message is not None and message in refused.value.message

"""The update user, object and tenant steps: upserts deep-merged as identify and set do, seen by later steps
in the same pass and after the run waits, written as if one after another when runs update the same entity,
at a constant number of statements per pass; what each run updated on its run; bad settings refused at
push with the field named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import parse_workflow
from clarion.runtime import Runtime
from tests.conftest import EnvFixture, push_audiences, push_workflow, run_workflow_jobs
from tests.engine.test_branch_step import feed, feed_bodies, run_events, trigger

DELAY = {"ref": "wait", "type": "delay", "settings": {"delay_for": {"unit": "hours", "value": 1}}}


def update(kind: str, ref: str, properties: Any, **settings: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "type": f"update_{kind}",
        "settings": {"update_properties": properties, **settings},
    }


def referring(gid: str) -> dict[str, str]:
    return {"recipient_mode": "reference", "recipient_gid": gid}


async def get_json(env: EnvFixture, path: str) -> dict[str, Any]:
    response = await env.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def events_named(env: EnvFixture, user_id: str, name: str) -> list[dict[str, Any]]:
    return [event for event in await run_events(env, user_id) if event["event"] == name]


async def test_the_current_user_is_deep_merged_and_later_steps_see_it_now_and_after_a_wait(
    env: EnvFixture, tmp_path: Path
) -> None:
    assert (
        await env.put("/v1/users/ada", json={"meta": {"first": "hello", "last": "world"}})
    ).status_code == 200
    body = "{{ recipient.plan }}: {{ recipient.meta.first }} {{ recipient.meta.last }}"
    document = {
        "steps": [
            update("user", "upgrade", json.dumps({"plan": "{{ data.plan }}", "meta": {"last": "knock"}})),
            feed("now", body),
            DELAY,
            feed("later", body),
        ]
    }
    await push_workflow(env, tmp_path, "upgrade", document)
    await trigger(env, "upgrade", [{"id": "ada"}], data={"plan": "pro"})

    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env, "ada") == ["pro: hello knock"]
    user = await get_json(env, "/v1/users/ada")
    assert (user["plan"], user["meta"]) == ("pro", {"first": "hello", "last": "knock"})

    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["pro: hello knock", "pro: hello knock"]
    [updated] = await events_named(env, "ada", "user_updated")
    assert (updated["step_ref"], updated["step_type"]) == ("upgrade", "update_user")
    assert updated["data"] == {"user": "ada", "update": {"plan": "pro", "meta": {"last": "knock"}}}


async def test_the_actor_by_reference_updated_by_every_recipient_in_run_order(
    env: EnvFixture, tmp_path: Path
) -> None:
    assert (await env.put("/v1/users/boss", json={"name": "Boss"})).status_code == 200
    document = {
        "steps": [
            update(
                "user",
                "touch_actor",
                {"last_notified": "{{ recipient.id }}", "notified": {"{{ recipient.id }}": True}},
                **referring("gid://Object/$users/{{ actor.id }}"),
            ),
            feed("show", "{{ actor.name }} last notified {{ actor.last_notified }}"),
        ]
    }
    await push_workflow(env, tmp_path, "touch", document)
    await trigger(env, "touch", [{"id": "ann"}, {"id": "ben"}, {"id": "cy"}], actor="boss")
    await run_workflow_jobs(env.runtime)

    boss = await get_json(env, "/v1/users/boss")
    assert (boss["name"], boss["last_notified"]) == ("Boss", "cy")
    assert boss["notified"] == {"ann": True, "ben": True, "cy": True}
    # The steps after it see the actor as the step left it for every run of the pass.
    for user_id in ("ann", "ben", "cy"):
        assert await feed_bodies(env, user_id) == ["Boss last notified cy"]
    [updated] = await events_named(env, "ben", "user_updated")
    assert updated["data"]["user"] == "boss"


async def test_preferences_set_by_the_step_apply_to_the_next_channel_step(
    env: EnvFixture, tmp_path: Path
) -> None:
    mute = {"preferences": {"default": {"channel_types": {"in_app_feed": False}}}}
    muted = {"all": [{"variable": "data.mute", "operator": "equal_to", "argument": True}]}
    document = {"steps": [{**update("user", "mute", mute), "conditions": muted}, feed("hello", "hello")]}
    await push_workflow(env, tmp_path, "muting", document)
    await trigger(env, "muting", [{"id": "quiet", "$trigger_data": {"mute": True}}, {"id": "loud"}])
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "quiet") == []
    assert await feed_bodies(env, "loud") == ["hello"]
    preferences = await get_json(env, "/v1/users/quiet/preferences/default")
    assert preferences["channel_types"]["in_app_feed"] is False
    [skipped] = await events_named(env, "quiet", "step_skipped")
    assert skipped["data"]["reason"] == "preferences"


async def test_a_user_updated_into_a_dynamic_audience_enters_it_as_on_identify(
    env: EnvFixture, tmp_path: Path
) -> None:
    premium = {
        "name": "Premium",
        "type": "dynamic",
        "segments": [
            {"conditions": [{"property": "recipient.plan", "operator": "equal_to", "argument": "premium"}]}
        ],
    }
    await push_audiences(env, tmp_path, {"premium": premium})
    welcome = {
        "trigger": {"type": "audience", "audience_key": "premium"},
        "steps": [feed("welcome", "welcome to premium")],
    }
    await push_workflow(env, tmp_path, "welcome", welcome)
    member = {"all": [{"variable": "recipient", "operator": "is_audience_member", "argument": "premium"}]}
    upgrade = {
        "steps": [
            update("user", "upgrade", {"plan": "premium"}),
            feed("perks", "your perks", conditions=member),
        ]
    }
    await push_workflow(env, tmp_path, "upgrade", upgrade)
    await trigger(env, "upgrade", [{"id": "ann", "plan": "free"}])
    await run_workflow_jobs(env.runtime)
    assert sorted(await feed_bodies(env, "ann")) == ["welcome to premium", "your perks"]
    [entry] = (await env.get("/v1/audiences/premium/members")).json()["entries"]
    assert entry["user_id"] == "ann"


async def test_recipients_of_one_trigger_update_one_object_as_if_one_after_another(
    env: EnvFixture, tmp_path: Path
) -> None:
    setup = {"visits": {"old": True}, "shape": {"old": True}}
    assert (await env.put("/v1/objects/projects/apollo", json=setup)).status_code == 200
    gid = "gid://Object/projects/{{ data.project }}"
    document = {
        "steps": [
            update(
                "object",
                "visit",
                {"visits": {"{{ recipient.id }}": True}, "last": "{{ recipient.id }}"},
                recipient_gid=gid,
            ),
            # Each recipient's own value, rendered whole: ann sets a number, ben then an object in its
            # place, which must replace the number rather than merge into what the object held before.
            update("object", "shape", '{"shape": {{ data.shape | json }}}', recipient_gid=gid),
        ]
    }
    await push_workflow(env, tmp_path, "visiting", document)
    recipients = [
        {"id": "ann", "$trigger_data": {"shape": 1}},
        {"id": "ben", "$trigger_data": {"shape": {"new": True}}},
        {"id": "cy", "$trigger_data": {"shape": {"newer": True}}},
    ]
    await trigger(env, "visiting", recipients, data={"project": "apollo"})
    await run_workflow_jobs(env.runtime)

    stored = await get_json(env, "/v1/objects/projects/apollo")
    properties = stored["properties"]
    assert properties["visits"] == {"old": True, "ann": True, "ben": True, "cy": True}
    assert properties["last"] == "cy"
    assert properties["shape"] == {"new": True, "newer": True}
    [updated, _] = await events_named(env, "ben", "object_updated")
    assert updated["data"] == {
        "object": {"collection": "projects", "id": "apollo"},
        "update": {"visits": {"ben": True}, "last": "ben"},
    }


async def test_an_object_recipient_updated_is_seen_by_its_later_steps_and_created_when_missing(
    env: EnvFixture, tmp_path: Path
) -> None:
    document = {
        "steps": [
            update(
                "object",
                "stamp",
                {"stamped": "yes"},
                recipient_gid="gid://Object/{{ recipient.collection }}/{{ recipient.id }}",
            ),
            update(
                "object",
                "log",
                {"entries": {"{{ recipient.id }}": "{{ recipient.stamped }}"}},
                recipient_gid="gid://Object/logs/{{ data.log }}",
            ),
        ]
    }
    await push_workflow(env, tmp_path, "stamping", document)
    recipients = [{"id": "r1", "collection": "rooms", "name": "One"}]
    await trigger(env, "stamping", recipients, data={"log": "new-log"})
    await run_workflow_jobs(env.runtime)
    assert (await get_json(env, "/v1/objects/rooms/r1"))["properties"] == {"name": "One", "stamped": "yes"}
    assert (await get_json(env, "/v1/objects/logs/new-log"))["properties"] == {"entries": {"r1": "yes"}}


async def test_the_run_tenant_is_updated_and_seen_now_and_after_a_wait(
    env: EnvFixture, tmp_path: Path
) -> None:
    assert (await env.put("/v1/tenants/acme", json={"name": "Acme", "region": "eu"})).status_code == 200
    properties = {
        "name": "{{ tenant.name }} Corp",
        "plan": "{{ data.plan }}",
        "settings": {"preference_set": {"channel_types": {"email": False}}},
    }
    body = "{{ tenant.name }} on {{ tenant.plan }} in {{ tenant.region }}"
    document = {
        "steps": [update("tenant", "upgrade", properties), feed("now", body), DELAY, feed("later", body)]
    }
    await push_workflow(env, tmp_path, "tenant_upgrade", document)
    await trigger(env, "tenant_upgrade", [{"id": "ada"}], data={"plan": "gold"}, tenant="acme")
    await trigger(env, "tenant_upgrade", [{"id": "bob"}], data={"plan": "gold"})

    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env, "ada") == ["Acme Corp on gold in eu"]
    tenant = await get_json(env, "/v1/tenants/acme")
    assert (tenant["name"], tenant["plan"], tenant["region"]) == ("Acme Corp", "gold", "eu")
    assert tenant["settings"]["preference_set"]["channel_types"] == {"email": False}
    assert await feed_bodies(env, "bob") == [" on  in "]
    [skipped] = await events_named(env, "bob", "step_skipped")
    assert skipped["data"]["reason"] == "no_tenant"

    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env, "ada") == ["Acme Corp on gold in eu", "Acme Corp on gold in eu"]
    [updated] = await events_named(env, "ada", "tenant_updated")
    assert updated["data"]["tenant"] == "acme"


async def test_a_tenant_by_reference_is_created(env: EnvFixture, tmp_path: Path) -> None:
    document = {
        "steps": [update("tenant", "org", {"name": "Org {{ data.org }}"}, **referring("{{ data.org }}"))]
    }
    await push_workflow(env, tmp_path, "orgs", document)
    await trigger(env, "orgs", [{"id": "ada"}], data={"org": "initech"})
    await run_workflow_jobs(env.runtime)
    assert (await get_json(env, "/v1/tenants/initech"))["name"] == "Org initech"


async def test_targets_a_run_lacks_skip_and_bad_ones_fail_the_step(env: EnvFixture, tmp_path: Path) -> None:
    document = {
        "steps": [
            update("user", "me", {"seen": True}),
            update("user", "other", {"seen": True}, **referring("{{ data.other }}")),
            update("object", "wrong", {"seen": True}, recipient_gid="gid://Object/{{ data.collection }}/x"),
        ]
    }
    await push_workflow(env, tmp_path, "targets", document)
    await trigger(
        env, "targets", [{"id": "room", "collection": "rooms", "name": "Room"}], data={"collection": "$users"}
    )
    await run_workflow_jobs(env.runtime)
    listed = (await env.get("/v1/workflow_recipient_runs", params={"workflow": "targets"})).json()["items"]
    [run] = listed
    events = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()["events"]
    skipped = [(e["step_ref"], e["data"]["reason"]) for e in events if e["event"] == "step_skipped"]
    assert skipped == [("me", "recipient_not_a_user"), ("other", "recipient_gid_empty")]
    assert events[-1]["event"] == "step_failed"
    assert "wrong.recipient_gid" in events[-1]["data"]["error"]
    assert "reserved" in events[-1]["data"]["error"]


@contextmanager
def counted_statements(runtime: Runtime) -> Iterator[list[str]]:
    """The statements the database's writer sends while the block runs."""
    sent: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = runtime.database.writer.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize(
    "step",
    [
        update("user", "stamp", {"stamped": "{{ data.when }}", "by": "{{ recipient.id }}"}),
        update(
            "object",
            "count",
            {"seen_by": {"{{ recipient.id }}": True}},
            recipient_gid="gid://Object/boards/b1",
        ),
        update("tenant", "stamp", {"stamped": "{{ data.when }}"}),
    ],
    ids=["update_user", "update_object", "update_tenant"],
)
async def test_a_fan_out_updates_at_a_constant_number_of_statements(
    env: EnvFixture, tmp_path: Path, step: dict[str, Any]
) -> None:
    await push_workflow(
        env, tmp_path, "stamping", {"steps": [step, feed("after", "{{ recipient.stamped }}")]}
    )
    counts = []
    # The first trigger fills the process's caches (the environment's audience rules, say).
    for size in (1, 20, 200):
        users = [{"id": f"u{size}-{n}"} for n in range(size)]
        await trigger(env, "stamping", users, data={"when": "today"}, tenant="acme")
        with counted_statements(env.runtime) as sent:
            await run_workflow_jobs(env.runtime)
        counts.append(len(sent))
    assert counts[1] == counts[2], counts
    user = await get_json(env, "/v1/users/u200-199")
    if step["type"] == "update_user":
        assert (user["stamped"], user["by"]) == ("today", "u200-199")
        assert await feed_bodies(env, "u200-199") == ["today"]
    elif step["type"] == "update_object":
        board = await get_json(env, "/v1/objects/boards/b1")
        assert len(board["properties"]["seen_by"]) == 221
    else:
        assert (await get_json(env, "/v1/tenants/acme"))["stamped"] == "today"


def pushed(step: dict[str, Any]) -> None:
    parse_workflow({"key": "updating", "steps": [step]}, None, TemplateRenderer())


REFUSED = [
    ({"ref": "u", "type": "update_user"}, "steps.0.settings", "update_properties"),
    (update("user", "u", None), "steps.0.settings.update_properties", "required"),
    (
        update("user", "u", {}, recipient_mode="other"),
        "steps.0.settings.recipient_mode",
        "current, reference",
    ),
    (update("user", "u", {}, recipient_mode="reference"), "steps.0.settings.recipient_gid", "required"),
    (
        update("user", "u", {}, **referring("gid://Object/$tenants/t")),
        "steps.0.settings.recipient_gid",
        "$users",
    ),
    (
        update("user", "u", {}, **referring("gid://Object/$users/")),
        "steps.0.settings.recipient_gid",
        "gid://",
    ),
    (update("user", "u", {}, **referring("{{ actor.id")), "steps.0.settings.recipient_gid", "Liquid"),
    (update("user", "u", {"email": 5}), "steps.0.settings.update_properties.email", "string"),
    (update("user", "u", '{"name": "{{ data.x "}'), "steps.0.settings.update_properties.name", "Liquid"),
    (
        update("user", "u", {"channel_data": {"x": {}}}),
        "steps.0.settings.update_properties.channel_data",
        "cannot be set",
    ),
    (
        update("user", "u", {"channel_data": "{{ data.x }}"}),
        "steps.0.settings.update_properties.channel_data",
        "cannot be set",
    ),
    (
        update("user", "u", {"preferences": {"default": 5}}),
        "steps.0.settings.update_properties.preferences",
        "",
    ),
    (update("user", "u", "[1]"), "steps.0.settings.update_properties", "JSON object"),
    (update("object", "u", {}), "steps.0.settings.recipient_gid", "required"),
    (update("object", "u", {}, recipient_gid="projects/1"), "steps.0.settings.recipient_gid", "gid://"),
    (
        update("object", "u", {}, recipient_gid="gid://Object/$users/1"),
        "steps.0.settings.recipient_gid",
        "reserved",
    ),
    (
        update("object", "u", {}, recipient_gid="gid://Object/a b/1"),
        "steps.0.settings.recipient_gid",
        "letters",
    ),
    (
        update("tenant", "u", {"settings": {"preference_set": 5}}),
        "steps.0.settings.update_properties.settings.preference_set",
        "",
    ),
    (
        update("tenant", "u", {}, **referring("gid://Object/rooms/1")),
        "steps.0.settings.recipient_gid",
        "$tenants",
    ),
    (update("user", "u", {"a": 1}, **referring("gid://Object/$users/{{ actor.id }}")), None, None),
    (update("user", "u", "{{ data.profile | json }}"), None, None),
    (update("object", "u", {"a": 1}, recipient_gid="gid://Object/projects/{{ data.id }}"), None, None),
    (update("tenant", "u", {"settings": {"preference_set": {"categories": {"x": False}}}}), None, None),
    (update("tenant", "u", {"a": 1}, **referring("acme")), None, None),
]


@pytest.mark.parametrize(("step", "field", "message"), REFUSED)
def test_a_push_refuses_bad_settings_naming_the_field(
    step: dict[str, Any], field: str | None, message: str | None
) -> None:
    if field is None:
        pushed(step)
        return
    with pytest.raises(DefinitionError) as refused:
        pushed(step)
    assert refused.value.field.startswith(field), refused.value
    assert message is not None and message in refused.value.message

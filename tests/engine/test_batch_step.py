"""The batch step under a clock the test moves: runs for one recipient (and batch key) within a window
become one message rendering every activity; fixed and sliding windows, the items limit, batch order and
render limit, flush_leading; the runs that joined end there and say so; every activity pages through the
message's activities; racing triggers make one batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from clarion.api.body import parse_json
from clarion.engine.trigger import accept_trigger
from clarion.engine.workflow_files import WorkflowFilesError
from clarion.schemas.workflows import TriggerWorkflowRequest
from tests.conftest import EngineClock, EnvFixture, feed_channel_id, push_workflow, run_workflow_jobs

TEMPLATE = (
    "{{ total_activities }}|{{ total_actors }}|"
    "{% for activity in activities %}{{ activity.actor.id }}:{{ activity.comment }},{% endfor %}|"
    "{% for actor in actors %}{{ actor.name }},{% endfor %}|{{ data.comment }}"
)
HOUR = {"batch_window": {"unit": "hours", "value": 1}}


def batched(template: str = TEMPLATE, **settings: Any) -> dict[str, Any]:
    return {
        "steps": [
            {"ref": "gather", "type": "batch", "settings": settings or HOUR},
            {
                "ref": "feed",
                "type": "channel",
                "channel_key": "in-app-feed",
                "template": {"markdown_body": template},
            },
        ]
    }


async def comment(env: EnvFixture, actor: str, text: str, user_id: str = "ada", **data: Any) -> None:
    response = await env.post(
        "/v1/workflows/comments/trigger",
        json={"recipients": [user_id], "actor": actor, "data": {"comment": text, **data}},
    )
    assert response.status_code == 200, response.text


async def feed_bodies(env: EnvFixture, user_id: str = "ada") -> list[str]:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
    return [entry["blocks"][0]["content"] for entry in reversed(response.json()["entries"])]


async def run_details(env: EnvFixture) -> list[dict[str, Any]]:
    listed = await env.get("/v1/workflow_recipient_runs", params={"workflow": "comments", "page_size": 50})
    return [
        (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
        for run in reversed(listed.json()["items"])
    ]


@pytest.fixture
async def people(env: EnvFixture) -> None:
    for user_id, name in [("ada", "Ada"), ("bob", "Bob"), ("cy", "Cy"), ("dee", "Dee")]:
        assert (await env.put(f"/v1/users/{user_id}", json={"name": name})).status_code == 200


async def test_runs_in_a_window_become_one_message_with_every_activity(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    await push_workflow(env, tmp_path, "comments", batched())
    for actor, text in [("bob", "first"), ("cy", "second"), ("bob", "third")]:
        await comment(env, actor, text)
        await run_workflow_jobs(env.runtime, with_scheduled=False)
        engine_clock.advance(minutes=10)
    assert await feed_bodies(env) == []  # the window is still open

    engine_clock.advance(minutes=31)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["3|2|bob:first,cy:second,bob:third,|Bob,Cy,|third"]

    carrier, *joined = await run_details(env)
    assert carrier["status"] == "completed"
    events = [event["event"] for event in carrier["events"]]
    assert events == ["run_started", "batch_opened", "batch_flushed", "message_created", "run_completed"]
    for run in joined:
        [joining] = [event for event in run["events"] if event["event"] == "batch_joined"]
        assert joining["data"]["carried_by"] == carrier["id"]
        assert run["events"][-1]["data"] == {"reason": "batched"}

    [message] = (await env.get("/v1/users/ada/messages")).json()["items"]
    activities = (await env.get(f"/v1/messages/{message['id']}/activities")).json()["items"]
    assert [activity["data"]["comment"] for activity in activities] == ["first", "second", "third"]
    assert sorted(message["actors"]) == ["bob", "cy"]


async def test_the_feed_item_counts_every_activity_and_actor_of_the_batch(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    await push_workflow(env, tmp_path, "comments", batched("x", **HOUR, batch_items_render_limit=2))
    for actor in ["bob", "cy", "dee", "bob", "cy"]:
        await comment(env, actor, "x")
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    response = await env.get(f"/v1/users/ada/feeds/{feed_channel_id(env.runtime)}")
    [item] = response.json()["entries"]
    assert (item["total_activities"], item["total_actors"]) == (5, 3)
    assert len(item["activities"]) == 2 and len(item["actors"]) == 2


async def test_a_batch_key_keeps_batches_apart(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    document = batched("{{ data.page }}: {{ total_activities }}", **HOUR, batch_key="data.page")
    await push_workflow(env, tmp_path, "comments", document)
    for page in ["a", "b", "a", "a", "b"]:
        await comment(env, "bob", "x", page=page)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert sorted(await feed_bodies(env)) == ["a: 3", "b: 2"]


async def test_the_items_limit_closes_the_batch_at_once(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    await push_workflow(
        env, tmp_path, "comments", batched("{{ total_activities }}", **HOUR, batch_items_max_limit=3)
    )
    for text in ["1", "2", "3", "4"]:
        await comment(env, "bob", text)
        await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["3"]  # the full batch flushed without waiting; a new one is open
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["3", "1"]


async def test_a_sliding_window_moves_with_each_activity_up_to_its_cap(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    settings = {
        "batch_window": {"unit": "minutes", "value": 10},
        "batch_window_type": "sliding",
        "batch_window_extension_limit": {"unit": "minutes", "value": 25},
    }
    await push_workflow(env, tmp_path, "comments", batched("{{ total_activities }}", **settings))
    for _ in range(3):  # at 0, 8 and 16 minutes: the close moves to 18, then 26 capped at 25
        await comment(env, "bob", "x")
        await run_workflow_jobs(env.runtime, with_scheduled=False)
        engine_clock.advance(minutes=8)
    engine_clock.advance(minutes=-4)  # 20 minutes: past the first close, before the moved one
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == []
    engine_clock.advance(minutes=6)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["3"]
    carrier = (await run_details(env))[0]
    assert "batch_extended" in [event["event"] for event in carrier["events"]]


async def test_order_and_render_limit_choose_the_activities_rendered(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    template = "{{ total_activities }}|{% for activity in activities %}{{ activity.comment }}{% endfor %}"
    document = batched(template, **HOUR, batch_order="desc", batch_items_render_limit=2)
    await push_workflow(env, tmp_path, "comments", document)
    for text in "abcde":
        await comment(env, "bob", text)
        engine_clock.advance(seconds=1)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["5|de"]


async def test_flush_leading_sends_the_first_at_once_and_batches_the_rest(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    template = "{{ total_activities }}:{% for activity in activities %}{{ activity.comment }}{% endfor %}"
    await push_workflow(
        env, tmp_path, "comments", batched(template, **HOUR, batch_execution_mode="flush_leading")
    )
    for text in "abc":
        await comment(env, "bob", text)
        await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["1:a"]
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["1:a", "2:bc"]


async def test_a_dynamic_window_that_cannot_be_read_skips_the_step(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    await push_workflow(
        env, tmp_path, "comments", batched("{{ total_activities }}", batch_until_field_path="data.until")
    )
    await comment(env, "bob", "x", until="whenever")
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["1"]
    [run] = await run_details(env)
    skipped = [event["data"]["reason"] for event in run["events"] if event["event"] == "step_skipped"]
    assert skipped == ["invalid_batch_window"]


async def test_runs_that_were_not_batched_see_their_own_activity(
    env: EnvFixture, tmp_path: Path, people: None
) -> None:
    template = (
        "{{ total_activities }}|{{ total_actors }}|{{ activities.size }}|{{ actors.size }}|{{ actors[0].id }}"
    )
    document = {"steps": batched(template)["steps"][1:]}
    await push_workflow(env, tmp_path, "comments", document)
    await comment(env, "bob", "x")
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env) == ["1|1|1|1|bob"]


async def test_racing_triggers_make_one_batch_and_one_message(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    await push_workflow(env, tmp_path, "comments", batched("{{ total_activities }}"))
    for n in range(20):
        await comment(env, "bob", str(n))
    await asyncio.gather(*(run_workflow_jobs(env.runtime, with_scheduled=False) for _ in range(4)))
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["20"]


async def test_a_cancel_takes_activities_out_of_an_open_batch(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    template = "{{ total_activities }}:{% for activity in activities %}{{ activity.comment }}{% endfor %}"
    await push_workflow(env, tmp_path, "comments", batched(template))
    for text in "abc":
        response = await env.post(
            "/v1/workflows/comments/trigger",
            json={"recipients": ["ada"], "actor": "bob", "data": {"comment": text}, "cancellation_key": text},
        )
        assert response.status_code == 200, response.text
        await run_workflow_jobs(env.runtime, with_scheduled=False)
    # "b" joined the batch; "a" carries it: its own activity leaves, but it goes on carrying the others.
    for key in "ab":
        cancelled = await env.post("/v1/workflows/comments/cancel", json={"cancellation_key": key})
        assert cancelled.status_code == 204, cancelled.text
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == ["1:c"]


async def test_a_batch_whose_activities_were_all_cancelled_sends_nothing(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    await push_workflow(env, tmp_path, "comments", batched("{{ total_activities }}"))
    body = {"recipients": ["ada"], "actor": "bob", "data": {"comment": "x"}, "cancellation_key": "post-1"}
    for _ in range(2):
        assert (await env.post("/v1/workflows/comments/trigger", json=body)).status_code == 200
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert (
        await env.post("/v1/workflows/comments/cancel", json={"cancellation_key": "post-1"})
    ).status_code == 204
    engine_clock.advance(hours=2)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == []
    carrier = (await run_details(env))[0]
    assert carrier["events"][-1]["data"] == {"reason": "batch_empty"}


@pytest.mark.slow  # each trigger is a job and a transaction of its own: 10,000 take the worker minutes
async def test_ten_thousand_triggers_into_one_window_make_one_message(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, people: None
) -> None:
    await push_workflow(env, tmp_path, "comments", batched("{{ total_activities }}"))
    # The API's own intake (checks, then the group-committed enqueue) without HTTP, 64 at a time as from a
    # client's connections: the requests are not what is tested, and 10,000 of them would take seconds.
    in_flight = asyncio.Semaphore(64)

    async def trigger(n: int) -> None:
        body_json = orjson.dumps({"recipients": ["ada"], "actor": "bob", "data": {"comment": str(n)}})
        async with in_flight:
            await accept_trigger(
                env.runtime, env.id, "comments", parse_json(body_json, TriggerWorkflowRequest), body_json
            )

    await asyncio.gather(*(trigger(n) for n in range(10_000)))
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await feed_bodies(env) == []
    engine_clock.advance(hours=1)
    await run_workflow_jobs(env.runtime, with_scheduled=False)

    assert await feed_bodies(env) == ["10000"]
    [message] = (await env.get("/v1/users/ada/messages")).json()["items"]
    comments: list[str] = []
    params: dict[str, Any] = {"page_size": 50}
    while True:
        page = (await env.get(f"/v1/messages/{message['id']}/activities", params=params)).json()
        comments += [activity["data"]["comment"] for activity in page["items"]]
        if page["page_info"]["after"] is None:
            break
        params["after"] = page["page_info"]["after"]
    assert sorted(comments, key=int) == [str(n) for n in range(10_000)]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({}, "steps.0.settings"),
        ({"batch_window": {"unit": "days", "value": 400}}, "steps.0.settings.batch_window"),
        ({**HOUR, "batch_items_max_limit": 1}, "steps.0.settings.batch_items_max_limit"),
        ({**HOUR, "batch_window_type": "sliding"}, "steps.0.settings"),
        ({**HOUR, "batch_order": "random"}, "steps.0.settings.batch_order"),
    ],
)
async def test_a_push_refuses_bad_settings_naming_the_field(
    env: EnvFixture, tmp_path: Path, settings: dict[str, Any], field: str
) -> None:
    document = batched()
    document["steps"][0]["settings"] = settings
    with pytest.raises(WorkflowFilesError) as refused:
        await push_workflow(env, tmp_path, "comments", document)
    assert f"{field}" in str(refused.value)

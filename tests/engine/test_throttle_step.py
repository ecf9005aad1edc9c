"""The throttle step: at most `throttle_limit` runs pass per recipient (and throttle key) in a window the
first passing run opens; the others halt, the reason on the run. Windows fixed or read from the run,
under a clock the test moves; racing triggers never pass more than the limit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from clarion.engine.workflow_files import WorkflowFilesError
from tests.conftest import EngineClock, EnvFixture, feed_channel_id, push_workflow, run_workflow_jobs

FEED = {
    "ref": "feed",
    "type": "channel",
    "channel_key": "in-app-feed",
    "template": {"markdown_body": "alert"},
}


def throttled(**settings: Any) -> dict[str, Any]:
    return {"steps": [{"ref": "gate", "type": "throttle", "settings": settings}, FEED]}


HOURLY = {"throttle_window": {"unit": "hours", "value": 1}}


async def trigger(env: EnvFixture, user_id: str = "ada", **data: Any) -> None:
    response = await env.post("/v1/workflows/alerts/trigger", json={"recipients": [user_id], "data": data})
    assert response.status_code == 200, response.text


async def delivered(env: EnvFixture, user_id: str = "ada") -> int:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
    return len(response.json()["entries"])


async def runs(env: EnvFixture, user_id: str = "ada") -> list[dict[str, Any]]:
    listed = await env.get("/v1/workflow_recipient_runs", params={"recipient": user_id, "workflow": "alerts"})
    details = []
    for run in listed.json()["items"]:
        details.append((await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json())
    return details


@pytest.fixture
async def users(env: EnvFixture) -> None:
    for user_id in ("ada", "bob"):
        assert (await env.put(f"/v1/users/{user_id}", json={})).status_code == 200


async def test_the_limit_holds_within_a_window_and_the_next_window_opens_again(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, users: None
) -> None:
    await push_workflow(env, tmp_path, "alerts", throttled(**HOURLY, throttle_limit=2))
    for _ in range(3):
        await trigger(env)
        await run_workflow_jobs(env.runtime)
        engine_clock.advance(minutes=10)
    await trigger(env, "bob")
    await run_workflow_jobs(env.runtime)
    assert (await delivered(env), await delivered(env, "bob")) == (2, 1)
    halted = [run for run in await runs(env) if any(e["event"] == "run_throttled" for e in run["events"])]
    [run] = halted
    assert run["status"] == "completed"
    throttle_event = next(e for e in run["events"] if e["event"] == "run_throttled")
    assert throttle_event["data"]["count"] == 2 and throttle_event["data"]["limit"] == 2
    assert run["events"][-1] == {**run["events"][-1], "event": "run_ended", "data": {"reason": "throttled"}}

    engine_clock.advance(minutes=31)  # 61 minutes after the window opened
    await trigger(env)
    await run_workflow_jobs(env.runtime)
    assert await delivered(env) == 3


async def test_a_throttle_key_splits_the_recipients_throttle(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, users: None
) -> None:
    await push_workflow(env, tmp_path, "alerts", throttled(**HOURLY, throttle_key="data.alert_id"))
    for alert in ["disk", "cpu", "disk", "cpu", "mem"]:
        await trigger(env, alert_id=alert)
    await run_workflow_jobs(env.runtime)
    assert await delivered(env) == 3


async def test_a_dynamic_window_comes_from_the_run_and_an_invalid_one_skips_the_step(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, users: None
) -> None:
    await push_workflow(env, tmp_path, "alerts", throttled(throttle_window_field_path="data.quiet_for"))
    quiet = {"unit": "minutes", "value": 30}
    await trigger(env, quiet_for=quiet)
    await trigger(env, quiet_for=quiet)
    await run_workflow_jobs(env.runtime)
    assert await delivered(env) == 1
    engine_clock.advance(minutes=31)
    await trigger(env, quiet_for=quiet)
    await run_workflow_jobs(env.runtime)
    assert await delivered(env) == 2

    await trigger(env, quiet_for="soon")  # not a window: the throttle is skipped, the alert sent
    await run_workflow_jobs(env.runtime)
    assert await delivered(env) == 3
    skipped = [
        e["data"]["reason"] for run in await runs(env) for e in run["events"] if e["event"] == "step_skipped"
    ]
    assert skipped == ["invalid_throttle_window"]


async def test_racing_triggers_never_pass_more_than_the_limit(
    env: EnvFixture, tmp_path: Path, users: None
) -> None:
    await push_workflow(env, tmp_path, "alerts", throttled(**HOURLY, throttle_limit=3))
    for _ in range(12):
        await trigger(env)
    await asyncio.gather(*(run_workflow_jobs(env.runtime) for _ in range(4)))
    assert await delivered(env) == 3
    assert len(await runs(env)) == 12


async def test_a_throttle_after_a_delay_counts_when_the_run_reaches_it(
    env: EnvFixture, tmp_path: Path, engine_clock: EngineClock, users: None
) -> None:
    delay = {"ref": "wait", "type": "delay", "settings": {"delay_for": {"unit": "minutes", "value": 5}}}
    document = throttled(**HOURLY)
    document["steps"].insert(0, delay)
    await push_workflow(env, tmp_path, "alerts", document)
    await trigger(env)
    await trigger(env)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert await delivered(env) == 0
    await run_workflow_jobs(env.runtime)
    assert await delivered(env) == 1


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({}, "steps.0.settings"),
        ({"throttle_window": {"unit": "days", "value": 32}}, "steps.0.settings.throttle_window"),
        ({**HOURLY, "throttle_limit": 0}, "steps.0.settings.throttle_limit"),
        ({**HOURLY, "throttle_window_field_path": "data.x"}, "steps.0.settings"),
        ({**HOURLY, "throttle_windw": 1}, "steps.0.settings.throttle_windw"),
    ],
)
async def test_a_push_refuses_bad_settings_naming_the_field(
    env: EnvFixture, tmp_path: Path, settings: dict[str, Any], field: str
) -> None:
    with pytest.raises(WorkflowFilesError) as refused:
        await push_workflow(env, tmp_path, "alerts", throttled(**settings))
    assert f"{field}:" in str(refused.value)

"""Trigger frequency: a workflow set to run once per recipient starts one run per recipient, ever (per
tenant too with `once_per_recipient_per_tenant`); later triggers start none for them, racing triggers
included, while other recipients of the same trigger get theirs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EnvFixture, feed_channel_id, push_workflow, run_workflow_jobs


def welcome(frequency: str) -> dict[str, Any]:
    return {
        "trigger_frequency": frequency,
        "steps": [
            {
                "ref": "in_app_feed_1",
                "type": "channel",
                "channel_key": "in-app-feed",
                "template": {"markdown_body": "Welcome{% if tenant %} to {{ tenant.id }}{% endif %}"},
            }
        ],
    }


async def trigger(env: EnvFixture, recipients: list[str], **body: Any) -> None:
    response = await env.post("/v1/workflows/welcome/trigger", json={"recipients": recipients, **body})
    assert response.status_code == 200, response.text


async def bodies(env: EnvFixture, user_id: str) -> list[str]:
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
    assert response.status_code == 200, response.text
    return sorted(entry["blocks"][0]["content"] for entry in response.json()["entries"])


async def run_count(env: EnvFixture, user_id: str) -> int:
    response = await env.get(
        "/v1/workflow_recipient_runs", params={"recipient": user_id, "workflow": "welcome"}
    )
    return len(response.json()["items"])


async def identify(env: EnvFixture, *user_ids: str) -> None:
    for user_id in user_ids:
        assert (await env.put(f"/v1/users/{user_id}", json={})).status_code == 200


async def test_once_per_recipient_runs_each_recipient_once(env: EnvFixture, tmp_path: Path) -> None:
    await identify(env, "ada", "bob")
    await push_workflow(env, tmp_path, "welcome", welcome("once_per_recipient"))
    await trigger(env, ["ada"])
    await run_workflow_jobs(env.runtime)
    await trigger(env, ["ada", "bob"], tenant="acme")
    await run_workflow_jobs(env.runtime)
    assert await bodies(env, "ada") == ["Welcome"]
    assert await bodies(env, "bob") == ["Welcome to acme"]
    assert (await run_count(env, "ada"), await run_count(env, "bob")) == (1, 1)


async def test_once_per_recipient_per_tenant_runs_once_per_tenant(env: EnvFixture, tmp_path: Path) -> None:
    await identify(env, "ada")
    await push_workflow(env, tmp_path, "welcome", welcome("once_per_recipient_per_tenant"))
    for tenant in ["acme", "globex", "acme", None, None]:
        await trigger(env, ["ada"], **({} if tenant is None else {"tenant": tenant}))
        await run_workflow_jobs(env.runtime)
    assert await bodies(env, "ada") == ["Welcome", "Welcome to acme", "Welcome to globex"]
    assert await run_count(env, "ada") == 3


async def test_every_trigger_runs_every_time(env: EnvFixture, tmp_path: Path) -> None:
    await identify(env, "ada")
    await push_workflow(env, tmp_path, "welcome", welcome("every_trigger"))
    for _ in range(2):
        await trigger(env, ["ada"])
    await run_workflow_jobs(env.runtime)
    assert await bodies(env, "ada") == ["Welcome", "Welcome"]


async def test_racing_triggers_start_one_run(env: EnvFixture, tmp_path: Path, store: str) -> None:
    await identify(env, "ada")
    await push_workflow(env, tmp_path, "welcome", welcome("once_per_recipient"))
    for _ in range(6):
        await trigger(env, ["ada"])
    # Several workers take the six trigger jobs at once (on SQLite their transactions queue).
    await asyncio.gather(*(run_workflow_jobs(env.runtime) for _ in range(3)))
    assert await bodies(env, "ada") == ["Welcome"]
    assert await run_count(env, "ada") == 1


async def test_the_frequency_holds_across_versions_of_the_workflow(env: EnvFixture, tmp_path: Path) -> None:
    await identify(env, "ada")
    await push_workflow(env, tmp_path, "welcome", welcome("once_per_recipient"))
    await trigger(env, ["ada"])
    await run_workflow_jobs(env.runtime)
    changed = welcome("once_per_recipient")
    changed["steps"][0]["template"]["markdown_body"] = "Welcome again"
    await push_workflow(env, tmp_path, "welcome", changed)
    await trigger(env, ["ada"])
    await run_workflow_jobs(env.runtime)
    assert await bodies(env, "ada") == ["Welcome"]


@pytest.mark.parametrize("frequency", ["sometimes", 3])
async def test_an_unknown_frequency_is_refused_at_push(
    env: EnvFixture, tmp_path: Path, frequency: Any
) -> None:
    with pytest.raises(Exception, match="trigger_frequency"):
        await push_workflow(env, tmp_path, "welcome", welcome(frequency))

"""Pushing audience files to environments: commits, type changes refused, and the members of dynamic
audiences computed over the users already there, at push and again by the job that follows it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clarion.engine.audience_catalog import LATE_WRITE_SECONDS, RECOMPUTE_JOB, USERS_PER_TRANSACTION
from clarion.engine.audience_files import AudienceFilesError, read_audiences
from clarion.jobs.job import DEFAULT_QUEUE, JobState
from clarion.runtime import build_worker
from clarion.store.audiences import AudienceType
from clarion.store.clock import utcnow
from clarion.store.recipients import InlineRecipientData
from clarion.store.tables import audience_members, jobs
from clarion.store.users import UserStore
from tests.conftest import EnvFixture, assert_error, write_audience


def premium(plan: str = "premium") -> dict[str, Any]:
    conditions = [{"property": "recipient.plan", "operator": "equal_to", "argument": plan}]
    return {"name": "Premium", "type": "dynamic", "segments": [{"conditions": conditions}]}


async def members(env: EnvFixture, key: str) -> list[str]:
    response = await env.get(f"/v1/audiences/{key}/members", params={"page_size": 50})
    assert response.status_code == 200, response.text
    return sorted(entry["user_id"] for entry in response.json()["entries"])


async def recompute_jobs(env: EnvFixture) -> list[Any]:
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(sa.select(jobs).where(jobs.c.kind == RECOMPUTE_JOB))
        return [row for row in rows if row.args["environment_id"] == env.id]


async def test_push_commits_changed_audiences_and_leaves_the_rest(env: EnvFixture, tmp_path: Path) -> None:
    write_audience(tmp_path, "beta", {"name": "Beta", "type": "static"})
    write_audience(tmp_path, "premium", premium())
    catalog = env.runtime.audience_catalog
    first = await catalog.push([env.id], read_audiences(tmp_path))
    assert [(c.key, c.type, c.changed) for c in first[env.id]] == [
        ("beta", AudienceType.STATIC, True),
        ("premium", AudienceType.DYNAMIC, True),
    ]
    # A static audience declared in a file takes members without `create_audience`.
    add = {"members": [{"user": {"id": "ann", "plan": "premium"}}]}
    assert (await env.post("/v1/audiences/beta/members", json=add)).status_code == 204
    assert await members(env, "premium") == ["ann"]

    again = await catalog.push([env.id], read_audiences(tmp_path))
    assert [c.changed for c in again[env.id]] == [False, False]
    write_audience(tmp_path, "premium", premium("gold"))
    changed = await catalog.push([env.id], read_audiences(tmp_path))
    assert [c.changed for c in changed[env.id]] == [False, True]
    # The new segments apply to the users already there at once.
    assert await members(env, "premium") == []
    assert await members(env, "beta") == ["ann"]


async def test_an_audience_never_changes_type(env: EnvFixture, other_env: EnvFixture, tmp_path: Path) -> None:
    add = {"members": [{"user": {"id": "ann"}}]}
    response = await env.post("/v1/audiences/beta/members", params={"create_audience": "true"}, json=add)
    assert response.status_code == 204, response.text
    folder = write_audience(tmp_path, "beta", premium())
    write_audience(tmp_path, "gamma", {"name": "Gamma", "type": "static"})
    with pytest.raises(AudienceFilesError) as raised:
        await env.runtime.audience_catalog.push([other_env.id, env.id], read_audiences(tmp_path))
    assert [str(problem) for problem in raised.value.problems] == [
        f"{folder / 'audience.json'} at type: the audience exists as a static one; its type cannot change"
    ]
    # Nothing was committed, in either environment.
    for environment in (env, other_env):
        assert_error(await environment.get("/v1/audiences/gamma/members"), 404)
    assert_error(await other_env.get("/v1/audiences/beta/members"), 404)
    assert await members(env, "beta") == ["ann"]


async def test_push_computes_the_members_among_existing_users(env: EnvFixture, tmp_path: Path) -> None:
    entries = [
        (f"u{i:04}", {"plan": "premium" if i % 3 == 0 else "free"}, InlineRecipientData())
        for i in range(1100)
    ]
    await env.runtime.users.identify_many(env.id, entries)
    assert len(entries) > 2 * USERS_PER_TRANSACTION
    write_audience(tmp_path, "premium", premium())
    await env.runtime.audience_catalog.push([env.id], read_audiences(tmp_path))
    async with env.runtime.database.reader.connect() as connection:
        found = await connection.execute(
            sa.select(audience_members.c.user_id).where(audience_members.c.environment_id == env.id)
        )
        assert sorted(row.user_id for row in found) == [f"u{i:04}" for i in range(0, 1100, 3)]


async def test_the_job_after_a_push_catches_writes_made_with_the_old_rules(
    env: EnvFixture, tmp_path: Path
) -> None:
    write_audience(tmp_path, "premium", premium())
    before = utcnow()
    await env.runtime.audience_catalog.push([env.id], read_audiences(tmp_path))
    [job] = await recompute_jobs(env)
    assert job.state == JobState.SCHEDULED.value
    assert job.queue == DEFAULT_QUEUE
    assert job.scheduled_at >= before + timedelta(seconds=LATE_WRITE_SECONDS)
    # A process whose cache still said "no dynamic audiences" writes the user and no membership.
    stale = UserStore(env.runtime.database)
    await stale.identify(env.id, "ann", {"plan": "premium"})
    assert await members(env, "premium") == []
    outcomes = await build_worker(env.runtime).drain([DEFAULT_QUEUE], with_scheduled=True)
    assert outcomes[JobState.COMPLETED] >= 1
    assert await members(env, "premium") == ["ann"]
    # An unchanged push enqueues no other job.
    await env.runtime.audience_catalog.push([env.id], read_audiences(tmp_path))
    assert len(await recompute_jobs(env)) == 1

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from clarion.engine.bulk import (
    BULK_DISCARD_HOOKS,
    BULK_HANDLERS,
    BULK_OPERATION_JOB,
    BULK_QUEUE,
    CHUNK_ROWS,
    BulkHandler,
    BulkKind,
    BulkOperationJob,
    ChunkResult,
    start_bulk_operation,
)
from clarion.errors import InvalidInputError
from clarion.jobs.job import JobState
from clarion.jobs.lifeline import Lifeline
from clarion.jobs.worker import Worker, WorkerOptions
from clarion.runtime import Runtime, build_worker
from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error


async def run_bulk_jobs(
    runtime: Runtime,
    handlers: Mapping[str, BulkHandler] | None = None,
    *,
    chunk_rows: int | None = None,
    with_scheduled: bool = False,
) -> Counter[JobState]:
    """Run the bulk queue until it is empty, as a worker would (with `handlers` in chunks of `chunk_rows`
    rows, when given)."""
    if handlers is None and chunk_rows is None:
        worker = build_worker(runtime)
    else:
        job = BulkOperationJob(runtime, handlers or BULK_HANDLERS, chunk_rows or CHUNK_ROWS)
        worker = Worker(
            runtime.queue,
            {BULK_OPERATION_JOB: job},
            WorkerOptions({BULK_QUEUE: 1}),
            on_discarded=BULK_DISCARD_HOOKS,
        )
    return await worker.drain([BULK_QUEUE], with_scheduled=with_scheduled)


async def completed(env: EnvFixture, operation_id: str) -> dict[str, Any]:
    assert await run_bulk_jobs(env.runtime) == {JobState.COMPLETED: 1}
    response = await env.get(f"/v1/bulk_operations/{operation_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "completed", body
    return body


async def test_bulk_identify_goes_from_queued_to_completed(env: EnvFixture) -> None:
    users = [
        {"id": "u1", "name": "Ann", "plan": {"tier": "pro"}},
        {"id": "u2", "email": "bo@example.com", "created_at": "2024-01-02T03:04:05Z"},
        {"id": "u3", "name": None},
    ]
    response = await env.post("/v1/users/bulk/identify", json={"users": users})
    assert response.status_code == 200, response.text
    queued = response.json()
    uuid.UUID(queued["id"])
    assert queued == {
        "__typename": "BulkOperation",
        "id": queued["id"],
        "name": "users.identify",
        "status": "queued",
        "estimated_total_rows": 3,
        "processed_rows": 0,
        "success_count": 0,
        "error_count": 0,
        "error_items": [],
        "progress_path": f"http://clarion.test/v1/bulk_operations/{queued['id']}",
        "started_at": None,
        "completed_at": None,
        "failed_at": None,
        "inserted_at": queued["inserted_at"],
        "updated_at": queued["updated_at"],
    }
    assert queued["inserted_at"].endswith("Z")
    assert (await env.get(f"/v1/bulk_operations/{queued['id']}")).json() == queued
    assert_error(await env.get("/v1/users/u1"), 404)

    done = await completed(env, queued["id"])
    assert (done["processed_rows"], done["success_count"], done["error_count"]) == (3, 3, 0)
    assert done["estimated_total_rows"] == 3
    assert done["started_at"] is not None
    assert done["completed_at"] >= done["started_at"] >= done["inserted_at"]
    assert done["failed_at"] is None
    assert done["updated_at"] >= queued["updated_at"]

    ann = (await env.get("/v1/users/u1")).json()
    assert (ann["name"], ann["plan"]) == ("Ann", {"tier": "pro"})
    bo = (await env.get("/v1/users/u2")).json()
    assert (bo["email"], bo["created_at"]) == ("bo@example.com", "2024-01-02T03:04:05Z")
    assert (await env.get("/v1/users/u3")).json()["name"] is None


async def test_bulk_identify_deep_merges_like_identify(env: EnvFixture) -> None:
    await env.put("/v1/users/u1", json={"name": "Ann", "plan": {"tier": "pro", "seats": 3}})
    operation = (
        await env.post("/v1/users/bulk/identify", json={"users": [{"id": "u1", "plan": {"seats": 5}}]})
    ).json()
    await completed(env, operation["id"])
    user = (await env.get("/v1/users/u1")).json()
    assert (user["name"], user["plan"]) == ("Ann", {"tier": "pro", "seats": 5})


async def test_bulk_identify_processes_large_requests_in_chunks(env: EnvFixture) -> None:
    users = [{"id": f"user-{i}", "n": i} for i in range(1000)]
    operation = (await env.post("/v1/users/bulk/identify", json={"users": users})).json()
    assert operation["estimated_total_rows"] == 1000
    done = await completed(env, operation["id"])
    assert (done["processed_rows"], done["success_count"]) == (1000, 1000)
    listed = (await env.get("/v1/users", params={"page_size": 50})).json()
    assert len(listed["entries"]) == 50
    assert (await env.get("/v1/users/user-999")).json()["n"] == 999


async def test_bulk_identify_refuses_bad_requests_and_queues_nothing(env: EnvFixture) -> None:
    path = "/v1/users/bulk/identify"
    assert_error(await env.post(path, json={"users": []}), 422, "invalid_params")
    too_many = [{"id": f"u{i}"} for i in range(1001)]
    assert_error(await env.post(path, json={"users": too_many}), 422, "invalid_params")
    body = assert_error(await env.post(path, json={"users": [{"id": "u1"}, {"id": "u2", "email": 42}]}), 422)
    assert body["errors"][0]["field"] == "users.1.email"
    assert_error(await env.post(path, json={"users": [{"name": "no id"}]}), 422, "invalid_params")
    body = assert_error(
        await env.post(path, json={"users": [{"id": "u1", "channel_data": {"not-a-channel": {}}}]}), 422
    )
    assert body["errors"][0]["field"].startswith("users.0.channel_data")
    assert_error(await env.post(path, content=b"{oops"), 400, "invalid_json")
    assert await run_bulk_jobs(env.runtime) == {}
    assert_error(await env.get("/v1/users/u1"), 404)


async def test_bulk_delete_users(env: EnvFixture) -> None:
    for user_id in ("u1", "u2", "keep"):
        await env.put(f"/v1/users/{user_id}", json={})
    response = await env.post("/v1/users/bulk/delete", json={"user_ids": ["u1", "u2", "ghost"]})
    assert response.status_code == 200, response.text
    operation = response.json()
    assert (operation["name"], operation["status"], operation["estimated_total_rows"]) == (
        "users.delete",
        "queued",
        3,
    )
    assert (await env.get("/v1/users/u1")).status_code == 200
    done = await completed(env, operation["id"])
    assert (done["processed_rows"], done["success_count"], done["error_count"]) == (3, 3, 0)
    assert_error(await env.get("/v1/users/u1"), 404)
    assert_error(await env.get("/v1/users/u2"), 404)
    assert (await env.get("/v1/users/keep")).status_code == 200

    assert_error(await env.post("/v1/users/bulk/delete", json={"user_ids": []}), 422, "invalid_params")
    assert_error(await env.post("/v1/users/bulk/delete", json={"user_ids": ["x" * 256]}), 422)
    assert_error(await env.post("/v1/users/bulk/delete", json={"ids": ["u1"]}), 422, "invalid_params")
    assert await run_bulk_jobs(env.runtime) == {}


async def test_bulk_set_user_preferences_replaces_the_set(env: EnvFixture) -> None:
    await env.put("/v1/users/u1/preferences/default", json={"categories": {"marketing": False}})
    preferences = {"id": "default", "workflows": {"welcome": False}, "channel_types": {"email": True}}
    response = await env.post(
        "/v1/users/bulk/preferences", json={"user_ids": ["u1", "u2"], "preferences": preferences}
    )
    assert response.status_code == 200, response.text
    operation = response.json()
    assert (operation["name"], operation["estimated_total_rows"]) == ("users.set_preferences", 2)
    done = await completed(env, operation["id"])
    assert (done["processed_rows"], done["success_count"]) == (2, 2)
    for user_id in ("u1", "u2"):
        stored = (await env.get(f"/v1/users/{user_id}/preferences/default")).json()
        assert stored["workflows"] == {"welcome": False}
        assert stored["channel_types"] == {"email": True}
        assert not stored.get("categories"), "the set was replaced, not merged"

    tenant = await env.post(
        "/v1/users/bulk/preferences",
        json={"user_ids": ["u1"], "preferences": {"id": "acme", "workflows": {"x": True}}},
    )
    await completed(env, tenant.json()["id"])
    assert (await env.get("/v1/users/u1/preferences/acme")).json()["workflows"] == {"x": True}

    path = "/v1/users/bulk/preferences"
    assert_error(await env.post(path, json={"user_ids": ["u1"]}), 422, "invalid_params")
    assert_error(await env.post(path, json={"user_ids": [], "preferences": {}}), 422, "invalid_params")
    body = assert_error(
        await env.post(path, json={"user_ids": ["u1"], "preferences": {"channel_types": {"fax": True}}}), 422
    )
    assert body["errors"][0]["field"].startswith("preferences.channel_types")
    assert await run_bulk_jobs(env.runtime) == {}


async def test_bulk_set_and_delete_objects(env: EnvFixture) -> None:
    objects = [{"id": "p1", "name": "Project one", "stage": {"n": 1}}, {"id": "p2"}]
    response = await env.post("/v1/objects/projects/bulk/set", json={"objects": objects})
    assert response.status_code == 200, response.text
    operation = response.json()
    assert (operation["name"], operation["status"], operation["estimated_total_rows"]) == (
        "objects.set",
        "queued",
        2,
    )
    done = await completed(env, operation["id"])
    assert (done["processed_rows"], done["success_count"]) == (2, 2)
    stored = (await env.get("/v1/objects/projects/p1")).json()
    assert stored["properties"] == {"name": "Project one", "stage": {"n": 1}}
    assert (await env.get("/v1/objects/projects/p2")).status_code == 200
    assert_error(await env.get("/v1/objects/teams/p1"), 404)

    response = await env.post("/v1/objects/projects/bulk/delete", json={"object_ids": ["p1", "ghost"]})
    operation = response.json()
    assert (operation["name"], operation["estimated_total_rows"]) == ("objects.delete", 2)
    done = await completed(env, operation["id"])
    assert (done["processed_rows"], done["success_count"]) == (2, 2)
    assert_error(await env.get("/v1/objects/projects/p1"), 404)
    assert (await env.get("/v1/objects/projects/p2")).status_code == 200


async def test_bulk_object_requests_are_validated(env: EnvFixture) -> None:
    assert_error(await env.post("/v1/objects/projects/bulk/set", json={"objects": []}), 422)
    body = assert_error(
        await env.post("/v1/objects/projects/bulk/set", json={"objects": [{"id": "p1"}, {"name": "x"}]}), 422
    )
    assert body["errors"][0]["field"] == "objects.1.id"
    assert_error(await env.post("/v1/objects/$users/bulk/set", json={"objects": [{"id": "p1"}]}), 422)
    assert_error(await env.post("/v1/objects/projects/bulk/delete", json={"object_ids": [1]}), 422)
    assert_error(await env.post("/v1/objects/bad%20name/bulk/delete", json={"object_ids": ["p1"]}), 422)
    assert await run_bulk_jobs(env.runtime) == {}


async def test_bulk_set_and_delete_tenants(env: EnvFixture) -> None:
    tenants = ["t1", {"id": "t2", "name": "Acme", "settings": {"branding": {"primary_color": "#f00"}}}]
    response = await env.post("/v1/tenants/bulk/set", json={"tenants": tenants})
    assert response.status_code == 200, response.text
    operation = response.json()
    assert (operation["name"], operation["estimated_total_rows"]) == ("tenants.set", 2)
    done = await completed(env, operation["id"])
    assert (done["processed_rows"], done["success_count"]) == (2, 2)
    assert (await env.get("/v1/tenants/t1")).status_code == 200
    acme = (await env.get("/v1/tenants/t2")).json()
    assert acme["name"] == "Acme"
    assert acme["settings"]["branding"] == {"primary_color": "#f00"}

    response = await env.post("/v1/tenants/bulk/delete", params={"tenant_ids[]": ["t1", "t2"]})
    assert response.status_code == 200, response.text
    operation = response.json()
    assert (operation["name"], operation["estimated_total_rows"]) == ("tenants.delete", 2)
    await completed(env, operation["id"])
    assert_error(await env.get("/v1/tenants/t1"), 404)
    assert_error(await env.get("/v1/tenants/t2"), 404)

    assert_error(await env.post("/v1/tenants/bulk/delete"), 422, "invalid_params")
    assert_error(await env.post("/v1/tenants/bulk/delete", params={"tenant_ids[]": ["x" * 256]}), 422)
    body = assert_error(await env.post("/v1/tenants/bulk/set", json={"tenants": [{"name": "no id"}]}), 422)
    assert body["errors"][0]["field"] == "tenants.0.tenant.id"
    assert_error(await env.post("/v1/tenants/bulk/set", json={"tenants": [42]}), 422)
    assert await run_bulk_jobs(env.runtime) == {}


async def test_bulk_add_and_delete_subscriptions(env: EnvFixture) -> None:
    await env.put("/v1/users/u1", json={})
    await env.put("/v1/objects/projects/p1", json={})
    subscriptions = [
        {"id": "p1", "recipients": ["u1", {"id": "u2", "name": "Inline"}], "properties": {"role": "x"}},
        {"id": "missing", "recipients": ["u1"]},
    ]
    response = await env.post(
        "/v1/objects/projects/bulk/subscriptions/add", json={"subscriptions": subscriptions}
    )
    assert response.status_code == 200, response.text
    operation = response.json()
    assert (operation["name"], operation["estimated_total_rows"]) == ("objects.add_subscriptions", 2)
    done = await completed(env, operation["id"])
    assert done["processed_rows"] == 2
    assert done["success_count"] == 2
    assert (done["error_count"], done["error_items"]) == (1, [{"id": "missing", "collection": "projects"}])
    listed = (await env.get("/v1/objects/projects/p1/subscriptions")).json()["entries"]
    assert sorted(entry["recipient"]["id"] for entry in listed) == ["u1", "u2"]
    assert (await env.get("/v1/users/u2")).json()["name"] == "Inline"

    response = await env.post(
        "/v1/objects/projects/bulk/subscriptions/delete",
        json={"subscriptions": [{"id": "p1", "recipients": ["u1", {"id": "p9", "collection": "projects"}]}]},
    )
    operation = response.json()
    assert operation["name"] == "objects.delete_subscriptions"
    done = await completed(env, operation["id"])
    assert (done["processed_rows"], done["success_count"], done["error_count"]) == (1, 1, 0)
    listed = (await env.get("/v1/objects/projects/p1/subscriptions")).json()["entries"]
    assert [entry["recipient"]["id"] for entry in listed] == ["u2"]

    path = "/v1/objects/projects/bulk/subscriptions/add"
    assert_error(await env.post(path, json={"subscriptions": [{"id": "p1"}]}), 422, "invalid_params")
    body = assert_error(
        await env.post(
            path,
            json={
                "subscriptions": [
                    {"id": "p1", "recipients": [{"id": "u3", "channel_data": {"nope": {}}}]},
                ]
            },
        ),
        422,
    )
    assert body["errors"][0]["field"].startswith("subscriptions.0.recipients.0.channel_data")
    assert await run_bulk_jobs(env.runtime) == {}


async def test_item_failures_become_error_items(env: EnvFixture) -> None:
    seen: list[list[str]] = []

    async def picky(
        runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
    ) -> ChunkResult:
        seen.append(list(rows))
        if any(row.startswith("bad") for row in rows):
            raise InvalidInputError(f"cannot take {rows}")
        return ChunkResult(len(rows))

    operation = await start_bulk_operation(
        env.runtime, env.id, "test.picky", ["a", "bad-1", "b", "bad-2"], {"collection": "things"}
    )
    assert await run_bulk_jobs(env.runtime, {"test.picky": picky}) == {JobState.COMPLETED: 1}
    assert seen[0] == ["a", "bad-1", "b", "bad-2"], "the chunk is tried as one batch first"
    done = (await env.get(f"/v1/bulk_operations/{operation.id}")).json()
    assert done["status"] == "completed"
    assert (done["processed_rows"], done["success_count"], done["error_count"]) == (4, 2, 2)
    assert done["error_items"] == [
        {"id": "bad-1", "collection": "things"},
        {"id": "bad-2", "collection": "things"},
    ]


async def test_a_nul_character_refuses_the_whole_request_on_both_stores(env: EnvFixture) -> None:
    # PostgreSQL cannot store the NUL character, so no store accepts it: the request is refused whole,
    # naming the field, and nothing is queued or written.
    users = [{"id": "ok", "x": "fine"}, {"id": "nul", "x": "a\u0000b"}]
    body = assert_error(
        await env.post("/v1/users/bulk/identify", json={"users": users}), 422, "invalid_params"
    )
    assert body["errors"][0]["field"] == "users.1.x"
    assert await run_bulk_jobs(env.runtime) == {}
    assert_error(await env.get("/v1/users/ok"), 404)


async def test_an_interrupted_operation_resumes_after_its_last_chunk(env: EnvFixture) -> None:
    rows = [f"r{i}" for i in range(250)]
    chunks: list[str] = []
    crashed = False

    async def crashes_once(
        runtime: Runtime, environment_id: str, params: dict[str, Any], chunk: list[Any]
    ) -> ChunkResult:
        nonlocal crashed
        if chunk[0] == "r100" and not crashed:
            crashed = True
            raise ConnectionError("the store went away")
        chunks.append(chunk[0])
        return ChunkResult(len(chunk))

    operation = await start_bulk_operation(env.runtime, env.id, "test.resume", rows)
    assert await run_bulk_jobs(env.runtime, {"test.resume": crashes_once}) == {JobState.RETRYABLE: 1}
    halfway = (await env.get(f"/v1/bulk_operations/{operation.id}")).json()
    assert (halfway["status"], halfway["processed_rows"], halfway["success_count"]) == (
        "processing",
        100,
        100,
    )
    assert halfway["started_at"] is not None

    handlers = {"test.resume": crashes_once}
    assert await run_bulk_jobs(env.runtime, handlers, with_scheduled=True) == {JobState.COMPLETED: 1}
    done = (await env.get(f"/v1/bulk_operations/{operation.id}")).json()
    assert (done["status"], done["processed_rows"], done["success_count"]) == ("completed", 250, 250)
    assert done["started_at"] == halfway["started_at"]
    assert chunks == ["r0", "r100", "r200"], "each chunk is counted once"


async def test_an_operation_fails_when_its_job_runs_out_of_attempts(env: EnvFixture) -> None:
    async def broken(
        runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
    ) -> ChunkResult:
        raise ConnectionError("always down")

    operation = await start_bulk_operation(env.runtime, env.id, "test.broken", ["a"])
    outcome = await run_bulk_jobs(env.runtime, {"test.broken": broken}, with_scheduled=True)
    assert outcome[JobState.DISCARDED] == 1
    failed = (await env.get(f"/v1/bulk_operations/{operation.id}")).json()
    assert failed["status"] == "failed"
    assert failed["failed_at"] is not None
    assert failed["completed_at"] is None
    assert failed["processed_rows"] == 0


async def test_an_operation_fails_when_its_worker_vanishes_on_the_last_attempt(env: EnvFixture) -> None:
    operation = await start_bulk_operation(env.runtime, env.id, BulkKind.USERS_DELETE, ["u1"])
    await env.runtime.bulk_operations.start(env.id, operation.id)
    queue = env.runtime.queue
    lifeline = Lifeline(queue, interval=60, on_discarded=BULK_DISCARD_HOOKS)
    while True:
        # A worker claims the job and vanishes: its lease (of no length) runs out at once.
        (job,) = await queue.claim(BULK_QUEUE, 1, "vanishing-worker", 0)
        assert job.args["bulk_operation_id"] == operation.id
        await asyncio.sleep(0.01)
        await lifeline.tick()
        if job.attempt == job.max_attempts:
            break
    stored = await queue.get(job.id)
    assert stored is not None
    assert stored.state is JobState.DISCARDED
    failed = (await env.get(f"/v1/bulk_operations/{operation.id}")).json()
    assert failed["status"] == "failed"
    assert failed["failed_at"] is not None
    assert failed["failed_at"] >= failed["started_at"]
    assert failed["completed_at"] is None
    assert await run_bulk_jobs(env.runtime, with_scheduled=True) == {}


async def test_bulk_identify_keeps_integers_beyond_64_bits(env: EnvFixture) -> None:
    big = 123456789012345678901234567890
    response = await env.post("/v1/users/bulk/identify", json={"users": [{"id": "big", "n": big}]})
    assert response.status_code == 200, response.text
    done = await completed(env, response.json()["id"])
    assert (done["success_count"], done["error_count"]) == (1, 0)
    user = await env.get("/v1/users/big")
    assert user.status_code == 200, user.text
    assert json.loads(user.text)["n"] == big


async def test_an_unknown_bulk_kind_fails_the_operation(env: EnvFixture) -> None:
    operation = await start_bulk_operation(env.runtime, env.id, "test.nobody-handles-this", ["a"])
    assert await run_bulk_jobs(env.runtime) == {JobState.CANCELLED: 1}
    assert (await env.get(f"/v1/bulk_operations/{operation.id}")).json()["status"] == "failed"


async def test_bulk_operations_belong_to_their_environment(env: EnvFixture, other_env: EnvFixture) -> None:
    operation = (await env.post("/v1/users/bulk/delete", json={"user_ids": ["u1"]})).json()
    assert_error(await other_env.get(f"/v1/bulk_operations/{operation['id']}"), 404, "resource_missing")
    await other_env.put("/v1/users/u1", json={})
    await completed(env, operation["id"])
    assert (await other_env.get("/v1/users/u1")).status_code == 200, "env's delete never touches other_env"


async def test_unknown_bulk_operation_is_404(env: EnvFixture) -> None:
    assert_error(await env.get(f"/v1/bulk_operations/{uuid.uuid4()}"), 404, "resource_missing")
    assert_error(await env.get("/v1/bulk_operations/not-a-uuid"), 404, "resource_missing")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/users/bulk/identify", {"users": [{"id": "u1"}]}),
        ("/v1/users/bulk/delete", {"user_ids": ["u1"]}),
        ("/v1/users/bulk/preferences", {"user_ids": ["u1"], "preferences": {}}),
        ("/v1/objects/projects/bulk/set", {"objects": [{"id": "p1"}]}),
        ("/v1/objects/projects/bulk/delete", {"object_ids": ["p1"]}),
        ("/v1/objects/projects/bulk/subscriptions/add", {"subscriptions": [{"id": "p1", "recipients": []}]}),
        (
            "/v1/objects/projects/bulk/subscriptions/delete",
            {"subscriptions": [{"id": "p1", "recipients": []}]},
        ),
        ("/v1/tenants/bulk/set", {"tenants": ["t1"]}),
        ("/v1/tenants/bulk/delete?tenant_ids[]=t1", None),
    ],
)
async def test_publishable_keys_may_not_run_bulk_operations(
    env: EnvFixture, path: str, body: dict[str, Any] | None
) -> None:
    assert_error(await env.post(path, json=body, kind=KeyKind.PUBLISHABLE), 403, "incorrect_token_type")
    assert await run_bulk_jobs(env.runtime) == {}


async def test_publishable_keys_may_not_read_bulk_operations(env: EnvFixture) -> None:
    operation = (await env.post("/v1/users/bulk/delete", json={"user_ids": ["u1"]})).json()
    response = await env.get(f"/v1/bulk_operations/{operation['id']}", kind=KeyKind.PUBLISHABLE)
    assert_error(response, 403, "incorrect_token_type")
    await completed(env, operation["id"])

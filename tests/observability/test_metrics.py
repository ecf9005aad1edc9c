"""`/metrics` moves as the service works: requests by route template and status, jobs waiting and their
latency, runs started and completed, messages by channel type. Each test has a runtime of its own (and so
metrics of its own) on the session's store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clarion.api.app import create_app
from clarion.config import METRICS_OPEN
from clarion.engine.workflow_jobs import WORKFLOW_QUEUE
from clarion.runtime import Runtime, build_job_runtime, build_runtime
from tests.conftest import EnvFixture, make_settings, new_environment, push_workflow, run_workflow_jobs

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def observed(store: str, database_url: str, tmp_path: Path) -> AsyncIterator[EnvFixture]:
    runtime: Runtime = await build_runtime(make_settings(store, tmp_path, database_url, metrics=METRICS_OPEN))
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as client:
            yield await new_environment(runtime, client)
    finally:
        await runtime.close()


async def scrape(env: EnvFixture) -> Samples:
    response = await env.client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


REQUESTS = "clarion_http_request_duration_seconds_count"


async def test_requests_count_by_route_template_method_and_status(observed: EnvFixture) -> None:
    before = await scrape(observed)
    assert (await observed.put("/v1/users/ada", json={"name": "Ada"})).status_code == 200
    assert (await observed.put("/v1/users/bob", json={"name": "Bob"})).status_code == 200
    assert (await observed.get("/v1/users/nobody")).status_code == 404
    assert (await observed.client.get("/v1/users/ada")).status_code == 401
    assert (await observed.get("/no/such/route")).status_code == 404
    assert (await observed.request("PATCH", "/v1/users/ada")).status_code == 405
    after = await scrape(observed)

    user = "/v1/users/{user_id}"
    assert moved(before, after, REQUESTS, route=user, method="PUT", status="200") == 2
    assert moved(before, after, REQUESTS, route=user, method="GET", status="404") == 1
    assert moved(before, after, REQUESTS, route=user, method="GET", status="401") == 1
    assert moved(before, after, REQUESTS, route="unmatched", method="GET", status="404") == 1
    assert moved(before, after, REQUESTS, route=user, method="PATCH", status="405") == 1
    # The raw paths never become labels.
    assert not [key for key in after if ("route", "/v1/users/ada") in key[1]]
    bucket = "clarion_http_request_duration_seconds_bucket"
    assert moved(before, after, bucket, route=user, method="PUT", status="200", le="+Inf") == 2
    assert (
        value(after, "clarion_http_request_duration_seconds_sum", route=user, method="PUT", status="200") > 0
    )


def feed_workflow() -> dict[str, Any]:
    return {
        "steps": [
            {
                "ref": "in_app_feed_1",
                "type": "channel",
                "channel_key": "in-app-feed",
                "template": {"markdown_body": "Hello {{ recipient.name }}"},
            }
        ],
    }


async def test_jobs_runs_and_messages_move_as_a_workflow_runs(observed: EnvFixture, tmp_path: Path) -> None:
    await push_workflow(observed, tmp_path, "greeting", feed_workflow())
    before = await scrape(observed)
    response = await observed.post(
        "/v1/workflows/greeting/trigger",
        json={"recipients": [{"id": "ada"}, {"id": "bob"}, {"id": "cy"}]},
    )
    assert response.status_code == 200, response.text
    queued = await scrape(observed)
    assert moved(before, queued, "clarion_jobs", queue=WORKFLOW_QUEUE, state="available") == 1
    assert moved(before, queued, "clarion_workflow_runs_started_total") == 0

    await run_workflow_jobs(observed.runtime)
    after = await scrape(observed)
    assert value(after, "clarion_jobs", queue=WORKFLOW_QUEUE, state="available") == value(
        before, "clarion_jobs", queue=WORKFLOW_QUEUE, state="available"
    )
    assert moved(before, after, "clarion_workflow_runs_started_total") == 3
    assert moved(before, after, "clarion_workflow_runs_completed_total") == 3
    assert moved(before, after, "clarion_messages_created_total", channel_type="in_app_feed") == 3
    # One trigger job ran (the one-step workflow finishes inside it), and its latency was observed.
    assert moved(before, after, "clarion_job_latency_seconds_count", queue=WORKFLOW_QUEUE) == 1
    assert moved(before, after, "clarion_jobs_finished_total", queue=WORKFLOW_QUEUE, state="completed") == 1
    assert value(after, "clarion_database_up") == 1


async def test_runs_waiting_at_a_delay_complete_when_their_step_job_runs(
    observed: EnvFixture, tmp_path: Path
) -> None:
    workflow = feed_workflow()
    workflow["steps"].insert(
        0, {"ref": "delay_1", "type": "delay", "settings": {"delay_for": {"unit": "seconds", "value": 30}}}
    )
    await push_workflow(observed, tmp_path, "later", workflow)
    before = await scrape(observed)
    response = await observed.post(
        "/v1/workflows/later/trigger", json={"recipients": [{"id": "ada"}, {"id": "bob"}]}
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(observed.runtime, with_scheduled=False)
    waiting = await scrape(observed)
    assert moved(before, waiting, "clarion_workflow_runs_started_total") == 2
    assert moved(before, waiting, "clarion_workflow_runs_completed_total") == 0
    assert moved(before, waiting, "clarion_messages_created_total", channel_type="in_app_feed") == 0

    await run_workflow_jobs(observed.runtime)
    after = await scrape(observed)
    assert moved(before, after, "clarion_workflow_runs_started_total") == 2
    assert moved(before, after, "clarion_workflow_runs_completed_total") == 2
    assert moved(before, after, "clarion_messages_created_total", channel_type="in_app_feed") == 2


async def test_the_connection_pools_are_reported(observed: EnvFixture, store: str) -> None:
    samples = await scrape(observed)
    pools = {dict(labels)["pool"] for name, labels in samples if name == "clarion_db_connections_size"}
    assert pools == ({"writer", "direct"} if store == "postgres" else {"writer", "reader", "direct"})
    writer_size = value(samples, "clarion_db_connections_size", pool="writer")
    assert writer_size == (1 if store == "sqlite" else 10)
    # The scrape itself holds no connection once answered.
    assert value(samples, "clarion_db_connections_in_use", pool="writer") == 0


async def test_serves_worker_has_the_job_bound_and_counts_into_the_served_metrics(
    observed: EnvFixture, store: str, tmp_path: Path
) -> None:
    served = observed.runtime
    jobs = await build_job_runtime(served)
    try:
        settings = served.settings
        assert served.database.wait_seconds == settings.request_db_timeout
        if store == "sqlite":
            assert jobs is served  # one writer connection per process
        else:
            assert jobs.database is not served.database
            assert jobs.database.wait_seconds == settings.job_db_timeout > settings.request_db_timeout
        await push_workflow(observed, tmp_path, "greeting", feed_workflow())
        before = await scrape(observed)
        response = await observed.post("/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}]})
        assert response.status_code == 200, response.text
        await run_workflow_jobs(jobs)
        after = await scrape(observed)
        assert moved(before, after, "clarion_workflow_runs_completed_total") == 1
        assert moved(before, after, "clarion_messages_created_total", channel_type="in_app_feed") == 1
        pools = {dict(labels)["pool"] for name, labels in after if name == "clarion_db_connections_size"}
        assert ("jobs-writer" in pools) == (store == "postgres")
    finally:
        if jobs is not served:
            await jobs.close()

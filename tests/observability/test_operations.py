"""The operator's endpoints through the real app: `/healthz`, `/readyz` (ready, schema behind, database
unreachable) and who may read `/metrics`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clarion.api.app import create_app
from clarion.config import METRICS_OPEN
from clarion.runtime import Runtime, build_runtime
from tests.conftest import assert_error, fresh_postgres_database, make_settings

METRICS_TOKEN = "s3cret-metrics-token-for-tests"


async def _client(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://clarion.test"
    )


async def test_healthz_answers_without_a_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_on_a_migrated_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}


@pytest.fixture
def unmigrated_database_url(store: str, tmp_path: Path) -> Iterator[str]:
    if store == "postgres":
        with fresh_postgres_database("unmigrated store") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'unmigrated.db'}"


async def test_readyz_refuses_a_store_whose_schema_is_behind(
    store: str, unmigrated_database_url: str, tmp_path: Path
) -> None:
    runtime = await build_runtime(
        make_settings(store, tmp_path, unmigrated_database_url), apply_migrations=False
    )
    try:
        async with await _client(runtime) as client:
            response = await client.get("/readyz")
    finally:
        await runtime.close()
    assert response.status_code == 503
    body = response.json()
    assert body["failed_check"] == "migrations"
    assert body["checks"] == {"database": "ok", "migrations": "failed"}
    assert "clarion migrate" in body["message"]


async def test_readyz_refuses_when_the_database_is_unreachable(unreachable_runtime: Runtime) -> None:
    async with await _client(unreachable_runtime) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["failed_check"] == "database"
        assert body["checks"] == {"database": "failed", "migrations": "not checked"}
        assert (await client.get("/healthz")).status_code == 200  # the process itself is up


async def test_metrics_are_not_served_by_default(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/metrics"), 404, "resource_missing")


@pytest.fixture
async def guarded_client(store: str, database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    runtime = await build_runtime(make_settings(store, tmp_path, database_url, metrics=METRICS_TOKEN))
    try:
        async with await _client(runtime) as client:
            yield client
    finally:
        await runtime.close()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": METRICS_TOKEN}],
    ids=["missing", "wrong", "without-scheme"],
)
async def test_metrics_refuse_a_missing_or_wrong_token(
    guarded_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await guarded_client.get("/metrics", headers=headers)
    assert_error(response, 401, "authentication_required")
    assert response.headers["www-authenticate"] == "Bearer"


def _family_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


async def test_metrics_with_the_token(guarded_client: httpx.AsyncClient) -> None:
    response = await guarded_client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert {
        "clarion_http_request_duration_seconds",
        "clarion_database_up",
        "clarion_jobs",
        "clarion_job_latency_seconds",
        "clarion_workflow_runs_started",
        "clarion_workflow_runs_completed",
        "clarion_messages_created",
        "clarion_db_connections_in_use",
        "clarion_db_connections_size",
    } <= _family_names(response.text)


async def test_open_metrics_need_no_token(store: str, database_url: str, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"metrics": METRICS_OPEN}
    runtime = await build_runtime(make_settings(store, tmp_path, database_url, **settings))
    try:
        async with await _client(runtime) as client:
            response = await client.get("/metrics")
    finally:
        await runtime.close()
    assert response.status_code == 200
    assert "clarion_database_up 1.0" in response.text


async def test_metrics_still_answer_when_the_database_is_unreachable(unreachable_runtime: Runtime) -> None:
    async with await _client(unreachable_runtime) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert [sample.value for sample in families["clarion_database_up"].samples] == [0]
    assert "clarion_jobs" not in families  # unknown, rather than a misleading zero
    assert "clarion_http_request_duration_seconds" in families

"""Every response carries `x-request-id` (the client's own when sane), and with JSON logging each request
and each job outcome is one JSON line carrying its ids."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clarion.api.app import create_app
from clarion.config import LogFormat, Settings, settings_from_env
from clarion.engine.workflow_jobs import TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.observability.logging_setup import JsonFormatter, uvicorn_log_config
from clarion.runtime import Runtime
from tests.conftest import EnvFixture, push_workflow, run_workflow_jobs
from tests.observability.test_metrics import feed_workflow

GENERATED = re.compile(r"[0-9a-f]{28}")


async def test_each_response_gets_a_fresh_request_id(env: EnvFixture) -> None:
    responses = [
        await env.put("/v1/users/ada", json={"name": "Ada"}),  # 200
        await env.put("/v1/users/ada", json={"email": 5}),  # 422
        await env.client.get("/v1/users/ada"),  # 401: no key
        await env.get("/no/such/route"),  # 404, unknown route
        await env.request("PATCH", "/v1/users/ada"),  # 405
        await env.client.get("/healthz"),
    ]
    assert [r.status_code for r in responses] == [200, 422, 401, 404, 405, 200]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(GENERATED.fullmatch(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)


async def test_a_browser_request_gets_its_id_beside_the_cors_headers(env: EnvFixture) -> None:
    response = await env.get("/v1/users/nobody", headers={"Origin": "https://app.example"})
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == "*"
    assert GENERATED.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize("given", ["req-42", "0f9c:trace/7+a=b.c_d", "A" * 128])
async def test_a_sane_client_request_id_is_kept(env: EnvFixture, given: str) -> None:
    response = await env.get("/v1/users/nobody", headers={"x-request-id": given})
    assert response.headers["x-request-id"] == given


@pytest.mark.parametrize("given", ["", "A" * 129, "has space", 'quote"d', "new\tline", "é"])
async def test_an_odd_client_request_id_is_replaced(env: EnvFixture, given: str) -> None:
    response = await env.client.get("/healthz", headers={b"x-request-id": given.encode("utf-8")})
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_a_server_error_carries_a_request_id_too(unreachable_runtime: Runtime) -> None:
    transport = httpx.ASGITransport(app=create_app(unreachable_runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as client:
        response = await client.get(
            "/v1/users/ada", headers={"Authorization": "Bearer sk_any", "x-request-id": "outage-1"}
        )
    assert response.status_code >= 500
    assert response.headers["x-request-id"] == "outage-1"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the access and job loggers write, as `CLARION_LOG_FORMAT=json` sets them up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger("clarion.access"), logging.getLogger("clarion.jobs.executor")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_json_line_per_request_with_its_request_id(
    env: EnvFixture, json_lines: io.StringIO
) -> None:
    given = await env.put("/v1/users/ada", json={"name": "Ada"}, headers={"x-request-id": "abc-123"})
    fresh = await env.get("/v1/users/nobody")
    [first, second] = parsed(json_lines)
    assert first["request_id"] == "abc-123" == given.headers["x-request-id"]
    assert first["logger"] == "clarion.access"
    assert first["level"] == "info"
    assert (first["method"], first["path"], first["route"], first["status"]) == (
        "PUT",
        "/v1/users/ada",
        "/v1/users/{user_id}",
        200,
    )
    assert first["duration_ms"] > 0
    assert first["message"].startswith("PUT /v1/users/ada 200 ")
    assert second["request_id"] == fresh.headers["x-request-id"]
    assert (second["route"], second["status"]) == ("/v1/users/{user_id}", 404)


async def test_one_json_line_per_job_outcome(
    env: EnvFixture, tmp_path: Path, json_lines: io.StringIO
) -> None:
    await push_workflow(env, tmp_path, "greeting", feed_workflow())
    response = await env.post("/v1/workflows/greeting/trigger", json={"recipients": [{"id": "ada"}]})
    assert response.status_code == 200
    await run_workflow_jobs(env.runtime)
    jobs = [line for line in parsed(json_lines) if line["logger"] == "clarion.jobs.executor"]
    assert len(jobs) == 1
    [job] = jobs
    assert (job["job_kind"], job["queue"], job["attempt"], job["outcome"]) == (
        TRIGGER_JOB,
        WORKFLOW_QUEUE,
        1,
        "completed",
    )
    assert isinstance(job["job_id"], int)
    assert job["duration_ms"] > 0


def test_a_logged_error_keeps_its_traceback_in_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("clarion.test").makeRecord(
            "clarion.test", logging.ERROR, __file__, 1, "failed: %s", ("it",), exc_info=sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed: it"
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


def test_log_format_and_metrics_settings() -> None:
    assert settings_from_env({}).log_format is LogFormat.TEXT
    assert settings_from_env({"CLARION_LOG_FORMAT": "json"}).log_format is LogFormat.JSON
    with pytest.raises(ValueError, match="CLARION_LOG_FORMAT"):
        settings_from_env({"CLARION_LOG_FORMAT": "xml"})
    assert settings_from_env({}).metrics == Settings().metrics == "off"
    assert settings_from_env({"CLARION_METRICS": "open"}).metrics == "open"
    token = "t" * 16
    assert settings_from_env({"CLARION_METRICS": token}).metrics == token
    for typo in ("Open", "true", "on", "short-token"):
        with pytest.raises(ValueError, match="CLARION_METRICS"):
            settings_from_env({"CLARION_METRICS": typo})
    # uvicorn's own text set-up stays for text; JSON leaves its records to the root logger's handler.
    assert uvicorn_log_config(LogFormat.TEXT) is not None
    assert uvicorn_log_config(LogFormat.JSON) is None

"""A real `clarion serve` with `CLARION_LOG_FORMAT=json` and a metrics token, over loopback HTTP: the
operator's endpoints answer, and what it writes to stderr is JSON lines carrying the request ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.compat.live_server import LiveServer

METRICS_TOKEN = "live-metrics-token-0123456789"


class JsonLoggingServer(LiveServer):
    @property
    def environ(self) -> dict[str, str]:
        return {**super().environ, "CLARION_LOG_FORMAT": "json", "CLARION_METRICS": METRICS_TOKEN}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[JsonLoggingServer]:
    live = JsonLoggingServer(data_dir=tmp_path / "data")
    live.data_dir.mkdir()
    live.start()
    try:
        yield live
    finally:
        live.stop()


def _json_lines(log: str) -> list[dict[str, Any]]:
    # The start-up banner is printed to stdout for people; the log lines are everything else.
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_a_served_process_logs_json_lines_with_request_ids(server: JsonLoggingServer) -> None:
    keys = server.create_environment("observed")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        put = http.put(
            "/v1/users/ada",
            json={"name": "Ada"},
            headers={"Authorization": f"Bearer {keys.secret_key}", "x-request-id": "live-put-1"},
        )
        assert put.status_code == 200
        assert put.headers["x-request-id"] == "live-put-1"
        assert http.get("/metrics").status_code == 401
        scraped = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }
    put_count = (
        "clarion_http_request_duration_seconds_count",
        (("method", "PUT"), ("route", "/v1/users/{user_id}"), ("status", "200")),
    )
    assert samples[put_count] == 1
    server.stop()

    lines = _json_lines(server.log())
    access = [line for line in lines if line["logger"] == "clarion.access"]
    assert (
        [(line["method"], line["route"], line["status"]) for line in access]
        == [
            ("GET", "/v1/users", 401),  # the test helper's wait for the server to answer
            ("GET", "/healthz", 200),
            ("GET", "/readyz", 200),
            ("PUT", "/v1/users/{user_id}", 200),
            ("GET", "/metrics", 401),
            ("GET", "/metrics", 200),
        ][-len(access) :]
    )
    assert access[-3]["request_id"] == "live-put-1"
    assert all(line["request_id"] for line in access)
    # Nothing else reached stderr as plain text (uvicorn's own lines go through the same JSON handler).
    banner = ("Clarion ready on", "  ")
    plain = [
        line for line in server.log().splitlines() if not line.startswith("{") and not line.startswith(banner)
    ]
    assert plain == []

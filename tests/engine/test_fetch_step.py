"""The fetch step against a real HTTP server on loopback: its JSON answer joins the run's data for later
steps; 5xx answers are retried after Knock's delays, under a clock the test moves; other answers halt the
run with the exchange recorded on it; targets on private addresses are refused unless allowed; a cancel
reaches a run waiting between attempts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clarion.engine.address_policy import AddressPolicy, HostList
from clarion.engine.outbound_http import OutboundHTTP
from clarion.engine.workflow_files import WorkflowFilesError
from tests.conftest import EngineClock, EnvFixture, feed_channel_id, push_workflow, run_workflow_jobs
from tests.http_peer import HTTPPeer, Reply


@pytest.fixture
async def peer() -> AsyncIterator[HTTPPeer]:
    server = await HTTPPeer().start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def loopback_allowed(env: EnvFixture, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The runtime's outbound HTTP with 127.0.0.1 allowed, as `CLARION_FETCH_ALLOW_HOSTS=127.0.0.1` does."""
    allowed = OutboundHTTP(
        timeout=2.0, policy=AddressPolicy(allow=HostList.parse("127.0.0.1", "CLARION_FETCH_ALLOW_HOSTS"))
    )
    monkeypatch.setattr(env.runtime, "outbound_http", allowed)
    try:
        yield
    finally:
        await allowed.aclose()


def fetching(url: str, message: str = "{{ data.plan }}", **settings: Any) -> dict[str, Any]:
    return {
        "steps": [
            {"ref": "lookup", "type": "http_fetch", "settings": {"method": "get", "url": url, **settings}},
            {
                "ref": "feed",
                "type": "channel",
                "channel_key": "in-app-feed",
                "template": {"markdown_body": message},
            },
        ]
    }


def answer(status: int, document: Any = None, **headers: str) -> Reply:
    body = b"" if document is None else json.dumps(document).encode()
    return Reply(status=status, body=body, headers=(("content-type", "application/json"), *headers.items()))


async def trigger(env: EnvFixture, **body: Any) -> None:
    response = await env.post("/v1/workflows/lookup/trigger", json={"recipients": ["ada"], **body})
    assert response.status_code == 200, response.text


async def feed_bodies(env: EnvFixture) -> list[str]:
    response = await env.get(f"/v1/users/ada/feeds/{feed_channel_id(env.runtime)}")
    return [entry["blocks"][0]["content"] for entry in response.json()["entries"]]


async def the_run(env: EnvFixture) -> dict[str, Any]:
    [run] = (await env.get("/v1/workflow_recipient_runs", params={"workflow": "lookup"})).json()["items"]
    detail: dict[str, Any] = (await env.get(f"/v1/workflow_recipient_runs/{run['id']}")).json()
    return detail


def fetch_events(run: dict[str, Any]) -> list[str]:
    return [event["event"] for event in run["events"] if event["step_type"] == "http_fetch"]


@pytest.fixture
async def ada(env: EnvFixture) -> None:
    assert (await env.put("/v1/users/ada", json={"name": "Ada"})).status_code == 200


async def test_the_answer_joins_the_runs_data_for_later_steps(
    env: EnvFixture, tmp_path: Path, peer: HTTPPeer, loopback_allowed: None, ada: None
) -> None:
    peer.reply(answer(200, {"plan": "pro", "seats": 3}))
    await push_workflow(env, tmp_path, "lookup", fetching(peer.url("/accounts/{{ recipient.id }}")))
    await trigger(env, data={"plan": "free"})
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env) == ["pro"]
    [request] = peer.received
    assert (request.method, request.target) == ("GET", "/accounts/ada")
    run = await the_run(env)
    assert request.headers["idempotency-key"] == f"{run['id']}:lookup:1"
    assert fetch_events(run) == ["fetch_succeeded"]
    succeeded = next(e for e in run["events"] if e["event"] == "fetch_succeeded")
    assert succeeded["data"]["response"]["status"] == 200


async def test_a_response_path_places_the_answer_inside_the_data(
    env: EnvFixture, tmp_path: Path, peer: HTTPPeer, loopback_allowed: None, ada: None
) -> None:
    peer.reply(answer(200, {"plan": "pro"}))
    document = fetching(peer.url("/"), "{{ data.account.plan }}/{{ data.plan }}", response_path="account")
    await push_workflow(env, tmp_path, "lookup", document)
    await trigger(env, data={"plan": "free"})
    await run_workflow_jobs(env.runtime)
    assert await feed_bodies(env) == ["pro/free"]


async def test_a_post_sends_its_rendered_body_and_headers(
    env: EnvFixture, tmp_path: Path, peer: HTTPPeer, loopback_allowed: None, ada: None
) -> None:
    document = fetching(
        peer.url("/events"),
        "sent",
        method="post",
        body='{"user": "{{ recipient.id }}", "name": "{{ recipient.name }}"}',
        headers=[{"key": "X-Team", "value": "{{ data.team }}"}],
    )
    await push_workflow(env, tmp_path, "lookup", document)
    await trigger(env, data={"team": "core"})
    await run_workflow_jobs(env.runtime)
    [request] = peer.received
    assert request.method == "POST" and json.loads(request.body) == {"user": "ada", "name": "Ada"}
    assert request.headers["x-team"] == "core"
    assert request.headers["content-type"] == "application/json"


async def test_server_errors_are_retried_after_30_then_60_seconds(
    env: EnvFixture,
    tmp_path: Path,
    peer: HTTPPeer,
    loopback_allowed: None,
    ada: None,
    engine_clock: EngineClock,
) -> None:
    peer.reply(answer(503), answer(502), answer(200, {"plan": "pro"}))
    await push_workflow(env, tmp_path, "lookup", fetching(peer.url("/")))
    await trigger(env)
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    assert len(peer.received) == 1 and await feed_bodies(env) == []
    run = await the_run(env)
    assert run["status"] == "paused"
    assert fetch_events(run) == ["fetch_retrying"]

    await run_workflow_jobs(env.runtime)  # the scheduled attempts, without waiting for them
    assert await feed_bodies(env) == ["pro"]
    keys = [request.headers["idempotency-key"].rsplit(":", 1)[1] for request in peer.received]
    assert keys == ["1", "2", "3"]
    run = await the_run(env)
    assert fetch_events(run) == ["fetch_retrying", "fetch_retrying", "fetch_succeeded"]
    retries = [event for event in run["events"] if event["event"] == "fetch_retrying"]
    assert [event["attempt"] for event in retries] == [1, 2]


async def test_the_third_failure_halts_the_run(
    env: EnvFixture, tmp_path: Path, peer: HTTPPeer, loopback_allowed: None, ada: None
) -> None:
    peer.reply(answer(500), answer(500), answer(500, {"error": "down"}), answer(200, {"plan": "never"}))
    await push_workflow(env, tmp_path, "lookup", fetching(peer.url("/")))
    await trigger(env)
    await run_workflow_jobs(env.runtime)
    assert len(peer.received) == 3 and await feed_bodies(env) == []
    run = await the_run(env)
    assert run["status"] == "completed"
    assert fetch_events(run) == ["fetch_retrying", "fetch_retrying", "fetch_failed"]
    failed = next(e for e in run["events"] if e["event"] == "fetch_failed")
    assert failed["status"] == "error" and failed["data"]["response"]["status"] == 500
    assert '"down"' in failed["data"]["response"]["body"]
    assert run["events"][-1]["data"] == {"reason": "fetch_failed"}


async def test_other_answers_halt_the_run_at_once(
    env: EnvFixture, tmp_path: Path, peer: HTTPPeer, loopback_allowed: None, ada: None
) -> None:
    peer.reply(answer(404, {"error": "no such account"}))
    await push_workflow(env, tmp_path, "lookup", fetching(peer.url("/")))
    await trigger(env)
    await run_workflow_jobs(env.runtime)
    assert len(peer.received) == 1 and await feed_bodies(env) == []
    assert fetch_events(await the_run(env)) == ["fetch_failed"]


async def test_private_targets_are_refused_unless_allowed(
    env: EnvFixture, tmp_path: Path, peer: HTTPPeer, ada: None
) -> None:
    # The runtime's own outbound HTTP, with no host allowed: 127.0.0.1 is loopback.
    await push_workflow(env, tmp_path, "lookup", fetching(peer.url("/")))
    await trigger(env)
    await run_workflow_jobs(env.runtime)
    assert peer.received == []
    run = await the_run(env)
    assert fetch_events(run) == ["fetch_failed"]
    failed = next(e for e in run["events"] if e["event"] == "fetch_failed")
    assert "127.0.0.1" in failed["data"]["error"]


async def test_a_cancel_reaches_a_run_waiting_between_attempts(
    env: EnvFixture, tmp_path: Path, peer: HTTPPeer, loopback_allowed: None, ada: None
) -> None:
    peer.reply(answer(503), answer(200, {"plan": "pro"}))
    await push_workflow(env, tmp_path, "lookup", fetching(peer.url("/")))
    await trigger(env, cancellation_key="order-1")
    await run_workflow_jobs(env.runtime, with_scheduled=False)
    cancelled = await env.post("/v1/workflows/lookup/cancel", json={"cancellation_key": "order-1"})
    assert cancelled.status_code == 204, cancelled.text
    await run_workflow_jobs(env.runtime)
    assert len(peer.received) == 1 and await feed_bodies(env) == []
    assert (await the_run(env))["status"] == "cancelled"


async def test_a_push_refuses_a_fetch_without_a_url(env: EnvFixture, tmp_path: Path) -> None:
    document = fetching("x")
    del document["steps"][0]["settings"]["url"]
    with pytest.raises(WorkflowFilesError, match=r"steps\.0\.settings\.url"):
        await push_workflow(env, tmp_path, "lookup", document)

"""Shared fixtures: a runtime per store (SQLite file and PostgreSQL), the ASGI app, and a fresh
environment per test so that tests never see each other's data.

PostgreSQL tests run against a throw-away database created on the server at 127.0.0.1:5432 (override with
CLARION_TEST_POSTGRES_URL). Without a reachable server they are skipped, except under CI=true, where an
unreachable server fails the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from clarion.api.app import create_app
from clarion.config import RateLimitMode, Settings
from clarion.engine import run_executor, trigger
from clarion.engine.audience_files import read_audiences
from clarion.engine.workflow_jobs import WORKFLOW_QUEUE
from clarion.runtime import Runtime, build_runtime, build_worker, create_queue_engine
from clarion.store.environments import KeyKind

POSTGRES_SERVER_URL = os.environ.get("CLARION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ["sqlite", "postgres"]
T = TypeVar("T")


async def _postgres_reachable() -> bool:
    try:
        connection = await asyncpg.connect(POSTGRES_SERVER_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


def run_outside_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in a thread, from sync fixture code."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_SERVER_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def fresh_postgres_database(purpose: str) -> Iterator[str]:
    """A throw-away PostgreSQL database for `purpose`, dropped afterwards; skipped (failed under CI=true)
    when no server is reachable."""
    if not run_outside_loop(_postgres_reachable()):
        message = f"PostgreSQL is not reachable at {POSTGRES_SERVER_URL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required when CI=true)")
        pytest.skip(message + f": PostgreSQL {purpose} skipped")
    name = f"clarion_test_{uuid.uuid4().hex[:12]}"
    run_outside_loop(_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_SERVER_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        run_outside_loop(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session's in-process tests, dropped at the end."""
    with fresh_postgres_database("tests") as url:
        yield url


def make_settings(store: str, data_dir: Path, database_url: str = "", **overrides: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        rate_limit_mode=overrides.pop("rate_limit_mode", RateLimitMode.OFF),
        **overrides,
    )


@pytest.fixture(scope="session", params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clarion")


@pytest.fixture(scope="session")
def database_url(store: str, request: pytest.FixtureRequest, session_dir: Path) -> str:
    if store == "postgres":
        url: str = request.getfixturevalue("postgres_database_url")
        return url
    return f"sqlite:///{session_dir / 'clarion.db'}"


@pytest.fixture(scope="session")
async def runtime(store: str, database_url: str, session_dir: Path) -> AsyncIterator[Runtime]:
    built = await build_runtime(make_settings(store, session_dir, database_url))
    try:
        yield built
    finally:
        await built.close()


@dataclass
class EnvFixture:
    """A fresh environment with its keys, and an HTTP client bound to the app."""

    id: str
    name: str
    secret_key: str
    publishable_key: str
    client: httpx.AsyncClient
    runtime: Runtime

    def headers(self, kind: KeyKind = KeyKind.SECRET) -> dict[str, str]:
        key = self.secret_key if kind is KeyKind.SECRET else self.publishable_key
        return {"Authorization": f"Bearer {key}"}

    async def request(
        self, method: str, path: str, *, kind: KeyKind = KeyKind.SECRET, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.headers(kind), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as http:
        yield http


async def new_environment(runtime: Runtime, client: httpx.AsyncClient) -> EnvFixture:
    name = f"test-{uuid.uuid4().hex[:10]}"
    environment = await runtime.environments.create(name)
    keys = {
        k.kind: k.key for k in await runtime.environments.list_keys() if k.environment.id == environment.id
    }
    return EnvFixture(
        id=environment.id,
        name=name,
        secret_key=keys[KeyKind.SECRET],
        publishable_key=keys[KeyKind.PUBLISHABLE],
        client=client,
        runtime=runtime,
    )


@pytest.fixture
async def env(runtime: Runtime, client: httpx.AsyncClient) -> EnvFixture:
    """The environment a test works in."""
    return await new_environment(runtime, client)


@pytest.fixture
async def other_env(runtime: Runtime, client: httpx.AsyncClient) -> EnvFixture:
    """A second environment, for isolation tests: its key must never see `env`'s data."""
    return await new_environment(runtime, client)


class EngineClock:
    """The moment the workflow engine's passes see (their steps' `now`), which a test moves."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def engine_clock(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> EngineClock:
    """Windows, delays and send windows tested without sleeping: trigger and step jobs take their moment
    from this clock, and the runtime's queue decides by it which jobs are due, so that
    `run_workflow_jobs(runtime, with_scheduled=False)` runs the jobs due at the clock's moment."""
    clock = EngineClock()
    monkeypatch.setattr(run_executor, "utcnow", clock)
    monkeypatch.setattr(trigger, "utcnow", clock)
    monkeypatch.setattr(runtime, "queue", create_queue_engine(runtime.database, clock=clock))
    return clock


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert Knock's error body with the given status (and code)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"code", "message", "status", "type", "errors"}, body
    assert body["status"] == status
    assert body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def write_workflow(
    root: Path, key: str, document: dict[str, Any], files: dict[str, str] | None = None
) -> Path:
    """A workflow folder in the Knock CLI layout: `root/key/workflow.json` and its template files."""
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workflow.json").write_text(json.dumps(document), encoding="utf-8")
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return folder


async def push_workflow(env: EnvFixture, tmp_path: Path, key: str, document: dict[str, Any]) -> None:
    """Commit one workflow to `env` only, as `clarion workflows push --environment` does."""
    root = tmp_path / f"workflows-{uuid.uuid4().hex[:8]}"
    write_workflow(root, key, document)
    await env.runtime.workflows.push_folder([env.id], root)


def write_audience(root: Path, key: str, document: dict[str, Any]) -> Path:
    """An audience folder in the Knock CLI layout: `root/key/audience.json`."""
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audience.json").write_text(json.dumps(document), encoding="utf-8")
    return folder


async def push_audiences(env: EnvFixture, tmp_path: Path, documents: dict[str, dict[str, Any]]) -> None:
    """Commit audiences (key → audience.json) to `env` only, as `clarion audiences push --environment`
    does."""
    root = tmp_path / f"audiences-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    for key, document in documents.items():
        write_audience(root, key, document)
    await env.runtime.audience_catalog.push([env.id], read_audiences(root))


async def run_workflow_jobs(runtime: Runtime, *, with_scheduled: bool = True) -> None:
    """Run every queued trigger and step job, delayed ones too unless told otherwise."""
    await build_worker(runtime).drain([WORKFLOW_QUEUE], with_scheduled=with_scheduled)


def feed_channel_id(runtime: Runtime) -> str:
    channel = runtime.channels.by_key("in-app-feed")
    assert channel is not None
    return channel.id

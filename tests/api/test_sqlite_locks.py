"""Another process holding SQLite's write lock (a CLI command's write) never blocks the event loop: the
server's write waits for the lock off the loop while other requests are served, completes once the lock is
released, or answers 503 once the bound has passed."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from clarion.api.app import create_app
from clarion.runtime import build_runtime
from tests.conftest import EnvFixture, assert_error, make_settings, new_environment

HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""

TICK = 0.01
LOOP_LAG_LIMIT = 0.25
"""How late a 10 ms sleep may wake while the lock is held: far below any lock wait, well above the
scheduling noise of a busy machine."""


@asynccontextmanager
async def sqlite_env(tmp_path: Path, request_bound: float) -> AsyncIterator[EnvFixture]:
    database_url = f"sqlite:///{tmp_path / 'clarion.db'}"
    runtime = await build_runtime(
        make_settings("sqlite", tmp_path, database_url, request_db_timeout=request_bound)
    )
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as client:
            env = await new_environment(runtime, client)
            assert (await env.put("/v1/users/reader", json={"name": "R"})).status_code == 200
            yield env
    finally:
        await runtime.close()


@asynccontextmanager
async def write_lock_held(tmp_path: Path, seconds: float) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process holds the file's write lock for `seconds` from the moment this is entered."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_THE_WRITE_LOCK,
        str(tmp_path / "clarion.db"),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert await holder.stdout.readline() == b"locked\n"
    try:
        yield holder
    finally:
        await holder.wait()


@asynccontextmanager
async def loop_lag() -> AsyncIterator[Callable[[], float]]:
    """The worst delay of a 10 ms sleep while the block runs."""
    worst = 0.0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal worst
        while not stop.is_set():
            started = time.monotonic()
            await asyncio.sleep(TICK)
            worst = max(worst, time.monotonic() - started - TICK)

    ticker = asyncio.create_task(tick())
    try:
        yield lambda: worst
    finally:
        stop.set()
        await ticker


async def test_a_write_waits_for_the_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    async with sqlite_env(tmp_path, request_bound=10.0) as env, loop_lag() as worst_lag:
        async with write_lock_held(tmp_path, 1.5):
            started = time.monotonic()
            write = asyncio.create_task(env.put("/v1/users/u1", json={"name": "Written"}))
            read = await env.get("/v1/users/reader")
            assert read.status_code == 200
            assert not write.done()  # still waiting for the lock, while the read was served
            response = await write
        assert response.status_code == 200, response.text
        assert time.monotonic() - started >= 1.0  # answered only once the other process let go
        assert (await env.get("/v1/users/u1")).json()["name"] == "Written"
        assert worst_lag() < LOOP_LAG_LIMIT


async def test_a_lock_held_past_the_bound_answers_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with sqlite_env(tmp_path, request_bound=1.0) as env, loop_lag() as worst_lag:
        with caplog.at_level(logging.WARNING):
            async with write_lock_held(tmp_path, 3.0) as holder:
                started = time.monotonic()
                response = await env.put("/v1/users/u1", json={"name": "Refused"})
                waited = time.monotonic() - started
                assert holder.returncode is None
                assert (await env.get("/v1/users/reader")).status_code == 200
        body = assert_error(response, 503, "service_unavailable")
        assert "busy" in body["message"]
        assert int(response.headers["retry-after"]) >= 1
        assert 1.0 <= waited < 2.0
        assert worst_lag() < LOOP_LAG_LIMIT
        # Another process's lock is no outage: nothing is logged, and the next write simply succeeds.
        assert [r.getMessage() for r in caplog.records if r.name.startswith("clarion")] == []
        assert (await env.put("/v1/users/u1", json={"name": "Written"})).status_code == 200
        assert (await env.get("/v1/users/u1")).json()["name"] == "Written"

"""Processes starting together on one store: what each start-up creates when missing (the schema, the
channels file, the `development` environment and its keys, the workflows folder's versions) is created
once, and no process fails for having lost a race. On both stores: two runtimes in one process, whose
PostgreSQL transactions interleave, and two real `clarion serve` processes started at once. And the other
end of a process's life: stopped by a signal, it closes its store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from clarion.channels import load_channels
from clarion.runtime import Runtime, build_runtime
from clarion.store.environments import KeyKind
from clarion.store.tables import api_keys, environments, workflow_versions
from tests.compat.live_server import _free_port
from tests.conftest import fresh_postgres_database, make_settings, write_workflow

ROUNDS = 20
START_TIMEOUT_SECONDS = 60.0


def feed_workflow(body: str) -> dict[str, object]:
    step = {"ref": "in_app_feed_1", "type": "channel", "channel_key": "in-app-feed"}
    return {"steps": [{**step, "template": {"markdown_body": body}}]}


@pytest.fixture
def empty_database_url(store: str, tmp_path: Path) -> Iterator[str]:
    """A store no Clarion process has started on yet."""
    if store == "postgres":
        with fresh_postgres_database("start-up races") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'clarion.db'}"


async def count(runtime: Runtime, query: sa.Select[Any]) -> int:
    async with runtime.database.reader.connect() as connection:
        return int(await connection.scalar(query) or 0)


async def test_two_runtimes_ensure_each_environment_once(
    store: str, empty_database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(store, tmp_path, empty_database_url)
    first, second = await asyncio.gather(build_runtime(settings), build_runtime(settings))
    try:
        for round_ in range(ROUNDS):
            name = f"together-{round_}"
            (one, one_created), (two, two_created) = await asyncio.gather(
                first.environments.ensure(name), second.environments.ensure(name)
            )
            assert one == two
            assert sorted([one_created, two_created]) == [False, True]
            assert await count(first, sa.select(sa.func.count()).where(environments.c.name == name)) == 1
            kinds = await count(first, sa.select(sa.func.count()).where(api_keys.c.environment_id == one.id))
            assert kinds == len(KeyKind)
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_two_runtimes_pushing_one_folder_commit_each_version_once(
    store: str, empty_database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(store, tmp_path, empty_database_url)
    first, second = await asyncio.gather(build_runtime(settings), build_runtime(settings))
    try:
        environment, _ = await first.environments.ensure("development")
        folder = tmp_path / "workflows"
        for round_ in range(ROUNDS):
            write_workflow(folder, "hello", feed_workflow(f"Hello, round {round_}"))
            write_workflow(folder, "bye", feed_workflow(f"Bye, round {round_}"))
            one, two = await asyncio.gather(
                first.workflows.push_folder([environment.id], folder),
                second.workflows.push_folder([environment.id], folder),
            )
            for mine, theirs in zip(one[environment.id], two[environment.id], strict=True):
                assert mine.version == theirs.version
                assert mine.version.version == round_ + 1
                assert sorted([mine.changed, theirs.changed]) == [False, True]
        versions = await count(
            first,
            sa.select(sa.func.count()).where(workflow_versions.c.environment_id == environment.id),
        )
        assert versions == 2 * ROUNDS
    finally:
        await asyncio.gather(first.close(), second.close())


def start_serve(data_dir: Path, database_url: str, workflows_dir: Path) -> subprocess.Popen[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CLARION_")}
    environ = {
        **inherited,
        "CLARION_DATA_DIR": str(data_dir),
        "CLARION_PORT": str(_free_port()),
        "CLARION_WORKFLOWS_DIR": str(workflows_dir),
        "CLARION_DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "clarion", "serve"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_serving(process: subprocess.Popen[str]) -> str:
    """The process's output up to the line announcing its API, once it is there."""
    assert process.stdout is not None
    output = []
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.strip().startswith("API: http://"):
            return "".join(output)
    process.kill()
    raise AssertionError("clarion serve did not start:\n" + "".join(output) + process.stdout.read())


def wait_until_ready(base_url: str) -> None:
    """Once the process announced its API, its server may still be starting: wait until it answers."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            if httpx.get(base_url + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{base_url} did not become ready"
        time.sleep(0.05)


def assert_each_serve_delivers(api_urls: list[str], secret_key: str) -> None:
    """A trigger through each server reaches the recipient's feed."""
    headers = {"Authorization": f"Bearer {secret_key}"}
    for api_url in api_urls:
        response = httpx.post(
            f"{api_url}/workflows/hello/trigger", json={"recipients": [{"id": "ada"}]}, headers=headers
        )
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        messages = httpx.get(f"{api_urls[0]}/users/ada/messages", headers=headers).json()["items"]
        if len(messages) == len(api_urls):
            return
        assert time.monotonic() < deadline, messages
        time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


async def test_serve_processes_started_together_create_everything_once(
    store: str, empty_database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    workflows_dir = tmp_path / "workflows"
    write_workflow(workflows_dir, "hello", feed_workflow("Hello"))
    processes = [start_serve(data_dir, empty_database_url, workflows_dir) for _ in range(2)]
    try:
        outputs = [wait_until_serving(process) for process in processes]
        secret_keys = [line.split()[-1] for o in outputs for line in o.splitlines() if "secret key:" in line]
        assert len(secret_keys) == 2 and secret_keys[0] == secret_keys[1], outputs
        # Each process's worker runs what its API accepted (on PostgreSQL on a pool of its own).
        api_urls = [line.split()[-1] for o in outputs for line in o.splitlines() if "API: http" in line]
        for api_url in api_urls:
            wait_until_ready(api_url.removesuffix("/v1"))
        assert_each_serve_delivers(api_urls, secret_keys[0])
    finally:
        for process in processes:
            stop(process)
    for output in outputs:
        assert "workflows from" in output and "hello" in output, output

    # One channels file, whole, and no draft left beside it.
    channels_file = data_dir / "channels.yml"
    assert len(load_channels(channels_file)) > 0
    assert sorted(path.name for path in data_dir.iterdir() if "channels" in path.name) == ["channels.yml"]

    runtime = await build_runtime(make_settings(store, data_dir, empty_database_url), create_store=False)
    try:
        [environment] = await runtime.environments.all()
        assert environment.name == "development"
        keys = [key for key in await runtime.environments.list_keys() if key.environment == environment]
        assert sorted(key.kind for key in keys) == sorted(KeyKind)
        [workflow] = await runtime.workflows.store.list(environment.id)
        assert (workflow.key, workflow.current.version) == ("hello", 1)
    finally:
        await runtime.close()


@pytest.mark.parametrize("stopping_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_stopped_by_a_signal_closes_its_store(stopping_signal: signal.Signals, tmp_path: Path) -> None:
    """What an orchestrator (SIGTERM) or a terminal (SIGINT) stops leaves a closed SQLite store: its log
    merged into the file and removed, the worker's lock file gone."""
    data_dir = tmp_path / "data"
    workflows_dir = tmp_path / "workflows"
    write_workflow(workflows_dir, "hello", feed_workflow("Hello"))
    process = start_serve(data_dir, f"sqlite:///{data_dir / 'clarion.db'}", workflows_dir)
    output = wait_until_serving(process)
    wait_until_ready(output.strip().splitlines()[-1].split()[-1].removesuffix("/v1"))
    process.send_signal(stopping_signal)
    try:
        process.wait(timeout=30)
    finally:
        stop(process)
    if stopping_signal is signal.SIGTERM:
        assert process.returncode == 0
    assert (data_dir / "clarion.db").is_file()
    assert not (data_dir / "clarion.db-wal").exists()
    assert list((data_dir / "clarion.db-workers").iterdir()) == []

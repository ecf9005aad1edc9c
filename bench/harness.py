"""What the benchmarks share: free ports, server processes whose output is shown when they fail, `wrk`
runs, the bare framework's hello-world to divide by (at one or more load levels), a running `clarion`
server with its secret key, and a throw-away PostgreSQL database."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from clarion.runtime import Runtime
from clarion.store.environments import KeyKind

ROOT = Path(__file__).resolve().parent.parent
CLARION = [sys.executable, "-m", "clarion"]
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up")


@contextmanager
def process(args: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A server process whose output goes to a file (a pipe nobody reads would fill and stall it), shown
    if the process dies while measured."""
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield proc
        except Exception:
            output.seek(0)
            sys.stderr.write(output.read()[-4000:].decode(errors="replace"))
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> float:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script:
            lua.write(script)
    if script:
        args += ["-s", lua.name]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    os.unlink(lua.name)
    failures = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", output)
    if failures:
        raise RuntimeError(f"failed requests against {url}:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


Rate = Callable[[int, int], float]
"""A server's rate measured by wrk for a number of seconds at a number of connections."""

TURN_SECONDS = 2
"""A measurement alternates with hello-world's in turns this long: the machine's speed drifts within
minutes, by a quarter and more, so both must see the same minutes."""


@contextmanager
def hello_world() -> Iterator[Rate]:
    """A running hello-world server, and the function measuring its rate."""
    port = free_port()
    with process([sys.executable, str(ROOT / "bench" / "hello.py"), str(port)]):
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url)
        wrk(url, 2, 32)  # warm-up
        yield lambda seconds, connections: wrk(url, seconds, connections)


@dataclass(frozen=True)
class LoadLevel:
    connections: int
    rate: float
    hello: float
    """hello-world's rate at as many connections, in the same minutes."""


def at_load_levels(measure: Rate, hello: Rate, seconds: int, levels: Sequence[int]) -> list[LoadLevel]:
    """`measure` and hello-world for `seconds` each at every level, alternated turn by turn."""
    measured = []
    turns = max(1, seconds // TURN_SECONDS)
    for connections in levels:
        rates = [(measure(TURN_SECONDS, connections), hello(TURN_SECONDS, connections)) for _ in range(turns)]
        measured.append(
            LoadLevel(
                connections, sum(rate for rate, _ in rates) / turns, sum(rate for _, rate in rates) / turns
            )
        )
    return measured


def best_ratio(levels: Sequence[LoadLevel]) -> tuple[float, float]:
    """The rate and ratio to hello-world at the level where that ratio is highest. Rates at different
    levels were measured in different minutes and do not compare; a ratio compares within its minutes."""
    best = max(levels, key=lambda level: level.rate / level.hello)
    return best.rate, best.rate / best.hello


def describe_levels(levels: Sequence[LoadLevel]) -> str:
    return "; ".join(
        f"{level.connections}: {level.rate:,.0f}/{level.hello:,.0f} = {level.rate / level.hello:.1%}"
        for level in levels
    )


@dataclass(frozen=True)
class ClarionServer:
    base: str
    secret_key: str
    environ: dict[str, str]
    data_dir: Path


@contextmanager
def clarion_server(
    database_url: str,
    command: str = "serve",
    workflows: dict[str, dict[str, Any]] | None = None,
    workers: int = 0,
) -> Iterator[ClarionServer]:
    """`clarion serve` (or `api`) on a free port with a fresh data directory, once it answers; with
    `workflows` (key → workflow.json), those are its workflows folder; with `workers`, as many `clarion
    worker` processes beside it on the same store."""
    data_dir = tempfile.mkdtemp(prefix="clarion-bench-")
    for key, document in (workflows or {}).items():
        folder = Path(data_dir) / "workflows" / key
        folder.mkdir(parents=True)
        (folder / "workflow.json").write_text(json.dumps(document))
    port = free_port()
    env = {
        **os.environ,
        "CLARION_DATA_DIR": data_dir,
        "CLARION_PORT": str(port),
        "CLARION_RATE_LIMIT": "off",
        "CLARION_WORKFLOWS_DIR": str(Path(data_dir) / "workflows"),
    }
    if database_url:
        env["CLARION_DATABASE_URL"] = database_url
    try:
        if command != "serve":
            # `clarion api` does not create the development environment, and `environments create` needs
            # a store to create it in.
            for setup in (["migrate"], ["environments", "create", "development"]):
                subprocess.run([*CLARION, *setup], env=env, capture_output=True, check=True)
        with process([*CLARION, command], env=env), ExitStack() as beside:
            for _ in range(workers):
                beside.enter_context(process([*CLARION, "worker"], env=env))
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base + "/v1/users")
            keys = subprocess.run(
                [*CLARION, "keys", "list"], env=env, capture_output=True, text=True, check=True
            ).stdout
            key = next(line.split("\t")[2] for line in keys.splitlines() if "\tsecret\t" in line)
            yield ClarionServer(base, key, env, Path(data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    name = f"clarion_bench_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def each_store(stores: Sequence[str], postgres: str, measure: Callable[[str], T]) -> Iterator[tuple[str, T]]:
    """`measure` on each of `stores` ("sqlite", "postgres"), given its database URL: empty for SQLite in
    the data directory, a throw-away database on the `postgres` server."""
    for store in stores:
        if store == "postgres":
            with postgres_database(postgres) as url:
                yield store, measure(url)
        else:
            yield store, measure("")


def benchmark_arguments(description: str | None, seconds: int | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: the PostgreSQL server and the stores to measure; and, unless
    `seconds` is None (a benchmark in process, without wrk), seconds per measurement and wrk connections
    (the load levels)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if seconds is not None:
        parser.add_argument("--seconds", type=int, default=seconds)
        parser.add_argument(
            "--connections",
            type=lambda text: [int(part) for part in text.split(",")],
            default=[32],
            help="wrk connections, or load levels separated by commas: the best ratio of them is the result",
        )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--stores", default="sqlite,postgres")
    return parser


async def workflows_environment(runtime: Runtime, prefix: str, workflows_dir: Path) -> tuple[str, str]:
    """A new environment named `prefix-…` with the workflows of `workflows_dir`: its id and secret key."""
    environment, _ = await runtime.environments.ensure(f"{prefix}-{uuid.uuid4().hex[:8]}")
    await runtime.workflows.push_folder([environment.id], workflows_dir)
    key = next(
        k.key
        for k in await runtime.environments.list_keys()
        if k.environment.id == environment.id and k.kind is KeyKind.SECRET
    )
    return environment.id, key

"""Identify-user and get-user throughput as a ratio of the bare framework's hello-world, on SQLite and
PostgreSQL, measured in one run.

Needs `wrk` on the PATH (Debian: `apt-get install wrk`). Run from the repository root:

    .venv/bin/python -m bench.recipients [--seconds 10] [--connections 32] [--postgres URL]

Each server is a separate process (`clarion serve` / bench/hello.py) loaded by wrk from another process
over loopback; hello-world is measured around every Clarion measurement, since the machine's speed drifts.
Goals: identify >= 30% and get >= 50% of hello-world.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
CLARION = [sys.executable, "-m", "clarion"]

IDENTIFY_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local path = "/v1/users/bench-" .. (counter % 5000)
  local body = '{"name":"Bench User","email":"bench@example.com","plan":{"tier":"pro","n":' .. counter .. '}}'
  local headers = {["Authorization"] = "Bearer KEY", ["Content-Type"] = "application/json"}
  return wrk.format("PUT", path, headers, body)
end
"""

GET_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/users/bench-" .. (counter % 5000), {["Authorization"] = "Bearer KEY"})
end
"""


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


@contextmanager
def hello_world(connections: int) -> Iterator[Callable[[int], float]]:
    """A running hello-world server, and a function measuring its rate for a number of seconds."""
    port = free_port()
    with process([sys.executable, str(ROOT / "bench" / "hello.py"), str(port)]):
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url)
        wrk(url, 2, connections)  # warm-up
        yield lambda seconds: wrk(url, seconds, connections)


def clarion_ratios(
    database_url: str, seconds: int, connections: int, hello: Callable[[int], float]
) -> dict[str, tuple[float, float]]:
    """(requests/s, ratio to hello-world) for identify and get. The machine's speed drifts, so hello-world
    is measured right before and right after each Clarion measurement and the ratio taken to their mean."""
    data_dir = tempfile.mkdtemp(prefix="clarion-bench-")
    port = free_port()
    env = {**os.environ, "CLARION_DATA_DIR": data_dir, "CLARION_PORT": str(port), "CLARION_RATE_LIMIT": "off"}
    if database_url:
        env["CLARION_DATABASE_URL"] = database_url
    try:
        with process([*CLARION, "serve"], env=env):
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base + "/v1/users")
            keys = subprocess.run(
                [*CLARION, "keys", "list"], env=env, capture_output=True, text=True, check=True
            ).stdout
            key = next(line.split("\t")[2] for line in keys.splitlines() if "\tsecret\t" in line)
            scripts = {"identify": IDENTIFY_SCRIPT.replace("KEY", key), "get": GET_SCRIPT.replace("KEY", key)}
            wrk(base, 2, connections, scripts["identify"])  # warm-up, also creates the 5,000 users read below
            results: dict[str, tuple[float, float]] = {}
            before = hello(seconds)
            for name, script in scripts.items():
                rate = wrk(base, seconds, connections, script)
                after = hello(seconds)
                results[name] = (rate, rate / ((before + after) / 2))
                before = after
            return results
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    import asyncio

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    with hello_world(args.connections) as hello:
        print(f"hello-world (Starlette + uvicorn): {hello(args.seconds):,.0f} req/s")
        for store in args.stores.split(","):
            if store == "postgres":
                with postgres_database(args.postgres) as url:
                    results = clarion_ratios(url, args.seconds, args.connections, hello)
            else:
                results = clarion_ratios("", args.seconds, args.connections, hello)
            (identify, identify_ratio), (get, get_ratio) = results["identify"], results["get"]
            print(
                f"{store:9} identify {identify:8,.0f} req/s = {identify_ratio:6.1%} of hello (goal 30%)  "
                f"get {get:8,.0f} req/s = {get_ratio:6.1%} (goal 50%)"
            )


if __name__ == "__main__":
    main()

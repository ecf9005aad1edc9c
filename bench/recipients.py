"""Identify-user and get-user throughput as a ratio of the bare framework's hello-world, on SQLite and
PostgreSQL, measured in one run.

Needs `wrk` on the PATH (Debian: `apt-get install wrk`). Run from the repository root:

    .venv/bin/python -m bench.recipients [--seconds 10] [--connections 32] [--postgres URL]

Each server is a separate process (`clarion serve` / bench/hello.py) loaded by wrk from another process
over loopback; hello-world is measured around every Clarion measurement, since the machine's speed drifts.
Goals: identify >= 30% and get >= 50% of hello-world.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable

from bench.harness import benchmark_arguments, clarion_server, hello_world, postgres_database, wrk

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


def clarion_ratios(
    database_url: str, seconds: int, connections: int, hello: Callable[[int], float]
) -> dict[str, tuple[float, float]]:
    """(requests/s, ratio to hello-world) for identify and get. The machine's speed drifts, so hello-world
    is measured right before and right after each Clarion measurement and the ratio taken to their mean."""
    with clarion_server(database_url) as server:
        key = server.secret_key
        scripts = {"identify": IDENTIFY_SCRIPT.replace("KEY", key), "get": GET_SCRIPT.replace("KEY", key)}
        wrk(
            server.base, 2, connections, scripts["identify"]
        )  # warm-up, also creates the 5,000 users read below
        results: dict[str, tuple[float, float]] = {}
        before = hello(seconds)
        for name, script in scripts.items():
            rate = wrk(server.base, seconds, connections, script)
            after = hello(seconds)
            results[name] = (rate, rate / ((before + after) / 2))
            before = after
        return results


def main() -> None:
    parser = benchmark_arguments(__doc__, seconds=10)
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

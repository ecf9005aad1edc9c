"""Identify-user and get-user throughput as a ratio of the bare framework's hello-world, on SQLite and
PostgreSQL, measured in one run.

Needs `wrk` on the PATH (Debian: `apt-get install wrk`). Run from the repository root:

    .venv/bin/python -m bench.recipients [--seconds 10] [--connections 32[,64,…]] [--postgres URL]

Each server is a separate process (`clarion serve` / bench/hello.py) loaded by wrk from another process
over loopback; hello-world alternates with every Clarion measurement in turns of two seconds, since the
machine's speed drifts. Given several load levels, the best ratio of them is the result.
Goals: identify >= 30% and get >= 50% of hello-world.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence

from bench.harness import (
    LoadLevel,
    Rate,
    at_load_levels,
    benchmark_arguments,
    best_ratio,
    clarion_server,
    describe_levels,
    hello_world,
    postgres_database,
    wrk,
)

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


def clarion_levels(
    database_url: str, seconds: int, levels: Sequence[int], hello: Rate
) -> dict[str, list[LoadLevel]]:
    """Identify's and get's rates at each load level, each alternated with hello-world's."""
    with clarion_server(database_url) as server:
        key = server.secret_key
        scripts = {"identify": IDENTIFY_SCRIPT.replace("KEY", key), "get": GET_SCRIPT.replace("KEY", key)}
        # The warm-up also creates the 5,000 users read below.
        wrk(server.base, 2, levels[0], scripts["identify"])

        def measure(script: str) -> list[LoadLevel]:
            return at_load_levels(
                lambda turn, connections: wrk(server.base, turn, connections, script), hello, seconds, levels
            )

        return {name: measure(script) for name, script in scripts.items()}


def main() -> None:
    parser = benchmark_arguments(__doc__, seconds=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    with hello_world() as hello:
        for store in args.stores.split(","):
            if store == "postgres":
                with postgres_database(args.postgres) as url:
                    results = clarion_levels(url, args.seconds, args.connections, hello)
            else:
                results = clarion_levels("", args.seconds, args.connections, hello)
            identify, identify_ratio = best_ratio(results["identify"])
            get, get_ratio = best_ratio(results["get"])
            print(
                f"{store:9} identify {identify:8,.0f} req/s = {identify_ratio:6.1%} of hello (goal 30%)  "
                f"get {get:8,.0f} req/s = {get_ratio:6.1%} (goal 50%)"
            )
            if len(args.connections) > 1:
                for name, levels in results.items():
                    print(f"{store:9}   {name} by connections: {describe_levels(levels)}")


if __name__ == "__main__":
    main()

"""Fixtures of the compatibility suite: one live `clarion serve` per store and a fresh environment per test,
reached through the official Knock Python SDK (`knockapi`).

The server runs once per store (SQLite, then PostgreSQL through `postgres_database_url` of
`tests/conftest.py`, skipped the same way). Every test gets its own environment from
`clarion environments create`, so tests never see each other's data. Clients validate every response
against the SDK's models (`_strict_response_validation=True`) and never retry, so a wrong shape or a 5xx
fails the test that caused it. The server process itself lives in `live_server.py`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import knockapi
import pytest
from knockapi import Knock
from knockapi.types import BulkOperation

from tests.compat.live_server import EnvironmentKeys, LiveServer
from tests.conftest import fresh_postgres_database

T = TypeVar("T")

BULK_TIMEOUT_SECONDS = 30.0


def outside_event_loop(function: Callable[[], T]) -> T:
    """Run blocking CLI code in a thread of its own: the CLI starts its own event loop with asyncio.run."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


def client_error_or(call: Callable[[], T]) -> T | knockapi.APIStatusError:
    """The call's result, or the 4xx it was refused with; a 5xx (always a bug) fails the test."""
    try:
        return call()
    except knockapi.APIStatusError as error:
        if error.status_code >= 500:
            raise
        return error


@pytest.fixture(scope="session")
def live_server(store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`clarion serve` on a free port, with its own data directory and, on PostgreSQL, its own database:
    its in-process worker must never take the jobs of the in-process tests, which run with other channels."""
    with contextlib.ExitStack() as stack:
        database_url = ""
        if store == "postgres":
            database_url = stack.enter_context(fresh_postgres_database("compatibility tests"))
        server = LiveServer(data_dir=tmp_path_factory.mktemp(f"compat-{store}"), database_url=database_url)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def development_secret_key(live_server: LiveServer) -> str:
    """The secret key of the environment `clarion serve` creates on first start, from `clarion keys list`."""
    return live_server.keys()["development"]["secret"]


def new_environment(server: LiveServer) -> EnvironmentKeys:
    return outside_event_loop(server.create_environment)


def sdk_client(server: LiveServer, api_key: str) -> Knock:
    return Knock(api_key=api_key, base_url=server.url, max_retries=0, _strict_response_validation=True)


@pytest.fixture
def environment(live_server: LiveServer) -> EnvironmentKeys:
    """A fresh environment for this test."""
    return new_environment(live_server)


@pytest.fixture
def knock(live_server: LiveServer, environment: EnvironmentKeys) -> Iterator[Knock]:
    """The official SDK, with the test environment's secret key."""
    with sdk_client(live_server, environment.secret_key) as client:
        yield client


@pytest.fixture
def public_knock(live_server: LiveServer, environment: EnvironmentKeys) -> Iterator[Knock]:
    """The official SDK with the test environment's publishable key, as a browser would call."""
    with sdk_client(live_server, environment.publishable_key) as client:
        yield client


@pytest.fixture
def other_knock(live_server: LiveServer) -> Iterator[Knock]:
    """The SDK for a second environment: it must never see the test environment's data."""
    with sdk_client(live_server, new_environment(live_server).secret_key) as client:
        yield client


def wait_for_bulk_operation(knock: Knock, operation: BulkOperation) -> BulkOperation:
    """Poll `GET /v1/bulk_operations/{id}` until the operation has finished (completed or failed)."""
    deadline = time.monotonic() + BULK_TIMEOUT_SECONDS
    current = operation
    while current.status not in ("completed", "failed"):
        if time.monotonic() > deadline:
            raise AssertionError(f"bulk operation {operation.id} still {current.status!r} after polling")
        time.sleep(0.05)
        current = knock.bulk_operations.get(operation.id)
    return current


@pytest.fixture
def run_bulk(knock: Knock) -> Callable[[BulkOperation], BulkOperation]:
    """`run_bulk(knock.users.bulk.identify(...))` → the finished operation."""
    return lambda operation: wait_for_bulk_operation(knock, operation)

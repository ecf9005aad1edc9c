"""The database bounds are settings: read from the environment, refused when not a positive number, and the
process decides which one applies. The fetch step's bound and address lists are read and checked alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarion.config import settings_from_env
from clarion.engine.address_policy import HostList
from clarion.runtime import build_runtime
from tests.conftest import make_settings


def test_the_database_bounds_have_defaults_and_are_read_from_the_environment() -> None:
    defaults = settings_from_env({})
    assert (defaults.request_db_timeout, defaults.job_db_timeout) == (5.0, 30.0)
    chosen = settings_from_env({"CLARION_REQUEST_DB_TIMEOUT": "2.5", "CLARION_JOB_DB_TIMEOUT": "60"})
    assert (chosen.request_db_timeout, chosen.job_db_timeout) == (2.5, 60.0)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", ""])
def test_a_bound_that_is_not_a_positive_number_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CLARION_REQUEST_DB_TIMEOUT must be a positive number of seconds"):
        settings_from_env({"CLARION_REQUEST_DB_TIMEOUT": value})


async def test_a_process_serving_requests_takes_the_request_bound_a_worker_the_job_bound(
    store: str, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(store, tmp_path, database_url, request_db_timeout=2.0, job_db_timeout=20.0)
    for serves_requests, expected in ((True, 2.0), (False, 20.0)):
        runtime = await build_runtime(settings, serves_requests=serves_requests)
        try:
            assert runtime.database.wait_seconds == expected
        finally:
            await runtime.close()


def test_the_fetch_settings_have_defaults_and_are_read_from_the_environment() -> None:
    defaults = settings_from_env({})
    assert (defaults.fetch_timeout, defaults.fetch_allow_hosts, defaults.fetch_deny_hosts) == (
        15.0,
        HostList(),
        HostList(),
    )
    chosen = settings_from_env(
        {
            "CLARION_FETCH_TIMEOUT": "2.5",
            "CLARION_FETCH_ALLOW_HOSTS": "127.0.0.1, 10.0.0.0/8, billing.internal",
            "CLARION_FETCH_DENY_HOSTS": "10.0.0.13",
        }
    )
    assert chosen.fetch_timeout == 2.5
    assert chosen.fetch_allow_hosts == HostList.parse("127.0.0.1,10.0.0.0/8,billing.internal", "")
    assert chosen.fetch_deny_hosts == HostList.parse("10.0.0.13", "")


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"CLARION_FETCH_TIMEOUT": "0"}, "CLARION_FETCH_TIMEOUT must be a positive number of seconds"),
        (
            {"CLARION_FETCH_ALLOW_HOSTS": "10.0.0.1/8"},
            "CLARION_FETCH_ALLOW_HOSTS: '10.0.0.1/8' is not a valid",
        ),
        ({"CLARION_FETCH_DENY_HOSTS": "a b"}, "CLARION_FETCH_DENY_HOSTS entries must be host names"),
    ],
)
def test_invalid_fetch_settings_are_refused(environment: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_env(environment)

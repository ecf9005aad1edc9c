"""The database bounds are settings: read from the environment, refused when not a positive number, and the
process decides which one applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarion.config import settings_from_env
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

from __future__ import annotations

import random

import pytest

from clarion.jobs.backoff import MAXIMUM_SECONDS, backoff_seconds


@pytest.mark.parametrize(("attempt", "expected"), [(1, 17), (2, 19), (3, 23), (4, 31), (8, 271)])
def test_backoff_grows_exponentially_within_ten_percent(attempt: int, expected: float) -> None:
    rng = random.Random(attempt)
    delays = [backoff_seconds(attempt, rng=rng) for _ in range(200)]
    assert all(expected * 0.9 <= delay <= expected * 1.1 for delay in delays)
    assert len(set(delays)) > 100, "jittered, so jobs failing together come back apart"


def test_backoff_is_capped() -> None:
    assert backoff_seconds(40, rng=random.Random(0)) <= MAXIMUM_SECONDS * 1.1
    assert backoff_seconds(1000, rng=random.Random(0)) <= MAXIMUM_SECONDS * 1.1

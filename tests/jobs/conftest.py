"""Fixtures for the job queue: an engine of the session's store driven by a clock the test moves, and a
queue name of its own per test, so that tests never claim each other's jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from clarion.jobs.engines.base import QueueEngine
from clarion.runtime import Runtime, create_queue_engine


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(runtime: Runtime, clock: FakeClock) -> QueueEngine:
    return create_queue_engine(runtime.database, clock=clock)


@pytest.fixture
def queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"

from __future__ import annotations

from collections.abc import Awaitable, Callable

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.executor import Executor
from clarion.jobs.job import Cancel, Job, JobHandler, JobRecord, JobState, Outcome, Snooze
from tests.jobs.conftest import FakeClock


def returning(outcome: Outcome) -> Callable[[JobRecord], Awaitable[Outcome]]:
    async def handler(job: JobRecord) -> Outcome:
        return outcome

    return handler


async def failing(job: JobRecord) -> Outcome:
    raise ValueError(f"job {job.id} cannot be done")


HANDLERS: dict[str, JobHandler] = {
    "ok": returning(None),
    "snooze": returning(Snooze(3600)),
    "cancel": returning(Cancel("not wanted")),
    "fail": failing,
}


async def run_one(engine: QueueEngine, queue: str, job: Job) -> tuple[JobState | None, JobRecord]:
    await engine.enqueue(job)
    (claimed,) = await engine.claim(queue, 1, "worker", 30)
    state = await Executor(engine, HANDLERS).execute(claimed)
    stored = await engine.get(claimed.id)
    assert stored is not None
    return state, stored


async def test_returning_none_completes(engine: QueueEngine, queue: str) -> None:
    state, stored = await run_one(engine, queue, Job("ok", queue=queue))
    assert state is stored.state is JobState.COMPLETED


async def test_snooze_reschedules(engine: QueueEngine, queue: str) -> None:
    state, stored = await run_one(engine, queue, Job("snooze", queue=queue))
    assert state is stored.state is JobState.SCHEDULED
    assert stored.max_attempts == 21


async def test_cancel_records_the_reason(engine: QueueEngine, queue: str) -> None:
    state, stored = await run_one(engine, queue, Job("cancel", queue=queue))
    assert state is stored.state is JobState.CANCELLED
    assert "not wanted" in stored.errors[-1]["error"]


async def test_raising_retries_with_the_traceback(engine: QueueEngine, queue: str) -> None:
    state, stored = await run_one(engine, queue, Job("fail", queue=queue, max_attempts=2))
    assert state is stored.state is JobState.RETRYABLE
    error = stored.errors[-1]["error"]
    assert "Traceback" in error
    assert f"ValueError: job {stored.id} cannot be done" in error


async def test_raising_on_the_last_attempt_discards(engine: QueueEngine, queue: str) -> None:
    state, stored = await run_one(engine, queue, Job("fail", queue=queue, max_attempts=1))
    assert state is stored.state is JobState.DISCARDED


async def test_a_kind_without_handler_is_a_failed_attempt(engine: QueueEngine, queue: str) -> None:
    state, stored = await run_one(engine, queue, Job("no-such-kind", queue=queue, max_attempts=3))
    assert state is stored.state is JobState.RETRYABLE
    assert "no handler for the job kind 'no-such-kind'" in stored.errors[-1]["error"]


async def test_an_outcome_for_a_job_taken_away_is_dropped(
    engine: QueueEngine, queue: str, clock: FakeClock
) -> None:
    await engine.enqueue(Job("ok", queue=queue))
    (claimed,) = await engine.claim(queue, 1, "worker", 30)
    clock.advance(31)
    await engine.rescue()
    assert await Executor(engine, HANDLERS).execute(claimed) is None
    stored = await engine.get(claimed.id)
    assert stored is not None
    assert stored.state is JobState.AVAILABLE

"""What a job is: a unit of background work (`kind` + JSON `args`) stored in the `jobs` table and run at
least once by a worker; its states, and the outcomes a job handler may return.

    scheduled ──(due)──┐        ┌──> completed
    retryable ──(due)──┤        ├──> cancelled   (handler returned Cancel)
                       v        │
    (insert) ──> available ──> executing ──> retryable (raised, attempts left) / discarded (none left)
                                │   └──> scheduled   (handler returned Snooze)
                                └──(worker died or lease expired)──> available / discarded (lifeline)

A job with a `unique_key` is not inserted while another job with that key exists in any state but
`cancelled` or `discarded`; the insert returns the existing job instead (`JobRecord.conflict`). A kind may
register a `DiscardHook`, which runs in the very transaction that discards one of its jobs, whichever way
it is discarded (last attempt failed, or rescued on its last attempt). How the states are stored and
changed lives in `clarion.jobs.engines`; running jobs lives in `clarion.jobs.worker`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 20


class JobState(StrEnum):
    AVAILABLE = "available"
    SCHEDULED = "scheduled"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.CANCELLED, JobState.DISCARDED})
"""States a job never leaves; the pruner deletes such jobs once they are old enough."""


@dataclass(slots=True)  # made per trigger: a frozen one costs three times as much
class Job:
    """A job to insert. `scheduled_at` in the future delays it; lower `priority` values run first (0 to 9)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    scheduled_at: datetime | None = None
    unique_key: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= 9:
            raise ValueError(f"priority must be between 0 and 9, not {self.priority}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")


@dataclass(frozen=True)
class JobRecord:
    """A stored job. `attempt` counts claims, the current one included; `errors` holds one entry per
    failed attempt (`{"attempt", "at", "error"}`)."""

    id: int
    kind: str
    args: dict[str, Any]
    queue: str
    state: JobState
    priority: int
    attempt: int
    max_attempts: int
    unique_key: str | None
    errors: list[dict[str, Any]]
    scheduled_at: datetime
    attempted_at: datetime | None
    attempted_by: str | None
    lease_expires_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    discarded_at: datetime | None
    inserted_at: datetime
    conflict: bool = False
    """True when an insert found an existing job with the same unique key and returned it instead."""


@dataclass(frozen=True)
class Snooze:
    """Run the job again in `seconds`, without counting this attempt against `max_attempts`."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"a snooze lasts at least 0 seconds, not {self.seconds}")


@dataclass(frozen=True)
class Cancel:
    """Stop the job for good; `reason` is recorded in its errors."""

    reason: str


@dataclass(frozen=True)
class Acknowledged:
    """The handler completed the job itself, in the transaction that recorded its work
    (`QueueEngine.complete_in`), so the work and the job's completion commit together or not at all."""


class Superseded(Exception):
    """Raised by a handler whose job is no longer this attempt's (rescued and claimed again, or its work
    already done by another attempt): its transaction rolls back and the attempt ends without an outcome."""


Outcome = Snooze | Cancel | Acknowledged | None
"""What a handler returns: None completes the job. Raising an exception fails the attempt (retry)."""

JobHandler = Callable[[JobRecord], Awaitable[Outcome]]
"""Runs one job of a kind. It must be idempotent: a job runs at least once, and more than once when a worker
dies or stalls past its heartbeats or its lease."""

DiscardHook = Callable[["AsyncConnection", JobRecord], Awaitable[None]]
"""Reacts to a job of its kind being discarded, with the connection of the discarding transaction (so its
writes commit with the discard, or not at all) and the job as discarded. It runs in a savepoint: when it
raises, the error is logged, its writes are undone and the job is discarded all the same."""

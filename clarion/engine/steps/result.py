"""What executing one step produced, for the run executor to checkpoint in one transaction: the run's
events, the messages to create, what `refs.<step_ref>` conditions will read, and how long the run waits
before its next step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clarion.store.messages import NewMessage
from clarion.store.workflow_runs import RunEvent


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class StepResult:
    events: list[RunEvent] = field(default_factory=list)
    messages: list[NewMessage] = field(default_factory=list)
    step_result: dict[str, Any] | None = None
    """Stored under the step's ref in the run's `step_results`."""
    wait_seconds: float = 0.0
    """How long the run pauses before its next step."""

    @classmethod
    def skipped(cls, ref: str, step_type: str, reason: str, **data: Any) -> StepResult:
        """The step did nothing, for `reason`; the run goes on."""
        return cls(
            events=[
                RunEvent("step_skipped", step_ref=ref, step_type=step_type, data={"reason": reason, **data})
            ],
            step_result={"skipped": reason, "message_ids": []},
        )

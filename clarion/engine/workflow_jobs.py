"""The jobs that workflows run on: one `workflow_trigger` job per accepted trigger, which starts its runs
(`clarion.engine.trigger`), and a `workflow_step` job for each step a run waits at
(`clarion.engine.run_executor`), all in the `workflows` queue."""

from __future__ import annotations

from typing import Any

from clarion.jobs.job import Job

WORKFLOW_QUEUE = "workflows"
TRIGGER_JOB = "workflow_trigger"
STEP_JOB = "workflow_step"
STEP_ATTEMPTS = 3


def step_job(environment_id: str, run_id: str, position: str, **job: Any) -> Job:
    """The job that executes the run's step at `position`; one per (run, position) ever."""
    return Job(
        kind=STEP_JOB,
        queue=WORKFLOW_QUEUE,
        args={"environment_id": environment_id, "run_id": run_id, "position": position},
        unique_key=f"{STEP_JOB}:{run_id}:{position}",
        max_attempts=STEP_ATTEMPTS,
        **job,
    )

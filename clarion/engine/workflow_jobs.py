"""The jobs that workflows run on: one `workflow_trigger` job per accepted trigger, which starts its runs
(`clarion.engine.trigger`), whether the API accepted it or a `trigger_workflow` step made it, and a
`workflow_step` job for each step that runs wait at (`clarion.engine.run_executor`), all in the
`workflows` queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from clarion.jobs.job import Job, JobRecord

WORKFLOW_QUEUE = "workflows"
TRIGGER_JOB = "workflow_trigger"
STEP_JOB = "workflow_step"
TRIGGER_ATTEMPTS = 8
"""A trigger job fails only while the store does: eight attempts, backed off, span about six minutes."""
TRIGGER_DEPTH = "trigger_depth"
"""How many `trigger_workflow` steps led to a trigger: in its job's args (absent for the API's), and in
its runs' settings, where the step reads it to stop a workflow triggering itself without end."""
STEP_ATTEMPTS = 3
RUNS_PER_STEP_JOB = 500
"""How many runs waiting at the same step until the same moment one step job executes at most."""


def trigger_job(
    environment_id: str,
    workflow_run_id: str,
    workflow_key: str,
    version_id: str,
    *,
    source: str,
    request: Any,
    depth: int = 0,
    unique_key: str | None = None,
) -> Job:
    """The job that starts the runs of a trigger of `workflow_key`, pinned to `version_id`: `request` is
    the trigger as `TriggerWorkflowRequest` takes it (its JSON, or the document), `source` the run's
    `trigger_source`."""
    args: dict[str, Any] = {
        "environment_id": environment_id,
        "workflow_run_id": workflow_run_id,
        "workflow_key": workflow_key,
        "version_id": version_id,
        "trigger_source": source,
        "request": request,
    }
    if depth:
        args[TRIGGER_DEPTH] = depth
    return Job(
        kind=TRIGGER_JOB,
        queue=WORKFLOW_QUEUE,
        max_attempts=TRIGGER_ATTEMPTS,
        args=args,
        unique_key=unique_key,
    )


def step_job(
    environment_id: str, run_ids: Sequence[str], position: str, *, scheduled_at: datetime | None = None
) -> Job:
    """The job that executes the step at `position` of the runs `run_ids`, which wait there together (the
    runs of one trigger whose delay ends at the same moment) until `scheduled_at`. A run split off a job
    of many, where its step raised, gets a job of its own at the same position: the key tells them apart
    by their size. A run may wait at one step more than once (a fetch between attempts, a batch's
    window extended): the key tells those waits apart by their moment."""
    key = f"{STEP_JOB}:{run_ids[0]}:{position}:{len(run_ids)}"
    return Job(
        kind=STEP_JOB,
        queue=WORKFLOW_QUEUE,
        args={"environment_id": environment_id, "run_ids": list(run_ids), "position": position},
        unique_key=key if scheduled_at is None else f"{key}:{scheduled_at.timestamp():.6f}",
        max_attempts=STEP_ATTEMPTS,
        scheduled_at=scheduled_at,
    )


def step_job_runs(job: JobRecord) -> list[str]:
    """The runs a step job executes (a job queued by a release that named one run has `run_id`)."""
    run_ids: list[str] = job.args["run_ids"] if "run_ids" in job.args else [job.args["run_id"]]
    return run_ids

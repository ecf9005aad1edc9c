"""The jobs that workflows run on: one `workflow_trigger` job per accepted trigger, which starts its runs
(`clarion.engine.trigger`), and a `workflow_step` job for each step that runs wait at
(`clarion.engine.run_executor`), all in the `workflows` queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clarion.jobs.job import Job, JobRecord

WORKFLOW_QUEUE = "workflows"
TRIGGER_JOB = "workflow_trigger"
STEP_JOB = "workflow_step"
STEP_ATTEMPTS = 3
RUNS_PER_STEP_JOB = 500
"""How many runs waiting at the same step until the same moment one step job executes at most."""


def step_job(environment_id: str, run_ids: Sequence[str], position: str, **job: Any) -> Job:
    """The job that executes the step at `position` of the runs `run_ids`, which wait there together (the
    runs of one trigger whose delay ends at the same moment). A run split off a job of many, where its
    step raised, gets a job of its own at the same position: the key tells them apart by their size."""
    return Job(
        kind=STEP_JOB,
        queue=WORKFLOW_QUEUE,
        args={"environment_id": environment_id, "run_ids": list(run_ids), "position": position},
        unique_key=f"{STEP_JOB}:{run_ids[0]}:{position}:{len(run_ids)}",
        max_attempts=STEP_ATTEMPTS,
        **job,
    )


def step_job_runs(job: JobRecord) -> list[str]:
    """The runs a step job executes (a job queued by a release that named one run has `run_id`)."""
    run_ids: list[str] = job.args["run_ids"] if "run_ids" in job.args else [job.args["run_id"]]
    return run_ids

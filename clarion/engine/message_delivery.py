"""Delivering a message that its channel step held for the step's send window: a `deliver_message` job,
scheduled at the window's opening, makes it go then.

Clarion delivers in-app feed messages itself, by storing them. One held for a send window is stored
`queued`, which keeps it out of the feed and its counts, and its job makes it `delivered` (the status and
a `message.delivered` event) when the window opens. Messages of other channels go out through providers,
which Clarion does not call yet, so a channel step enqueues no job for them: held, they stay `queued`
with their `scheduled_at`, like every message of theirs, and a job that names one leaves it so.

The messages of one pass held until the same moment share a job, up to `MESSAGES_PER_DELIVERY_JOB`,
which delivers them in one statement, as the runs waiting at one step until one moment share a step job.
A message is in one job only, so a job is known by its first message (its unique key). A job may run
twice (its worker died after the commit): only messages still `queued` are delivered, so the second run
changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from clarion.channels import ChannelRegistry, ChannelType
from clarion.engine.workflow_jobs import WORKFLOW_QUEUE
from clarion.jobs.job import Job, JobRecord, Outcome
from clarion.store.db import Database
from clarion.store.messages import mark_delivered

DELIVERY_JOB = "deliver_message"
MESSAGES_PER_DELIVERY_JOB = 500


class DeliveryJobs:
    """The delivery jobs of the messages that one pass holds for send windows, in one environment: one per
    moment the messages are due at, until it names `MESSAGES_PER_DELIVERY_JOB` of them."""

    def __init__(self, environment_id: str) -> None:
        self.environment_id = environment_id
        self._filling: dict[datetime, Job] = {}

    def deliver(self, message_id: str, at: datetime) -> Job:
        """The job that delivers `message_id` at `at`: one shared with the messages held until then
        already, unless it is full. The runs whose outcomes share it enqueue it once
        (`clarion.engine.step_protocol.StepOutcome.jobs`)."""
        job = self._filling.get(at)
        if job is not None and len(job.args["message_ids"]) < MESSAGES_PER_DELIVERY_JOB:
            job.args["message_ids"].append(message_id)
            return job
        job = self._filling[at] = Job(
            kind=DELIVERY_JOB,
            queue=WORKFLOW_QUEUE,
            args={"environment_id": self.environment_id, "message_ids": [message_id]},
            scheduled_at=at,
            unique_key=f"{DELIVERY_JOB}:{message_id}",
        )
        return job


async def deliver_messages(database: Database, channels: ChannelRegistry, job: JobRecord) -> Outcome:
    """The `deliver_message` job: its in-app feed messages still `queued` become `delivered`."""
    feeds = [channel.id for channel in channels if channel.type is ChannelType.IN_APP_FEED]
    async with database.writer.begin() as connection:
        await mark_delivered(connection, job.args["environment_id"], job.args["message_ids"], feeds)
    return None

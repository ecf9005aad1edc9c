"""Workflow recipient runs on the wire: `WorkflowRecipientRun`, its detail with events, and the list."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from clarion.schemas.base import PageInfo, ResponseModel, Timestamp, TypedResponseModel
from clarion.store.ids import stable_ksuid
from clarion.store.workflow_runs import RunEventRecord, RunRecord

SOURCE_QUALIFIER = ":"
"""A run's trigger source is stored as its type, or as `type:qualifier` where Knock's
`WorkflowRecipientRunTriggerSource` names what started it: `audience:<key>` for an audience entry
(`clarion.engine.audience_entry`)."""


def trigger_source(record: RunRecord) -> dict[str, Any]:
    """Knock's `WorkflowRecipientRunTriggerSource` of a run."""
    source_type, _, qualifier = record.trigger_source.partition(SOURCE_QUALIFIER)
    source: dict[str, Any] = {"type": source_type, "cancellation_key": record.cancellation_key}
    if source_type == "audience":
        source["audience_key"] = qualifier
    return source


class WorkflowRecipientRun(TypedResponseModel):
    typename: str = Field(default="WorkflowRecipientRun", alias="__typename")
    id: str
    workflow_run_id: str
    workflow: str
    status: str
    recipient: str | dict[str, str]
    actor: str | dict[str, str] | None
    tenant: str | None
    error_count: int
    trigger_source: dict[str, Any]
    inserted_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def fields_of(cls, record: RunRecord) -> dict[str, Any]:
        return {
            "id": record.id,
            "workflow_run_id": record.workflow_run_id,
            "workflow": record.workflow_key,
            "status": record.status.value,
            "recipient": record.recipient.reference(),
            "actor": None if record.actor is None else record.actor.reference(),
            "tenant": record.tenant,
            "error_count": record.error_count,
            "trigger_source": trigger_source(record),
            "inserted_at": record.inserted_at,
            "updated_at": record.updated_at,
        }

    @classmethod
    def from_record(cls, record: RunRecord) -> WorkflowRecipientRun:
        return cls.trusted(cls.fields_of(record))


class WorkflowRecipientRunEvent(TypedResponseModel):
    typename: str = Field(default="WorkflowRecipientRunEvent", alias="__typename")
    id: str
    event: str
    status: str
    step_ref: str | None
    step_type: str | None
    attempt: int
    data: dict[str, Any] | None
    inserted_at: Timestamp

    @classmethod
    def from_record(cls, run_id: str, index: int, record: RunEventRecord) -> WorkflowRecipientRunEvent:
        """The `index`th event of the run `run_id`."""
        event = record.event
        return cls.trusted(
            {
                "id": record.id or stable_ksuid(record.inserted_at, f"{run_id}:{index}"),
                "event": event.event,
                "status": event.status,
                "step_ref": event.step_ref,
                "step_type": event.step_type,
                "attempt": event.attempt,
                "data": event.data,
                "inserted_at": record.inserted_at,
            }
        )


class WorkflowRecipientRunDetail(WorkflowRecipientRun):
    events: list[WorkflowRecipientRunEvent]

    @classmethod
    def with_events(cls, record: RunRecord) -> WorkflowRecipientRunDetail:
        return cls.trusted(
            {
                **cls.fields_of(record),
                "events": [
                    WorkflowRecipientRunEvent.from_record(record.id, index, event)
                    for index, event in enumerate(record.events)
                ],
            }
        )


class ListWorkflowRecipientRunsResponse(ResponseModel):
    items: list[WorkflowRecipientRun]
    page_info: PageInfo

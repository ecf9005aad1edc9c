"""Audience-entry workflows: a workflow whose `trigger` names an audience runs for each member added to it,
with the member as recipient and the membership's tenant as `tenant`, once per membership (so once per
distinct tenant of a user), never for a membership that already existed, never on leaving.

A membership's runs start as an API trigger's do: one `workflow_trigger` job per (workflow, membership),
in the shape `clarion.engine.trigger.accept_trigger` enqueues (the request, the version current now,
pinned), with `trigger_source` "audience:<key>" (the run shows `{"type": "audience", "audience_key": …}`,
`clarion.schemas.workflow_runs`), so `clarion.engine.trigger.start_runs` runs it unchanged. The
jobs are inserted in the transaction that inserts the memberships (`clarion.engine.audience_rules`), so a
membership commits with its runs to come or not at all; each job's unique key names its membership (row
and moment), so one membership fires each of its workflows once however often its jobs are enqueued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from clarion.engine.workflow_catalog import CurrentWorkflow
from clarion.engine.workflow_jobs import trigger_job
from clarion.jobs.job import Job
from clarion.schemas.workflow_runs import SOURCE_QUALIFIER
from clarion.store.audiences import NewMembership
from clarion.store.ids import new_uuid

AUDIENCE_SOURCE = "audience"
"""The runs' `trigger_source.type`, as Knock records an audience entry; stored with the audience's key."""


def _unique_key(environment_id: str, workflow_key: str, audience_key: str, membership: NewMembership) -> str:
    # Hashed: the keys and ids it names may together run past the column's 255 characters.
    parts = (environment_id, workflow_key, audience_key, membership.user_id, membership.tenant or "")
    named = "\x00".join((*parts, str(membership.pk), membership.added_at.isoformat()))
    return f"audience_entry:{hashlib.sha256(named.encode()).hexdigest()}"


def entry_jobs(
    environment_id: str,
    audience_key: str,
    workflows: Sequence[CurrentWorkflow],
    added: Sequence[NewMembership],
) -> list[Job]:
    """The trigger jobs of `added`, new memberships of the audience: one per workflow and membership."""
    jobs: list[Job] = []
    for workflow in workflows:
        for membership in added:
            request: dict[str, Any] = {"recipients": [membership.user_id]}
            if membership.tenant is not None:
                request["tenant"] = membership.tenant
            jobs.append(
                trigger_job(
                    environment_id,
                    new_uuid(),
                    workflow.key,
                    workflow.version_id,
                    source=f"{AUDIENCE_SOURCE}{SOURCE_QUALIFIER}{audience_key}",
                    request=request,
                    unique_key=_unique_key(environment_id, workflow.key, audience_key, membership),
                )
            )
    return jobs

"""Audience-entry workflows: a workflow whose `trigger` names an audience runs for each member added to it,
with the member as recipient and the membership's tenant as `tenant`, once per membership (so once per
distinct tenant of a user), never for a membership that already existed, never on leaving.

The memberships one write adds start their runs as one API trigger naming those members would: one
`workflow_trigger` job per (workflow, tenant) of the write, naming its members as recipients (at most a
trigger's 1,000), in the shape `clarion.engine.trigger.accept_trigger` enqueues (the request, the version
current now, pinned), with `trigger_source` "audience:<key>" (the run shows `{"type": "audience",
"audience_key": …}`, `clarion.schemas.workflow_runs`), so `clarion.engine.trigger.start_runs` runs it
unchanged: each member its own run, the members' runs written together as a fan-out's are, rather than a
job, a claim and a transaction per member. The jobs are inserted in the transaction that inserts the
memberships (`clarion.engine.audience_rules`), so a membership commits with its runs to come or not at
all; each job's unique key names its memberships (rows and moment), so the same memberships fire each of
their workflows once however often their jobs are enqueued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from clarion.engine.workflow_catalog import CurrentWorkflow
from clarion.engine.workflow_jobs import trigger_job
from clarion.jobs.job import Job
from clarion.schemas.workflow_runs import SOURCE_QUALIFIER
from clarion.schemas.workflows import MAX_TRIGGER_RECIPIENTS
from clarion.store.audiences import NewMembership
from clarion.store.ids import new_uuid

AUDIENCE_SOURCE = "audience"
"""The runs' `trigger_source.type`, as Knock records an audience entry; stored with the audience's key."""


def _unique_key(
    environment_id: str, workflow_key: str, audience_key: str, memberships: Sequence[NewMembership]
) -> str:
    # Hashed: the keys and ids it names run past the column's 255 characters.
    digest = hashlib.sha256("\x00".join((environment_id, workflow_key, audience_key)).encode())
    for membership in sorted(memberships, key=lambda membership: (membership.pk, membership.added_at)):
        named = (
            str(membership.pk),
            membership.added_at.isoformat(),
            membership.user_id,
            membership.tenant or "",
        )
        digest.update(("\x00" + "\x01".join(named)).encode())
    return f"audience_entry:{digest.hexdigest()}"


def entry_jobs(
    environment_id: str,
    audience_key: str,
    workflows: Sequence[CurrentWorkflow],
    added: Sequence[NewMembership],
) -> list[Job]:
    """The trigger jobs of `added`, new memberships of the audience: per workflow, one per tenant and
    trigger's worth of its members."""
    by_tenant: dict[str | None, list[NewMembership]] = {}
    for membership in added:
        by_tenant.setdefault(membership.tenant, []).append(membership)
    jobs: list[Job] = []
    for workflow in workflows:
        for tenant, memberships in by_tenant.items():
            for at in range(0, len(memberships), MAX_TRIGGER_RECIPIENTS):
                entered = memberships[at : at + MAX_TRIGGER_RECIPIENTS]
                request: dict[str, Any] = {"recipients": [membership.user_id for membership in entered]}
                if tenant is not None:
                    request["tenant"] = tenant
                jobs.append(
                    trigger_job(
                        environment_id,
                        new_uuid(),
                        workflow.key,
                        workflow.version_id,
                        source=f"{AUDIENCE_SOURCE}{SOURCE_QUALIFIER}{audience_key}",
                        request=request,
                        unique_key=_unique_key(environment_id, workflow.key, audience_key, entered),
                    )
                )
    return jobs

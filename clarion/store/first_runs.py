"""Recipients' first runs through workflows whose trigger frequency limits them to one (Knock's
`once_per_recipient` and `once_per_recipient_per_tenant`).

The trigger job records each recipient's first run in the transaction that starts it; a recipient already
recorded gets no run. The primary key decides between triggers racing for the same recipient: the insert
of one waits for the other's commit and then skips the row, so exactly one starts a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import workflow_first_runs

NO_TENANT = ""
"""The tenant recorded for `once_per_recipient`, and for a run without one."""


async def record_first_runs(
    connection: AsyncConnection,
    environment_id: str,
    workflow_key: str,
    workflow_run_id: str,
    entries: Sequence[tuple[RecipientKey, str]],
    now: datetime,
) -> set[tuple[RecipientKey, str]]:
    """Record the trigger `workflow_run_id` as the first run of each (recipient, tenant) of `entries`
    through the workflow, in the caller's transaction; returns those recorded now, the others having had
    theirs. Rows go in code-point order, so that two triggers never deadlock."""
    if not entries:
        return set()
    rows = [
        {
            "environment_id": environment_id,
            "workflow_key": workflow_key,
            "recipient_collection": recipient.collection,
            "recipient_id": recipient.id,
            "tenant": tenant,
            "workflow_run_id": workflow_run_id,
            "inserted_at": now,
        }
        for recipient, tenant in sorted(set(entries), key=lambda e: (e[0].collection, e[0].id, e[1]))
    ]
    c = workflow_first_runs.c
    statement = dialect.insert_ignore(
        workflow_first_runs,
        connection.dialect.name,
        rows,
        conflict=["environment_id", "workflow_key", "recipient_collection", "recipient_id", "tenant"],
    ).returning(c.recipient_collection, c.recipient_id, c.tenant)
    recorded = await connection.execute(statement)
    return {(RecipientKey(row.recipient_collection, row.recipient_id), row.tenant) for row in recorded}

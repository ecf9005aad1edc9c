"""Workflows and their committed versions, per environment.

A commit stores each workflow document whose content changed as a new version (numbered from 1, with the
SHA-256 of its canonical JSON) and points the workflow at it; a document identical to the current version
makes no new version. Versions are never changed or deleted, so a run pinned to the version current when it
was triggered reads exactly what it was triggered with. `active` is Knock's per-environment switch: an
inactive workflow keeps its versions and refuses new triggers. Parsing and caching definitions lives in
`clarion.engine.workflow_catalog`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.tables import workflow_versions, workflows

COMMIT_TRIES = 3


@dataclass(frozen=True)
class WorkflowVersionRecord:
    id: str
    environment_id: str
    workflow_key: str
    version: int
    sha: str
    document: dict[str, Any]
    inserted_at: datetime


@dataclass(frozen=True)
class WorkflowRecord:
    key: str
    active: bool
    current: WorkflowVersionRecord
    inserted_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CommitResult:
    key: str
    version: WorkflowVersionRecord
    changed: bool
    """False when the document equalled the current version, which stays current."""


def document_sha(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _version(row: sa.Row[Any]) -> WorkflowVersionRecord:
    return WorkflowVersionRecord(
        id=row.id,
        environment_id=row.environment_id,
        workflow_key=row.workflow_key,
        version=row.version,
        sha=row.sha,
        document=row.definition,
        inserted_at=row.inserted_at,
    )


_CURRENT = sa.select(
    workflows.c.key,
    workflows.c.active,
    workflows.c.inserted_at.label("workflow_inserted_at"),
    workflows.c.updated_at,
    *workflow_versions.c,
).join(workflow_versions, workflow_versions.c.id == workflows.c.current_version_id)


def _workflow(row: sa.Row[Any]) -> WorkflowRecord:
    return WorkflowRecord(
        key=row.key,
        active=row.active,
        current=_version(row),
        inserted_at=row.workflow_inserted_at,
        updated_at=row.updated_at,
    )


async def read_current(
    connection: AsyncConnection, environment_id: str, keys: Iterable[str]
) -> dict[str, WorkflowRecord]:
    """The workflows of `keys` that the environment has, each with its current version, in one query on
    the caller's connection (a step inside its pass's transaction)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await connection.execute(
        _CURRENT.where(workflows.c.environment_id == environment_id, workflows.c.key.in_(wanted))
    )
    return {row.key: _workflow(row) for row in rows}


class WorkflowStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def commit(self, environment_id: str, documents: Sequence[dict[str, Any]]) -> list[CommitResult]:
        """Commit every document (each with its `key`) in one transaction. Processes starting together
        on PostgreSQL may push the same folder at once: the one that loses the race on a new version
        number tries again and then finds the winner's identical version current."""
        for _ in range(COMMIT_TRIES - 1):
            try:
                return await self._commit(environment_id, documents)
            except sa.exc.IntegrityError:
                continue
        return await self._commit(environment_id, documents)

    async def _commit(self, environment_id: str, documents: Sequence[dict[str, Any]]) -> list[CommitResult]:
        results: list[CommitResult] = []
        async with self.database.writer.begin() as connection:
            for document in documents:
                key = document["key"]
                sha = document_sha(document)
                current = (
                    await connection.execute(
                        _CURRENT.where(workflows.c.environment_id == environment_id, workflows.c.key == key)
                    )
                ).first()
                if current is not None and current.sha == sha:
                    results.append(CommitResult(key, _version(current), changed=False))
                    continue
                now = utcnow()
                version = WorkflowVersionRecord(
                    id=str(uuid.uuid4()),
                    environment_id=environment_id,
                    workflow_key=key,
                    version=1 if current is None else current.version + 1,
                    sha=sha,
                    document=document,
                    inserted_at=now,
                )
                await connection.execute(
                    workflow_versions.insert().values(
                        id=version.id,
                        environment_id=environment_id,
                        workflow_key=key,
                        version=version.version,
                        sha=sha,
                        definition=document,
                        inserted_at=now,
                    )
                )
                if current is None:
                    await connection.execute(
                        workflows.insert().values(
                            environment_id=environment_id,
                            key=key,
                            current_version_id=version.id,
                            active=True,
                            inserted_at=now,
                            updated_at=now,
                        )
                    )
                else:
                    await connection.execute(
                        workflows.update()
                        .where(workflows.c.environment_id == environment_id, workflows.c.key == key)
                        .values(current_version_id=version.id, updated_at=now)
                    )
                results.append(CommitResult(key, version, changed=True))
        return results

    async def get(self, environment_id: str, key: str) -> WorkflowRecord | None:
        async with self.database.reader.connect() as connection:
            return (await read_current(connection, environment_id, [key])).get(key)

    async def list(self, environment_id: str) -> list[WorkflowRecord]:
        async with self.database.reader.connect() as connection:
            rows = await connection.execute(
                _CURRENT.where(workflows.c.environment_id == environment_id).order_by(workflows.c.key)
            )
            return [_workflow(row) for row in rows]

    async def version(self, environment_id: str, version_id: str) -> WorkflowVersionRecord | None:
        async with self.database.reader.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(workflow_versions).where(
                        workflow_versions.c.environment_id == environment_id,
                        workflow_versions.c.id == version_id,
                    )
                )
            ).first()
        return None if row is None else _version(row)

    async def set_active(self, environment_id: str, key: str, active: bool) -> bool:
        """Switch a workflow on or off; False when the environment has no such workflow."""
        async with self.database.writer.begin() as connection:
            result = await connection.execute(
                workflows.update()
                .where(workflows.c.environment_id == environment_id, workflows.c.key == key)
                .values(active=active, updated_at=utcnow())
            )
        return bool(result.rowcount)

"""A batch's activities as they are read: all of them in pages (`GET /v1/messages/{id}/activities`), and
what a flushed batch renders (`batch_contents`): the first or last activities and distinct actors, and
how many distinct actors it has. Writing them is the batch's business (`clarion.store.batches`).

An activity is one run's trigger in a batch: its actor, its data and when it joined, oldest first by the
insertion-ordered `pk`. Its id is derived when read, from the batch and the run, as a message's events'
are (`clarion.store.ids.stable_ksuid`): the same on every read, and no id made per join. A batch of any
size is read in bounded work: pages by keyset over the (batch, pk) index, and the rendered ones by their
rank within the batch, however many it holds.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store import dialect
from clarion.store.batching import chunks
from clarion.store.db import Database
from clarion.store.dialect import RowParameters
from clarion.store.ids import stable_ksuid
from clarion.store.pagination import Page, PageRequest, fetch_page
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import batch_activities

ACTIVITY_COLUMNS = tuple(
    batch_activities.c[name]
    for name in ("pk", "batch_id", "run_id", "actor_collection", "actor_id", "data", "inserted_at")
)


@dataclass(frozen=True, slots=True)
class BatchActivity:
    id: str
    batch_id: str
    run_id: str
    actor: RecipientKey | None
    data: dict[str, Any]
    inserted_at: datetime


def activity_record(row: sa.Row[Any]) -> BatchActivity:
    m = row._mapping
    actor = None if m["actor_id"] is None else RecipientKey(m["actor_collection"], m["actor_id"])
    return BatchActivity(
        id=stable_ksuid(m["inserted_at"], f"{m['batch_id']}:{m['run_id']}"),
        batch_id=m["batch_id"],
        run_id=m["run_id"],
        actor=actor,
        data=m["data"],
        inserted_at=m["inserted_at"],
    )


async def activities_page(
    database: Database,
    environment_id: str,
    batch_id: str,
    page: PageRequest,
    *,
    trigger_data: Mapping[str, Any] | None = None,
) -> tuple[list[BatchActivity], Page]:
    """One page of the batch's activities, oldest first; with `trigger_data`, only those whose data holds
    each of its top-level keys with that scalar value (Knock's `trigger_data` filter). A batch that does not
    exist (or another environment's) has none."""
    c = batch_activities.c
    conditions = [c.environment_id == environment_id, c.batch_id == batch_id]
    conditions += [
        dialect.json_scalar_equals(c.data, key, value, database.dialect_name)
        for key, value in (trigger_data or {}).items()
    ]
    async with database.reader.connect() as connection:
        result = await fetch_page(connection, sa.select(*ACTIVITY_COLUMNS).where(*conditions), c.pk, page)
    return [activity_record(row) for row in result.rows], result


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """What a flushed batch renders: its first (or, `newest`, last) `limit` activities and actors."""

    batch_id: str
    limit: int
    newest: bool


@dataclass(slots=True)
class BatchContents:
    activities: list[BatchActivity] = field(default_factory=list)
    """Up to the render limit, oldest first."""
    actors: list[RecipientKey] = field(default_factory=list)
    """Distinct actors, up to the render limit, in the order they first (or, `newest`, last) acted."""
    total_actors: int = 0


def _rank_order(
    newest: sa.ColumnElement[Any], first: sa.ColumnElement[int], last: sa.ColumnElement[int]
) -> Any:
    """Rank by the first appearance, or with `newest` ('1') by the last one, latest first."""
    return sa.case((newest == "1", -last), else_=first)


@functools.cache
def _rendered_activities(dialect_name: str) -> tuple[sa.Select[Any], RowParameters]:
    """The first or last `limit` activities of each batch bound in the rows, ranked within their batch."""
    rows, row_parameters = dialect.bound_rows(["batch_id", "render_limit", "newest"], dialect_name)
    a = batch_activities.c
    ranked = (
        sa.select(
            a.pk,
            sa.func.row_number()
            .over(partition_by=a.batch_id, order_by=_rank_order(rows.c.newest, a.pk, a.pk))
            .label("place"),
            sa.cast(rows.c.render_limit, sa.Integer).label("render_limit"),
        )
        .join_from(batch_activities, rows, a.batch_id == rows.c.batch_id)
        .where(a.environment_id == sa.bindparam("environment_id"))
        .subquery("ranked")
    )
    statement = (
        sa.select(*ACTIVITY_COLUMNS)
        .join_from(batch_activities, ranked, ranked.c.pk == a.pk)
        .where(ranked.c.place <= ranked.c.render_limit)
        .order_by(a.pk)
    )
    return statement, row_parameters


@functools.cache
def _rendered_actors(dialect_name: str) -> tuple[sa.Select[Any], RowParameters]:
    """Each batch's distinct actors: the first or last `limit` of them, and how many there are."""
    rows, row_parameters = dialect.bound_rows(["batch_id", "render_limit", "newest"], dialect_name)
    a = batch_activities.c
    actors = (
        sa.select(
            a.batch_id,
            a.actor_collection,
            a.actor_id,
            sa.func.min(a.pk).label("first_pk"),
            sa.func.max(a.pk).label("last_pk"),
        )
        .join_from(batch_activities, rows, a.batch_id == rows.c.batch_id)
        .where(a.environment_id == sa.bindparam("environment_id"), a.actor_id.is_not(None))
        .group_by(a.batch_id, a.actor_collection, a.actor_id)
        .subquery("actors")
    )
    ranked = (
        sa.select(
            actors,
            sa.func.row_number()
            .over(
                partition_by=actors.c.batch_id,
                order_by=_rank_order(rows.c.newest, actors.c.first_pk, actors.c.last_pk),
            )
            .label("place"),
            sa.func.count().over(partition_by=actors.c.batch_id).label("total"),
            sa.cast(rows.c.render_limit, sa.Integer).label("render_limit"),
        )
        .join_from(actors, rows, actors.c.batch_id == rows.c.batch_id)
        .subquery("ranked")
    )
    return sa.select(ranked).where(ranked.c.place <= ranked.c.render_limit), row_parameters


async def batch_contents(
    connection: AsyncConnection, environment_id: str, requests: Sequence[RenderRequest]
) -> dict[str, BatchContents]:
    """What each requested batch renders, in the caller's transaction: two statements for all of them."""
    contents = {request.batch_id: BatchContents() for request in requests}
    newest = {request.batch_id: request.newest for request in requests}
    dialect_name = connection.dialect.name
    activities, activity_parameters = _rendered_activities(dialect_name)
    actors, actor_parameters = _rendered_actors(dialect_name)
    for chunk in chunks(list(requests)):
        rows = [[request.batch_id, str(request.limit), "1" if request.newest else "0"] for request in chunk]
        for row in await connection.execute(
            activities, {"environment_id": environment_id, **activity_parameters(rows)}
        ):
            contents[row.batch_id].activities.append(activity_record(row))
        ranked: dict[str, list[tuple[int, RecipientKey]]] = {}
        for row in await connection.execute(
            actors, {"environment_id": environment_id, **actor_parameters(rows)}
        ):
            seen = row.last_pk if newest[row.batch_id] else row.first_pk
            ranked.setdefault(row.batch_id, []).append(
                (seen, RecipientKey(row.actor_collection, row.actor_id))
            )
            contents[row.batch_id].total_actors = row.total
        for batch_id, found in ranked.items():
            contents[batch_id].actors = [actor for _, actor in sorted(found)]
    return contents

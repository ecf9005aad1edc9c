"""The migrations build exactly the schema `clarion.store.tables` declares: no table, column or index of
the metadata is missing from a migrated store, and the store has none the metadata lacks. Migrations that
move or derive data keep it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from clarion.config import Settings
from clarion.runtime import Runtime
from clarion.store.db import create_database
from clarion.store.dialect import JSONType
from clarion.store.messages import ArchivedFilter, MessageFilter, MessageStore
from clarion.store.migrate import migrate
from clarion.store.pagination import PageRequest
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import UTCDateTime, audiences, messages, metadata, workflow_runs
from clarion.store.workflow_runs import run_record
from tests.conftest import fresh_postgres_database


async def test_the_migrated_schema_is_the_declared_one(runtime: Runtime) -> None:
    def differences(connection: Any) -> list[Any]:
        # Types are left out: the stores spell the same declared type in their own words.
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        return list(compare_metadata(context, metadata))

    async with runtime.database.reader.connect() as connection:
        assert await connection.run_sync(differences) == []


async def _index_predicates(runtime: Runtime, table: str) -> dict[str, str]:
    """The WHERE of each index of `table` (empty for a full index), in one spelling for both stores.
    Alembic's comparison leaves out partial indexes' predicates; the store's own definitions hold them."""
    if runtime.database.dialect_name == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :table"
    else:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :table"
    async with runtime.database.reader.connect() as connection:
        definitions = {
            name: sql or "" for name, sql in await connection.execute(sa.text(query), {"table": table})
        }

    def predicate(definition: str) -> str:
        # SQLite keeps the text as written; PostgreSQL adds parentheses and casts and spells `IN (…)` as
        # `= ANY (ARRAY[…])`.
        where = definition.partition(" WHERE ")[2].lower()
        return " ".join(re.sub(r"[()]|::(text|character varying)(\[\])?", "", where).split())

    return {name: predicate(definition) for name, definition in definitions.items()}


async def test_the_jobs_unique_and_staging_indexes_hold_only_the_jobs_looked_for(runtime: Runtime) -> None:
    predicates = await _index_predicates(runtime, "jobs")
    unique, staging = predicates["ix_jobs_unique_key"], predicates["ix_jobs_state_queue_scheduled_at"]
    assert re.search(r"unique_key is not null and state (not in|<> all) .*cancelled.*discarded", unique)
    assert re.search(r"state (in|= any) .*scheduled.*retryable", staging)
    assert predicates["ix_jobs_state_queue_priority_scheduled_at_id"] == "", "claiming reads every state"


async def test_the_runs_cancelling_index_holds_only_runs_with_a_key_and_serves_a_cancel(
    runtime: Runtime,
) -> None:
    cancelling = "ix_workflow_runs_environment_id_workflow_key_cancellation_key"
    predicates = await _index_predicates(runtime, "workflow_runs")
    assert predicates[cancelling] == "cancellation_key is not null"
    assert predicates["ix_workflow_runs_environment_id_workflow_key_pk"] == "", (
        "the runs list reads every run"
    )
    if runtime.database.dialect_name != "sqlite":
        return  # PostgreSQL plans a small table by its own costs
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    target = runtime.database.writer.sync_engine
    sa.event.listen(target, "before_cursor_execute", record)
    try:
        await runtime.workflow_runs.cancel("environment", "greeting", "order-1")
    finally:
        sa.event.remove(target, "before_cursor_execute", record)
    # The runs to cancel, and those of them that ended in a batch (whose activities leave it).
    lookups = [
        (statement, parameters) for statement, parameters in statements if "FROM workflow_runs" in statement
    ]
    assert len(lookups) == 2, statements
    async with runtime.database.reader.connect() as connection:
        for lookup, parameters in lookups:
            plan = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + lookup, parameters)).all()
            assert any(cancelling in str(step) for step in plan), plan


async def test_the_feed_badge_counts_are_read_from_the_feed_index_alone(runtime: Runtime) -> None:
    predicates = await _index_predicates(runtime, "messages")
    assert predicates["ix_messages_feed"] == "", "the feed reads archived messages too"
    if runtime.database.dialect_name != "sqlite":
        return  # PostgreSQL plans a small table by its own costs
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        statements.append((statement, parameters))

    target = runtime.database.reader.sync_engine
    sa.event.listen(target, "before_cursor_execute", record)
    try:
        feed = MessageFilter(
            recipient=RecipientKey.user("ann"),
            channel_id="feed",
            archived=ArchivedFilter.EXCLUDE,
            excluded_statuses=("queued",),
        )
        await MessageStore(runtime.database).counts("environment", feed)
    finally:
        sa.event.remove(target, "before_cursor_execute", record)
    [(counting, parameters)] = statements
    async with runtime.database.reader.connect() as connection:
        plan = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + counting, parameters)).all()
    assert any("COVERING INDEX ix_messages_feed" in str(step) for step in plan), plan


@pytest.fixture
def empty_database_url(store: str, tmp_path: Path) -> Iterator[str]:
    if store == "postgres":
        with fresh_postgres_database("migration test") as url:
            yield Settings(data_dir=tmp_path, database_url=url).resolved_database_url
    else:
        yield Settings(data_dir=tmp_path).resolved_database_url


def _upgrade_to(connection: sa.Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "clarion.store:migrations")
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


RECORDED = [
    ("run_started", None, 1, datetime(2026, 1, 1, 0, 0, 2, 123456, tzinfo=UTC)),
    ("message_created", "in_app_feed_1", 2, datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)),
    ("run_completed", None, 1, datetime(2026, 1, 1, 0, 0, 3, 7, tzinfo=UTC)),
]
_TYPES: dict[str, Any] = {
    "type": sa.String(),
    "now": UTCDateTime(),
    "at": UTCDateTime(),
    "data": JSONType,
    "step_ref": sa.String(),
    "attempt": sa.Integer(),
}


def _statement(sql: str) -> sa.TextClause:
    """`sql` with its timestamps and JSON documents bound as the tables declare them."""
    return sa.text(sql).bindparams(
        *(sa.bindparam(name, type_=kind) for name, kind in _TYPES.items() if f":{name}" in sql)
    )


NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def _insert_environment(connection: Any) -> None:
    await connection.execute(
        _statement(
            "INSERT INTO environments (id, name, enhanced_security, inserted_at) "
            "VALUES ('env', 'env', false, :now)"
        ),
        {"now": NOW},
    )


async def _insert_message(connection: Any, message_id: str, source: dict[str, Any]) -> None:
    """A message as the schema before 0006 and 0007 holds it: no trigger id, no events."""
    await connection.execute(
        _statement(
            "INSERT INTO messages (id, environment_id, channel_id, recipient_collection, recipient_id, "
            "workflow_key, run_id, step_ref, source, actors, activities, data, content, status, inserted_at, "
            "updated_at) VALUES (:id, 'env', 'c', '$users', 'ada', 'w', :id, 's', :data, '[]', '[]', '{}', "
            "'{}', 'delivered', :now, :now)"
        ),
        {"id": message_id, "data": source, "now": NOW},
    )


async def test_run_events_move_onto_their_runs_in_order(empty_database_url: str) -> None:
    database = create_database(empty_database_url)
    try:
        async with database.writer.begin() as connection:
            await connection.run_sync(_upgrade_to, "0004")
            await _insert_environment(connection)
            for run_id in ("run-1", "run-2"):
                await connection.execute(
                    _statement(
                        "INSERT INTO workflow_runs (id, environment_id, workflow_run_id, workflow_key, "
                        "version_id, recipient_collection, recipient_id, data, settings, trigger_source, "
                        "status, position, step_results, error_count, inserted_at, updated_at) VALUES "
                        "(:id, 'env', :id, 'w', 'v', '$users', :id, '{}', '{}', 'api', 'completed', NULL, "
                        "'{}', 0, :now, :now)"
                    ),
                    {"id": run_id, "now": NOW},
                )
            # Recorded in this order (the old table's row order), at times that sort otherwise.
            for event, step_ref, attempt, at in RECORDED:
                await connection.execute(
                    _statement(
                        "INSERT INTO workflow_run_events (environment_id, run_id, event, status, step_ref, "
                        "step_type, attempt, data, inserted_at) VALUES "
                        "('env', 'run-1', :event, 'ok', :step_ref, 'channel', :attempt, :data, :at)"
                    ),
                    {
                        "event": event,
                        "step_ref": step_ref,
                        "attempt": attempt,
                        "data": {"n": 2**70},
                        "at": at,
                    },
                )
        await migrate(database)
        async with database.reader.connect() as connection:
            runs = {
                row.id: run_record(row)
                for row in await connection.execute(sa.select(workflow_runs).order_by(workflow_runs.c.id))
            }
    finally:
        await database.dispose()
    events = runs["run-1"].events
    assert [
        (record.event.event, record.event.step_ref, record.event.attempt, record.inserted_at)
        for record in events
    ] == [(event, step_ref, attempt, at) for event, step_ref, attempt, at in RECORDED]
    assert [record.event.data for record in events] == [{"n": 2**70}] * 3
    assert [record.id for record in events] == ["1", "2", "3"], "the events keep the ids they had"
    assert runs["run-2"].events == ()


async def test_messages_stored_before_the_column_get_their_trigger_id(empty_database_url: str) -> None:
    database = create_database(empty_database_url)
    try:
        async with database.writer.begin() as connection:
            await connection.run_sync(_upgrade_to, "0005")
            await _insert_environment(connection)
            await _insert_message(connection, "m1", {"key": "w", "workflow_run_id": "trigger-1"})
        await migrate(database)
        async with database.reader.connect() as connection:
            stored = (await connection.execute(sa.select(messages.c.id, messages.c.workflow_run_id))).all()
    finally:
        await database.dispose()
    assert [tuple(row) for row in stored] == [("m1", "trigger-1")]


async def test_message_events_move_onto_their_messages_in_order(empty_database_url: str) -> None:
    database = create_database(empty_database_url)
    # Recorded in this order (the old table's row order), at times that sort otherwise.
    recorded = [
        ("message.created", None, datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("message.delivered", None, datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)),
        ("message.interacted", {"button": "open", "n": 2**70}, datetime(2025, 1, 1, tzinfo=UTC)),
    ]
    try:
        async with database.writer.begin() as connection:
            await connection.run_sync(_upgrade_to, "0006")
            await _insert_environment(connection)
            for message_id in ("m1", "m2"):
                await _insert_message(connection, message_id, {})
            for event_type, data, at in recorded:
                await connection.execute(
                    _statement(
                        "INSERT INTO message_events (environment_id, message_id, type, data, inserted_at) "
                        "VALUES ('env', 'm1', :type, :data, :at)"
                    ),
                    {"type": event_type, "data": data, "at": at},
                )
        await migrate(database)
        store = MessageStore(database)
        moved, _ = await store.events("env", "m1", PageRequest())
        untouched, _ = await store.events("env", "m2", PageRequest())
    finally:
        await database.dispose()
    assert [(e.type, e.data, e.inserted_at) for e in reversed(moved)] == recorded
    assert [e.id for e in reversed(moved)] == ["1", "2", "3"], "the events keep the ids they had"
    assert untouched == []


async def test_audiences_stored_before_their_types_are_static(empty_database_url: str) -> None:
    database = create_database(empty_database_url)
    try:
        async with database.writer.begin() as connection:
            await connection.run_sync(_upgrade_to, "0011")
            await _insert_environment(connection)
            await connection.execute(
                _statement(
                    "INSERT INTO audiences (environment_id, key, inserted_at) VALUES ('env', 'beta', :now)"
                ),
                {"now": NOW},
            )
        await migrate(database)
        async with database.writer.begin() as connection:
            stored = (await connection.execute(sa.select(audiences))).all()
            # A run's source now holds an audience's key of 255 characters.
            source = "audience:" + "a" * 255
            await connection.execute(
                _statement(
                    "INSERT INTO workflow_runs (id, environment_id, workflow_run_id, workflow_key, "
                    "version_id, recipient_collection, recipient_id, data, settings, trigger_source, "
                    "status, position, step_results, events, error_count, inserted_at, updated_at) VALUES "
                    "('r', 'env', 'r', 'w', 'v', '$users', 'ada', '{}', '{}', :source, 'completed', NULL, "
                    "'{}', '[]', 0, :now, :now)"
                ),
                {"source": source, "now": NOW},
            )
            assert await connection.scalar(sa.select(workflow_runs.c.trigger_source)) == source
    finally:
        await database.dispose()
    assert [(row.key, row.type, row.definition, row.sha) for row in stored] == [
        ("beta", "static", None, None)
    ]

"""Every table of Clarion on one MetaData. Each row belongs to one environment (`environment_id`), except
the environments themselves, the job queue (whose jobs carry the environment in their args) and its workers'
heartbeats, and the rate-limit counters (whose bucket keys embed it).

Recipients are addressed uniformly as (collection, id): users live in the reserved collection `$users`,
tenants in `$tenants`, and objects in their own collection, so channel data, preferences and subscriptions
share one shape for every kind of recipient.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from clarion.store.dialect import JSONType

USERS_COLLECTION = "$users"
TENANTS_COLLECTION = "$tenants"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the store keeps.

    SQLite keeps it as text in SQLAlchemy's usual sortable layout (`2024-05-22 12:00:00.000000`), parsed
    with `datetime.fromisoformat`, which is several times faster than the generic parser on the hot path.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def bound_text(self, value: datetime, dialect: sa.Dialect) -> str:
        """`value` as the text a row bound as JSON (`clarion.store.dialect.bound_rows`) carries, which a
        cast to this type reads back."""
        bound = self.process_bind_param(value, dialect)
        return bound if isinstance(bound, str) else bound.isoformat()

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                # The stored layout has no offset; appending UTC's parses in one step, several times
                # faster than parsing and then replacing the timezone.
                return datetime.fromisoformat(value + "+00:00")
            except ValueError:
                return datetime.fromisoformat(value).astimezone(UTC)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""A surrogate key that orders rows by insertion; cursors page over it."""

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("inserted_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    ]


def _environment_id() -> sa.Column[Any]:
    return sa.Column(
        "environment_id", sa.String(36), sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
    )


environments = sa.Table(
    "environments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    # PEM public key verifying signed user tokens (`X-Knock-User-Token`); NULL until one is set.
    sa.Column("signing_public_key", sa.Text, nullable=True),
    sa.Column("enhanced_security", sa.Boolean, nullable=False, default=False),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    _environment_id(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(128), nullable=False, unique=True),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    _environment_id(),
    sa.Column("id", sa.String(255), nullable=False),
    sa.Column("properties", JSONType, nullable=False),
    *_timestamps(),
    sa.UniqueConstraint("environment_id", "id"),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    _environment_id(),
    sa.Column("collection", sa.String(255), nullable=False),
    sa.Column("id", sa.String(255), nullable=False),
    sa.Column("properties", JSONType, nullable=False),
    *_timestamps(),
    sa.UniqueConstraint("environment_id", "collection", "id"),
)

preference_sets = sa.Table(
    "preference_sets",
    metadata,
    _environment_id(),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    sa.Column("set_id", sa.String(255), nullable=False),
    sa.Column("preferences", JSONType, nullable=False),
    *_timestamps(),
    sa.PrimaryKeyConstraint("environment_id", "recipient_collection", "recipient_id", "set_id"),
)

channel_data = sa.Table(
    "channel_data",
    metadata,
    _environment_id(),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    sa.Column("channel_id", sa.String(36), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    *_timestamps(),
    sa.PrimaryKeyConstraint("environment_id", "recipient_collection", "recipient_id", "channel_id"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    _environment_id(),
    sa.Column("object_collection", sa.String(255), nullable=False),
    sa.Column("object_id", sa.String(255), nullable=False),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    sa.Column("properties", JSONType),
    *_timestamps(),
    sa.UniqueConstraint(
        "environment_id", "object_collection", "object_id", "recipient_collection", "recipient_id"
    ),
    sa.Index(None, "environment_id", "recipient_collection", "recipient_id"),
)

audiences = sa.Table(
    "audiences",
    metadata,
    _environment_id(),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    # 'static' (members added and removed) or 'dynamic' (members computed from their users' properties).
    sa.Column("type", sa.String(16), nullable=False, server_default="static"),
    # The audience.json it was pushed from (name, description, segments) and that document's SHA-256;
    # NULL for an audience created by adding members to it.
    sa.Column("definition", JSONType),
    sa.Column("sha", sa.String(64)),
    sa.PrimaryKeyConstraint("environment_id", "key"),
)

audience_members = sa.Table(
    "audience_members",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    _environment_id(),
    sa.Column("audience_key", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    # '' stands for "no tenant" so that the unique constraint also holds for tenant-less members.
    sa.Column("tenant", sa.String(255), nullable=False),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("environment_id", "audience_key", "user_id", "tenant"),
    sa.Index(None, "environment_id", "user_id"),
)

bulk_operations = sa.Table(
    "bulk_operations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    _environment_id(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # The request's rows and the failed items are JSON text, not JSONB: a bulk operation must keep whatever
    # JSON it accepted, and PostgreSQL's JSONB refuses the NUL character a JSON string may carry.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("estimated_total_rows", sa.Integer, nullable=False),
    sa.Column("processed_rows", sa.Integer, nullable=False),
    sa.Column("success_count", sa.Integer, nullable=False),
    sa.Column("error_count", sa.Integer, nullable=False),
    sa.Column("error_items", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("failed_at", UTCDateTime),
    *_timestamps(),
)

JOBS_UNIQUE_KEY_HELD = sa.text("unique_key IS NOT NULL AND state NOT IN ('cancelled', 'discarded')")
"""The jobs whose `unique_key` is unique: those with one, not cancelled or discarded (`clarion.jobs.job`).
Queries of them use this very text: SQLite uses a partial index only for a query whose WHERE repeats the
index's, constants included."""
JOBS_WAITING = sa.text("state IN ('scheduled', 'retryable')")
"""The jobs waiting to come due, which staging looks for (the same text in its query and its index)."""

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("args", JSONType, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("unique_key", sa.String(255)),
    sa.Column("errors", JSONType, nullable=False),
    sa.Column("scheduled_at", UTCDateTime, nullable=False),
    sa.Column("attempted_at", UTCDateTime),
    sa.Column("attempted_by", sa.String(255)),
    sa.Column("lease_expires_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("cancelled_at", UTCDateTime),
    sa.Column("discarded_at", UTCDateTime),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    # Claiming: the available jobs of one queue in (priority, scheduled_at, id) order.
    sa.Index(None, "state", "queue", "priority", "scheduled_at", "id"),
    # Staging: the scheduled and retryable jobs of one queue that have come due.
    sa.Index(
        None, "state", "queue", "scheduled_at", sqlite_where=JOBS_WAITING, postgresql_where=JOBS_WAITING
    ),
    # A unique key is held by every job that has not been cancelled or discarded (clarion.jobs.job).
    sa.Index(
        None,
        "unique_key",
        unique=True,
        sqlite_where=JOBS_UNIQUE_KEY_HELD,
        postgresql_where=JOBS_UNIQUE_KEY_HELD,
    ),
)

workers = sa.Table(
    "workers",
    metadata,
    # The worker's id, as its claimed jobs name it in `jobs.attempted_by` (host:pid:random).
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("queues", JSONType, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    # The last heartbeat, on the database's clock: a worker silent for a few heartbeats is dead and its
    # jobs are rescued (`clarion.jobs.lifeline`).
    sa.Column("beat_at", UTCDateTime, nullable=False),
)

rate_limit_counters = sa.Table(
    "rate_limit_counters",
    metadata,
    sa.Column("bucket", sa.String(512), primary_key=True),
    sa.Column("window", sa.BigInteger, nullable=False),
    sa.Column("hits", sa.Integer, nullable=False),
)

workflows = sa.Table(
    "workflows",
    metadata,
    _environment_id(),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("current_version_id", sa.String(36), nullable=False),
    # Knock's per-environment kill switch, independent of commits: an inactive workflow refuses triggers.
    sa.Column("active", sa.Boolean, nullable=False),
    *_timestamps(),
    sa.PrimaryKeyConstraint("environment_id", "key"),
)

workflow_versions = sa.Table(
    "workflow_versions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    _environment_id(),
    sa.Column("workflow_key", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # Of the canonical JSON of the definition: a push that changes nothing makes no new version.
    sa.Column("sha", sa.String(64), nullable=False),
    sa.Column("definition", JSONType, nullable=False),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("environment_id", "workflow_key", "version"),
)

RUNS_CANCELLABLE = sa.text("cancellation_key IS NOT NULL")
"""The runs that a cancel may look for, the only ones the cancelling index holds; a query using that index
compares `cancellation_key` with a value, which implies this."""

workflow_runs = sa.Table(
    "workflow_runs",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    # The workflow recipient run id; `workflow_run_id` is the trigger's, shared by all its recipients.
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    _environment_id(),
    sa.Column("workflow_run_id", sa.String(36), nullable=False),
    sa.Column("workflow_key", sa.String(255), nullable=False),
    sa.Column("version_id", sa.String(36), nullable=False),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    sa.Column("actor_collection", sa.String(255)),
    sa.Column("actor_id", sa.String(255)),
    sa.Column("tenant", sa.String(255)),
    sa.Column("cancellation_key", sa.String(255)),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("settings", JSONType, nullable=False),
    # Its type, or `type:qualifier` (`audience:<key>`): see `clarion.schemas.workflow_runs`.
    sa.Column("trigger_source", sa.String(300), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # The path of the step the run is at: indexes into nested step lists, joined by dots ("2", "1.0.3");
    # NULL once finished.
    sa.Column("position", sa.String(255)),
    # Per step ref, what its step produced (message ids), for `refs.*` conditions.
    sa.Column("step_results", JSONType, nullable=False),
    # What happened in the run, oldest first: {event, inserted_at} each, with status, step_ref, step_type,
    # attempt and data where they differ from their defaults, and the id it had before events moved onto
    # runs, if any.
    sa.Column("events", JSONType, nullable=False),
    sa.Column("error_count", sa.Integer, nullable=False),
    *_timestamps(),
    sa.UniqueConstraint("environment_id", "workflow_run_id", "recipient_collection", "recipient_id"),
    # Cancelling: most runs have no cancellation key, and nothing looks for those.
    sa.Index(
        None,
        "environment_id",
        "workflow_key",
        "cancellation_key",
        sqlite_where=RUNS_CANCELLABLE,
        postgresql_where=RUNS_CANCELLABLE,
    ),
    sa.Index(None, "environment_id", "pk"),
    # The runs list, filtered by recipient or by workflow, newest first.
    sa.Index(None, "environment_id", "recipient_collection", "recipient_id", "pk"),
    sa.Index(None, "environment_id", "workflow_key", "pk"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    _environment_id(),
    sa.Column("channel_id", sa.String(36), nullable=False),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    sa.Column("workflow_key", sa.String(255), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    # The trigger's id, shared by the messages of all its recipients (also in `source`, for the wire).
    sa.Column("workflow_run_id", sa.String(36)),
    sa.Column("step_ref", sa.String(255), nullable=False),
    # The batch whose activities the message shows (`batch_activities`), for a message made after a batch
    # step; NULL for one made by a single trigger, whose one activity is `activities`.
    sa.Column("batch_id", sa.String(36)),
    # A batched message's counts of all the batch's activities and distinct actors, where `activities`
    # and `actors` hold those rendered; NULL for a message of one trigger.
    sa.Column("total_activities", sa.Integer),
    sa.Column("total_actors", sa.Integer),
    sa.Column("source", JSONType, nullable=False),
    sa.Column("tenant", sa.String(255)),
    sa.Column("actors", JSONType, nullable=False),
    # The triggers behind the message: {actor, data, inserted_at} each (and an id, if stored before ids
    # were derived when read).
    sa.Column("activities", JSONType, nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("content", JSONType, nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("seen_at", UTCDateTime),
    sa.Column("read_at", UTCDateTime),
    sa.Column("interacted_at", UTCDateTime),
    sa.Column("link_clicked_at", UTCDateTime),
    sa.Column("archived_at", UTCDateTime),
    sa.Column("metadata", JSONType),
    sa.Column("scheduled_at", UTCDateTime),
    # What happened to the message, oldest first: {type, data, inserted_at, and the id it had before
    # events moved onto messages, if any} each.
    sa.Column("events", JSONType, nullable=False),
    *_timestamps(),
    # One message per run and step (and channel): a step that runs twice after a crash finds its message.
    sa.UniqueConstraint("run_id", "step_ref", "channel_id"),
    # A recipient's messages (on a channel), newest first; the trailing timestamps and status let the
    # feed's badge counts be counted from the index alone (the feed leaves out `queued` messages).
    sa.Index(
        "ix_messages_feed",
        "environment_id",
        "recipient_collection",
        "recipient_id",
        "channel_id",
        "pk",
        "archived_at",
        "read_at",
        "seen_at",
        "status",
    ),
    sa.Index(None, "environment_id", "pk"),
    sa.Index(None, "environment_id", "workflow_run_id", "pk"),
)

workflow_first_runs = sa.Table(
    "workflow_first_runs",
    metadata,
    _environment_id(),
    sa.Column("workflow_key", sa.String(255), nullable=False),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    # The run's tenant for `once_per_recipient_per_tenant`, else (and for a run without one) "".
    sa.Column("tenant", sa.String(255), nullable=False),
    # The trigger that made the recipient's one run.
    sa.Column("workflow_run_id", sa.String(36), nullable=False),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint(
        "environment_id", "workflow_key", "recipient_collection", "recipient_id", "tenant"
    ),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    _environment_id(),
    sa.Column("key", sa.String(255), nullable=False),
    # Of the request the key was first used with: the same key with another request is refused.
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("response", JSONType, nullable=False),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("environment_id", "key"),
    sa.Index(None, "inserted_at"),
)

BATCHES_OPEN = sa.text("state = 'open'")
"""The batches still taking activities, the only ones the batch identity's unique index holds (one open batch
per identity). The upsert that finds a batch names this very text: PostgreSQL matches a partial index for
ON CONFLICT only by a predicate it can prove from the statement's, and a bound parameter proves nothing."""

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    _environment_id(),
    # The batch's identity: per workflow, recipient and resolved `batch_key`, and per workflow version
    # (`pinned`; `step_ref` is '') or per step (`latest`; `version_id` is '').
    sa.Column("workflow_key", sa.String(255), nullable=False),
    sa.Column("version_id", sa.String(36), nullable=False),
    sa.Column("step_ref", sa.String(255), nullable=False),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    # open (taking activities until `closes_at`), closed (window over or full, waiting for `run_id` to
    # flush it), flushed.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("opened_by", sa.String(36), nullable=False),
    # The run that flushes the batch and goes on with it: its opener, or with `flush_leading` the second
    # run to reach it (NULL until then).
    sa.Column("run_id", sa.String(36)),
    sa.Column("activity_count", sa.Integer, nullable=False),
    sa.Column("closes_at", UTCDateTime, nullable=False),
    # A sliding window's cap: the opening plus the extension limit; NULL for a fixed window.
    sa.Column("extension_ends_at", UTCDateTime),
    *_timestamps(),
    sa.Index(
        "ix_batches_open",
        "environment_id",
        "workflow_key",
        "version_id",
        "step_ref",
        "recipient_collection",
        "recipient_id",
        "key",
        unique=True,
        sqlite_where=BATCHES_OPEN,
        postgresql_where=BATCHES_OPEN,
    ),
)

batch_activities = sa.Table(
    "batch_activities",
    metadata,
    sa.Column("pk", RowId, primary_key=True, autoincrement=True),
    _environment_id(),
    sa.Column("batch_id", sa.String(36), sa.ForeignKey("batches.id"), nullable=False),
    # The run the activity came from, which ended when it joined (or carries the batch).
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("actor_collection", sa.String(255)),
    sa.Column("actor_id", sa.String(255)),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    # A run is in a batch once; cancelling finds a run's activities by this index's leading column.
    sa.UniqueConstraint("run_id", "batch_id"),
    # A batch's activities in the order they came: paging, rendering the first or last, counting.
    sa.Index(None, "batch_id", "pk"),
)

throttles = sa.Table(
    "throttles",
    metadata,
    _environment_id(),
    # Per workflow step, recipient and resolved `throttle_key`.
    sa.Column("workflow_key", sa.String(255), nullable=False),
    sa.Column("step_ref", sa.String(255), nullable=False),
    sa.Column("recipient_collection", sa.String(255), nullable=False),
    sa.Column("recipient_id", sa.String(255), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    # The runs let through in the current window, which the first of them opened.
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("window_started_at", UTCDateTime, nullable=False),
    sa.Column("window_ends_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint(
        "environment_id", "workflow_key", "step_ref", "recipient_collection", "recipient_id", "key"
    ),
    # Pruning the windows that are over.
    sa.Index(None, "window_ends_at"),
)

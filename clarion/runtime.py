"""build_runtime(settings): the one place that picks the store dialect and, with it, its companions.

The database URL decides everything that differs between the embedded and the scale-out setup: the
SQLite file or PostgreSQL, the rate-limit counter (in-process or shared table), the job queue engine
(single-writer claims and in-process wake-ups, or SKIP LOCKED and LISTEN/NOTIFY). Routes and CLI commands
receive the resulting `Runtime` and never look at the dialect themselves.
"""

from __future__ import annotations

import functools
import gc
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from clarion.api.auth import KeyResolver
from clarion.api.ratelimit import MemoryRateCounter, RateCounter, RateLimiter
from clarion.channels import ChannelRegistry, load_channels
from clarion.config import Settings
from clarion.engine.audience_catalog import RECOMPUTE_JOB, AudienceCatalog
from clarion.engine.bulk import BULK_DISCARD_HOOKS, BULK_QUEUE, bulk_job_handlers
from clarion.engine.housekeeping import IdempotencyKeyPruner, RetentionPruner
from clarion.engine.message_delivery import DELIVERY_JOB, deliver_messages
from clarion.engine.outbound_http import OutboundHTTP
from clarion.engine.run_executor import execute_step, step_discarded
from clarion.engine.templates import TemplateRenderer
from clarion.engine.trigger import TriggerIntake, start_runs
from clarion.engine.workflow_catalog import WorkflowCatalog
from clarion.engine.workflow_jobs import STEP_JOB, TRIGGER_JOB, WORKFLOW_QUEUE
from clarion.errors import ClarionError
from clarion.jobs.engines import PostgresQueueEngine, QueueEngine, SQLiteQueueEngine
from clarion.jobs.engines.base import Clock
from clarion.jobs.job import DEFAULT_QUEUE, JobHandler, JobRecord, Outcome
from clarion.jobs.looper import Looper
from clarion.jobs.process_locks import ProcessLocks
from clarion.jobs.worker import Worker, WorkerOptions
from clarion.observability.metrics import Metrics
from clarion.store.audiences import AudienceStore
from clarion.store.bulk_operations import BulkOperationStore
from clarion.store.channel_data import ChannelDataStore
from clarion.store.db import Database, create_database
from clarion.store.environments import EnvironmentStore
from clarion.store.messages import MessageStore
from clarion.store.migrate import holds_schema, migrate
from clarion.store.objects import ObjectStore
from clarion.store.preferences import PreferenceStore
from clarion.store.rate_limits import DatabaseRateCounter
from clarion.store.retention import PASS_SECONDS
from clarion.store.subscriptions import SubscriptionStore
from clarion.store.tenants import TenantStore
from clarion.store.users import UserStore
from clarion.store.workflow_runs import WorkflowRunStore
from clarion.store.workflows import WorkflowStore


@dataclass
class Runtime:
    settings: Settings
    database: Database
    environments: EnvironmentStore
    keys: KeyResolver
    rate_limiter: RateLimiter
    queue: QueueEngine
    bulk_operations: BulkOperationStore
    users: UserStore
    objects: ObjectStore
    channels: ChannelRegistry
    channel_data: ChannelDataStore
    preferences: PreferenceStore
    tenants: TenantStore
    subscriptions: SubscriptionStore
    audiences: AudienceStore
    renderer: TemplateRenderer
    workflows: WorkflowCatalog
    audience_catalog: AudienceCatalog
    workflow_runs: WorkflowRunStore
    messages: MessageStore
    trigger_intake: TriggerIntake
    metrics: Metrics
    outbound_http: OutboundHTTP
    """Fetch steps' requests, through the address guard (`clarion.engine.outbound_http`)."""

    async def close(self) -> None:
        await self.outbound_http.aclose()
        await self.database.dispose()


def create_queue_engine(database: Database, *, clock: Clock | None = None) -> QueueEngine:
    """The job queue engine for the store's dialect, on the database's clock (tests may pass one)."""
    if database.dialect_name == "postgresql":
        return PostgresQueueEngine(database, clock=clock)
    return SQLiteQueueEngine(database, clock=clock)


def process_locks(database: Database) -> ProcessLocks | None:
    """The workers' process locks, beside the SQLite file; None on PostgreSQL, whose workers may live on
    other hosts and are known dead by their heartbeats alone."""
    if database.dialect_name != "sqlite" or database.writer.url.database in (None, "", ":memory:"):
        return None  # a database in memory is this process's alone
    return ProcessLocks.beside(Path(database.writer.url.database))


def worker_options(settings: Settings) -> WorkerOptions:
    """Clarion's queues, with the lease, heartbeat and rescue intervals of `settings`."""
    return WorkerOptions(
        queues={DEFAULT_QUEUE: 10, BULK_QUEUE: 2, WORKFLOW_QUEUE: 20},
        lease_seconds=settings.job_lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        rescue_seconds=settings.rescue_seconds,
    )


class StoreMissingError(ClarionError):
    """A command that works on an existing store found none where its settings point."""


async def build_runtime(
    settings: Settings,
    *,
    apply_migrations: bool = True,
    create_store: bool = True,
    serves_requests: bool = True,
    metrics: Metrics | None = None,
) -> Runtime:
    """The runtime on the store `settings` point at. Only the commands that run Clarion (serve, api,
    worker, migrate) create a missing store and channels file; the others pass `create_store=False` and
    get a `StoreMissingError` instead of an empty store made wherever they happened to be run. A process
    that serves requests bounds each database wait by `Settings.request_db_timeout`, one that only runs
    jobs (`serves_requests=False`) by the longer `job_db_timeout`. Given `metrics`, it counts into those
    instead of its own (a second runtime in one process, `build_job_runtime`)."""
    wait_seconds = settings.request_db_timeout if serves_requests else settings.job_db_timeout
    if create_store:
        # Read before touching the database, so a broken channels file fails the start at once.
        channels = load_channels(settings.resolved_channels_file, create=True)
        database = create_database(settings.resolved_database_url, wait_seconds=wait_seconds)
    else:
        database = await _open_existing_store(settings, wait_seconds)
        try:
            channels = load_channels(settings.resolved_channels_file)
        except ClarionError:
            await database.dispose()
            raise
    if apply_migrations:
        await migrate(database)
    counter: RateCounter = (
        DatabaseRateCounter(database) if database.dialect_name == "postgresql" else MemoryRateCounter()
    )
    environments = EnvironmentStore(database)
    renderer = TemplateRenderer()
    queue = create_queue_engine(database)
    workflows = WorkflowCatalog(
        WorkflowStore(database), channels, renderer, cache_seconds=settings.workflow_cache_seconds
    )
    audience_catalog = AudienceCatalog(
        database, workflows, queue, cache_seconds=settings.workflow_cache_seconds
    )
    return Runtime(
        settings=settings,
        database=database,
        environments=environments,
        keys=KeyResolver(environments, settings.key_cache_seconds),
        rate_limiter=RateLimiter(settings.rate_limit_mode, counter),
        queue=queue,
        bulk_operations=BulkOperationStore(database),
        users=UserStore(database, audience_catalog),
        objects=ObjectStore(database),
        channels=channels,
        channel_data=ChannelDataStore(database),
        preferences=PreferenceStore(database),
        tenants=TenantStore(database),
        subscriptions=SubscriptionStore(database, audience_catalog),
        audiences=AudienceStore(database, audience_catalog),
        renderer=renderer,
        workflows=workflows,
        audience_catalog=audience_catalog,
        workflow_runs=WorkflowRunStore(database),
        messages=MessageStore(database),
        trigger_intake=TriggerIntake(database, queue),
        metrics=metrics or Metrics(database, channels),
        outbound_http=OutboundHTTP.from_settings(settings),
    )


async def build_job_runtime(runtime: Runtime) -> Runtime:
    """The runtime `clarion serve`'s worker runs on. On PostgreSQL a runtime of its own, whose database
    waits have the longer job bound as `clarion worker`'s do, counting into the serving runtime's metrics.
    On SQLite the serving runtime itself: a process keeps one writer connection to the file, and SQLite's
    only waits are lock waits on other processes, after which a job is retried."""
    if runtime.database.dialect_name != "postgresql":
        return runtime
    jobs = await build_runtime(
        runtime.settings, apply_migrations=False, serves_requests=False, metrics=runtime.metrics
    )
    runtime.metrics.watch_pools(jobs.database, "jobs")
    return jobs


def _require_sqlite_file(settings: Settings) -> None:
    """Checked before connecting, since opening a SQLite file creates it."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        raise StoreMissingError(
            f"no Clarion store at {url.database}; start `clarion serve --data-dir {settings.data_dir}` "
            "first, or give this command the --data-dir (or CLARION_DATABASE_URL) of an existing store"
        )


async def _open_existing_store(settings: Settings, wait_seconds: float) -> Database:
    _require_sqlite_file(settings)
    database = create_database(settings.resolved_database_url, wait_seconds=wait_seconds)
    try:
        found = await holds_schema(database)
    except (sa.exc.DBAPIError, OSError) as exc:
        await database.dispose()
        reason = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        raise StoreMissingError(f"cannot open the Clarion store in {database.describe()}: {reason}") from exc
    if not found:
        await database.dispose()
        raise StoreMissingError(
            f"no Clarion store in {database.describe()}; start `clarion serve` (or run `clarion "
            "migrate`) with this CLARION_DATABASE_URL first, or set the CLARION_DATABASE_URL of an "
            "existing store"
        )
    return database


YOUNG_COLLECTION_THRESHOLD = 20_000
"""Allocations between two collections of the cyclic collector's youngest generation in a serving process
(Python's default: 700)."""


def freeze_startup_heap() -> None:
    """Take every object made so far out of the cyclic collector's sight, once a serving process has built
    its runtime. They live as long as the process (modules, schemas, compiled statements), and each full
    collection would otherwise walk them all, while no request or step runs; a trigger's fan-out
    allocates enough to cause one or two (docs/decisions.md).

    Then collect the youngest generation less often. A fan-out's runs, messages and rows live until its
    transaction commits, and at Python's default every 700 allocations found them alive, moved them to the
    older generations and walked them again there, a good part of the fan-out's time. The garbage the
    collector exists for, reference cycles, is rare here; it waits a few thousand allocations longer."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def build_worker(runtime: Runtime, options: WorkerOptions | None = None) -> Worker:
    """The job worker with every job kind's handler and Clarion's queues."""

    async def run_trigger(job: JobRecord) -> Outcome:
        return await start_runs(runtime, job)

    async def run_step(job: JobRecord) -> Outcome:
        return await execute_step(runtime, job)

    async def run_delivery(job: JobRecord) -> Outcome:
        return await deliver_messages(runtime.database, runtime.channels, job)

    handlers: dict[str, JobHandler] = {
        **bulk_job_handlers(runtime),
        TRIGGER_JOB: run_trigger,
        STEP_JOB: run_step,
        RECOMPUTE_JOB: runtime.audience_catalog.run_recompute,
        DELIVERY_JOB: run_delivery,
    }
    chosen = options or worker_options(runtime.settings)
    housekeeping: list[Looper] = [IdempotencyKeyPruner(runtime.database, chosen.prune_seconds)]
    if runtime.settings.retention_days:
        retention = timedelta(days=runtime.settings.retention_days)
        housekeeping.append(RetentionPruner(runtime.database, PASS_SECONDS, retention))
    return Worker(
        runtime.queue,
        handlers,
        chosen,
        on_discarded={**BULK_DISCARD_HOOKS, STEP_JOB: functools.partial(step_discarded, runtime.queue)},
        housekeeping=housekeeping,
        locks=process_locks(runtime.database),
        observer=runtime.metrics,
    )

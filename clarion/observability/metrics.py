"""A runtime's Prometheus metrics (`GET /metrics`), in a registry of its own, so that several runtimes in
one process (tests) keep theirs apart.

Counted as they happen: requests (`RequestLatencies`, by the request observer), jobs as they start and
end (`Metrics` is the worker's `JobObserver`), runs started and completed and messages created by channel
type (by the engine, once per committed batch). Read from the store when scraped, in one query: the jobs
available, executing and retryable in each queue; and the connection pools' use."""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from clarion.channels import ChannelRegistry
from clarion.jobs.job import JobRecord, JobState
from clarion.observability.request_latencies import RequestLatencies
from clarion.store.db import Database
from clarion.store.monitoring import WATCHED_JOB_STATES, job_counts, pool_usage

JOB_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

STORE_READ_SECONDS = 2.0
"""How long a scrape waits for the job counts before it answers without them."""


class _StoreCollector(Collector):
    """The store's gauges, from a snapshot taken by `refresh` just before each scrape: `collect` is
    called synchronously and cannot query."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.pools: dict[str, Database] = {"": database}
        """The databases whose pools are reported, by the prefix of their pools' names."""
        self._jobs: dict[tuple[str, str], int] | None = None
        self._queues: set[str] = set()
        """Every queue seen so far: a queue that empties reads 0 rather than vanishing."""

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(STORE_READ_SECONDS):
                self._jobs = await job_counts(self.database)
        except Exception:
            self._jobs = None  # reported as clarion_database_up 0; the API's own errors say why
            return
        self._queues.update(queue for queue, _ in self._jobs)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "clarion_database_up", "1 when the last scrape could read the store's job counts, else 0."
        )
        up.add_metric([], 0 if self._jobs is None else 1)
        yield up
        if self._jobs is not None:
            jobs = GaugeMetricFamily(
                "clarion_jobs",
                "Jobs by queue and state (available, executing, retryable).",
                labels=["queue", "state"],
            )
            for queue in sorted(self._queues):
                for state in WATCHED_JOB_STATES:
                    jobs.add_metric([queue, state.value], self._jobs.get((queue, state.value), 0))
            yield jobs
        in_use = GaugeMetricFamily(
            "clarion_db_connections_in_use", "Database connections in use, by pool.", labels=["pool"]
        )
        size = GaugeMetricFamily(
            "clarion_db_connections_size", "Database connections each pool keeps.", labels=["pool"]
        )
        for prefix, database in self.pools.items():
            for pool in pool_usage(database):
                name = f"{prefix}-{pool.pool}" if prefix else pool.pool
                in_use.add_metric([name], pool.in_use)
                size.add_metric([name], pool.size)
        yield in_use
        yield size


class Metrics:
    def __init__(self, database: Database, channels: ChannelRegistry) -> None:
        self.channels = channels
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestLatencies()
        self.registry.register(self.requests)
        self._store = _StoreCollector(database)
        self.registry.register(self._store)
        self.job_latency = Histogram(
            "clarion_job_latency_seconds",
            "How late jobs started: from the moment they were due to the moment a worker took them.",
            ["queue"],
            buckets=JOB_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "clarion_jobs_finished",
            "Job attempts by queue and the state they left the job in (superseded: the attempt was no"
            " longer the job's, its outcome dropped).",
            ["queue", "state"],
            registry=self.registry,
        )
        self.runs_started = Counter(
            "clarion_workflow_runs_started", "Workflow runs started.", registry=self.registry
        )
        self.runs_completed = Counter(
            "clarion_workflow_runs_completed",
            "Workflow runs that reached their end (their last step, or ended early by a condition).",
            registry=self.registry,
        )
        self.messages_created = Counter(
            "clarion_messages_created",
            "Messages created, by channel type.",
            ["channel_type"],
            registry=self.registry,
        )

    def watch_pools(self, database: Database, prefix: str) -> None:
        """Report `database`'s pools too, named `<prefix>-<pool>`."""
        self._store.pools[prefix] = database

    def job_started(self, job: JobRecord) -> None:
        if job.attempted_at is not None:
            late = (job.attempted_at - job.scheduled_at).total_seconds()
            self.job_latency.labels(job.queue).observe(max(late, 0.0))

    def job_finished(self, job: JobRecord, state: JobState | None) -> None:
        self.jobs_finished.labels(job.queue, "superseded" if state is None else state.value).inc()

    def runs_progressed(self, *, started: int, completed: int, channel_ids: Iterable[str]) -> None:
        """Count a committed batch of runs: how many started and completed, and their new messages'
        channels (by id)."""
        if started:
            self.runs_started.inc(started)
        if completed:
            self.runs_completed.inc(completed)
        for channel_id, count in Tally(channel_ids).items():
            channel = self.channels.get(channel_id)
            self.messages_created.labels("unknown" if channel is None else channel.type.value).inc(count)

    async def exposition(self) -> bytes:
        """The metrics in Prometheus's text format, with the store read now."""
        await self._store.refresh()
        return generate_latest(self.registry)

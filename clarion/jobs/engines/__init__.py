"""Queue engines: one `QueueEngine` protocol (`base.py`), implemented for PostgreSQL (`postgres.py`) and
SQLite (`sqlite.py`). `clarion.runtime` picks one from the database URL."""

from __future__ import annotations

from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.engines.postgres import PostgresQueueEngine
from clarion.jobs.engines.sqlite import SQLiteQueueEngine

__all__ = ["PostgresQueueEngine", "QueueEngine", "SQLiteQueueEngine"]

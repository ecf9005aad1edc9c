"""The store's notion of "now": timezone-aware UTC, microsecond precision, one place to read it."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)

"""The store's notion of "now": timezone-aware UTC, microsecond precision, one place to read it."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=64)
def utc_text(moment: datetime) -> str:
    """An aware moment as ISO 8601 text in UTC, as JSON documents in the store keep it (the events on runs
    and messages). Remembered for the last few: the records one pass makes share their moment."""
    return moment.astimezone(UTC).isoformat()

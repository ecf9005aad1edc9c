"""How a serving process logs (`CLARION_LOG_FORMAT`): Python's plain lines of warnings and errors as
before (`text`), or one JSON object per line for log collectors (`json`), from INFO up: one line per
request (`clarion.access`, from `clarion.observability.request_observer`) and per job outcome
(`clarion.jobs.executor`) besides the warnings and errors. Each line carries the id of the request being
served when it was logged, and the fields the record was given as `extra`."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from uvicorn.config import LOGGING_CONFIG

from clarion.config import LogFormat

REQUEST_ID: ContextVar[str | None] = ContextVar("clarion_request_id", default=None)
"""The id of the request this task serves (`x-request-id`), for the log lines written while serving it."""

_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update((key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(log_format: LogFormat) -> None:
    """Set up the root logger of a serving process (`clarion serve`, `api`, `worker`)."""
    if log_format is LogFormat.TEXT:
        return  # Python's last-resort handler, as before: warnings and errors, one plain line each
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any] | None:
    """What to give uvicorn as `log_config`: its own text set-up, or none, so that its loggers' records
    reach the root logger's JSON lines."""
    if log_format is LogFormat.JSON:
        return None
    return LOGGING_CONFIG

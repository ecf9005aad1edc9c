"""Settings: read once from environment variables (and CLI flags that override them), validated, frozen.

Every other module receives a `Settings`; nothing else reads `os.environ` for configuration, except the
channels file loader, which expands `${VAR}` references to secrets (`clarion.channels`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from clarion.engine.address_policy import HostList


class RateLimitMode(StrEnum):
    """Who Knock's per-endpoint rate-limit tiers apply to."""

    CLIENT = "client"  # publishable-key requests only, scoped per user
    KNOCK = "knock"  # every request, as Knock's SaaS does
    OFF = "off"


class LogFormat(StrEnum):
    TEXT = "text"  # Python's plain lines, warnings and errors only
    JSON = "json"  # one JSON object per line: every request, every job outcome, and the rest


METRICS_OFF = "off"
METRICS_OPEN = "open"
MIN_METRICS_TOKEN_LENGTH = 16
"""A shorter `CLARION_METRICS` value is refused rather than taken as a token: it is likelier a typo of
`off` or `open` (or `true`) than a secret."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".clarion")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    rate_limit_mode: RateLimitMode = RateLimitMode.CLIENT
    channels_file: Path | None = None
    workflows_dir: Path = Path("workflows")
    audiences_dir: Path = Path("audiences")
    key_cache_seconds: float = 2.0
    workflow_cache_seconds: float = 2.0
    cors_origins: tuple[str, ...] = ("*",)
    job_lease_seconds: float = 60.0
    heartbeat_seconds: float = 2.0
    rescue_seconds: float = 2.0
    metrics: str = METRICS_OFF
    """`GET /metrics`: `off` (not served), `open` (no authentication), else the bearer token it needs."""
    log_format: LogFormat = LogFormat.TEXT
    retention_days: int = 90
    """Days messages and finished workflow runs are kept (`clarion.store.retention`); 0 keeps them all."""
    request_read_timeout: float = 30.0
    """Seconds an unfinished HTTP request may go without a byte before it is refused with a 408."""
    request_db_timeout: float = 5.0
    """Seconds any one wait on the database (connecting, a statement, a free connection, a lock) may take
    in a process that serves requests; past it the request answers 503."""
    job_db_timeout: float = 30.0
    """The same bound in a process that only runs jobs (`clarion worker`); a job that runs past it fails
    and is retried with backoff."""
    fetch_timeout: float = 15.0
    """Seconds a fetch step's request may take, resolution to last byte (Knock's limit); past it, retried."""
    fetch_allow_hosts: HostList = field(default_factory=HostList)
    """Hosts and networks fetch steps may reach although they are not public
    (`clarion.engine.address_policy`)."""
    fetch_deny_hosts: HostList = field(default_factory=HostList)
    """Hosts and networks fetch steps may never reach, public or allowed."""

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL with its async driver; the embedded SQLite file when none is set. (SQLite uses
        SQLAlchemy's aiosqlite dialect, whose connections `clarion.store.sqlite_driver` provides.)"""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'clarion.db'}"
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    @property
    def resolved_channels_file(self) -> Path:
        return self.channels_file or self.data_dir / "channels.yml"

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with every non-None override applied (CLI flags win over the environment)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


MAX_RETENTION_DAYS = 36_500


def _retention_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = -1
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"CLARION_RETENTION_DAYS must be a whole number of days from 0 (keep everything) to"
            f" {MAX_RETENTION_DAYS}, not {text!r}"
        )
    return days


def settings_from_env(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    mode = env.get("CLARION_RATE_LIMIT", RateLimitMode.CLIENT.value)
    try:
        rate_limit_mode = RateLimitMode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in RateLimitMode)
        raise ValueError(f"CLARION_RATE_LIMIT must be one of {choices}, not {mode!r}") from None
    channels_file = env.get("CLARION_CHANNELS_FILE")
    metrics = env.get("CLARION_METRICS", METRICS_OFF)
    if metrics not in (METRICS_OFF, METRICS_OPEN) and len(metrics) < MIN_METRICS_TOKEN_LENGTH:
        raise ValueError(
            f"CLARION_METRICS must be {METRICS_OFF}, {METRICS_OPEN} or a bearer token of at least"
            f" {MIN_METRICS_TOKEN_LENGTH} characters"
        )
    log_format = env.get("CLARION_LOG_FORMAT", LogFormat.TEXT.value)
    if log_format not in set(LogFormat):
        raise ValueError(f"CLARION_LOG_FORMAT must be text or json, not {log_format!r}")
    retention_days = _retention_days(env.get("CLARION_RETENTION_DAYS", "90"))
    cors_origins = tuple(o.strip() for o in env.get("CLARION_CORS_ORIGINS", "*").split(",") if o.strip())
    return Settings(
        data_dir=Path(env.get("CLARION_DATA_DIR", ".clarion")),
        database_url=env.get("CLARION_DATABASE_URL", ""),
        host=env.get("CLARION_HOST", "127.0.0.1"),
        port=int(env.get("CLARION_PORT", "8080")),
        rate_limit_mode=rate_limit_mode,
        channels_file=Path(channels_file) if channels_file else None,
        workflows_dir=Path(env.get("CLARION_WORKFLOWS_DIR", "workflows")),
        audiences_dir=Path(env.get("CLARION_AUDIENCES_DIR", "audiences")),
        cors_origins=cors_origins,
        job_lease_seconds=float(env.get("CLARION_JOB_LEASE_SECONDS", "60")),
        heartbeat_seconds=float(env.get("CLARION_HEARTBEAT_SECONDS", "2")),
        rescue_seconds=float(env.get("CLARION_RESCUE_SECONDS", "2")),
        metrics=metrics,
        log_format=LogFormat(log_format),
        retention_days=retention_days,
        request_read_timeout=float(env.get("CLARION_REQUEST_READ_TIMEOUT", "30")),
        request_db_timeout=_positive_seconds(env, "CLARION_REQUEST_DB_TIMEOUT", 5.0),
        job_db_timeout=_positive_seconds(env, "CLARION_JOB_DB_TIMEOUT", 30.0),
        fetch_timeout=_positive_seconds(env, "CLARION_FETCH_TIMEOUT", 15.0),
        fetch_allow_hosts=HostList.parse(
            env.get("CLARION_FETCH_ALLOW_HOSTS", ""), "CLARION_FETCH_ALLOW_HOSTS"
        ),
        fetch_deny_hosts=HostList.parse(env.get("CLARION_FETCH_DENY_HOSTS", ""), "CLARION_FETCH_DENY_HOSTS"),
    )


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, not {text!r}")
    return seconds

"""The observability tests' shared fixture: a runtime whose database cannot be reached."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clarion.config import METRICS_OPEN
from clarion.runtime import Runtime, build_runtime
from tests.conftest import make_settings


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _replace_with_folder(path: Path) -> None:
    for leftover in path.parent.glob(path.name + "*"):  # the file, its write-ahead log and index
        leftover.unlink()
    path.mkdir()


@pytest.fixture
async def unreachable_runtime(store: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime whose database cannot be reached: PostgreSQL at a port nothing listens on, or an SQLite
    file that became a folder after the start. Its metrics are open."""
    if store == "postgres":
        url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/clarion"
        settings = make_settings(store, tmp_path, url, metrics=METRICS_OPEN)
        runtime = await build_runtime(settings, apply_migrations=False)
    else:
        path = tmp_path / "gone.db"
        runtime = await build_runtime(
            make_settings(store, tmp_path, f"sqlite:///{path}", metrics=METRICS_OPEN)
        )
        await runtime.database.reader.dispose()  # its pooled connections would still read the old file
        _replace_with_folder(path)
    try:
        yield runtime
    finally:
        await runtime.close()

"""Process locks: which workers sharing a SQLite file are alive, known at once from the operating system.

Every process that uses a SQLite file runs on the host that holds it, so the host knows which of them are
alive. Each worker holds an exclusive lock (`flock`) on a file of its own, named after its id, in a folder
beside the database, for as long as it lives; the operating system lets go of the lock when the process
ends, however it ends. A lock file that can be locked therefore belongs to a dead worker, whose jobs the
lifeline rescues at once (`lifeline.py`): a `clarion serve` restarted after a kill -9 takes back its
predecessor's jobs as it starts, and a live second `clarion worker` on the same file keeps its own.

A lock file is created under a temporary name, locked, then renamed into place, so that no scan ever sees
an unlocked file of a live worker. A scan that finds a dead worker's file removes it while holding its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

SUFFIX = ".lock"


def _lock(fd: int) -> bool:
    """Take the exclusive lock on `fd` without waiting; False when another open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class ProcessLocks:
    """The lock files of the workers using one SQLite file, in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, int] = {}
        """The workers of this process whose locks it holds → the open file holding each."""

    @classmethod
    def beside(cls, database_file: Path) -> ProcessLocks:
        """The locks of the workers of the SQLite database `database_file`."""
        return cls(database_file.with_name(database_file.name + "-workers"))

    def _path(self, worker_id: str) -> Path:
        return self.directory / f"{worker_id}{SUFFIX}"

    def hold(self, worker_id: str) -> None:
        """Lock `worker_id`'s file until `release` or the end of the process."""
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / f".{worker_id}.new"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh name of this worker's own: nobody else holds it
        os.replace(staging, self._path(worker_id))
        self._held[worker_id] = fd

    def release(self, worker_id: str) -> None:
        """Remove `worker_id`'s file and let go of its lock (a clean stop)."""
        fd = self._held.pop(worker_id, None)
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path(worker_id).unlink()
        os.close(fd)

    def dead(self) -> list[str]:
        """The workers whose lock nobody holds: their processes have ended. Their files are removed, so
        each is reported by one scan (or by two racing ones, which rescue the same jobs harmlessly)."""
        if not self.directory.is_dir():
            return []
        found: list[str] = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            worker_id = path.name.removesuffix(SUFFIX)
            if worker_id in self._held:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # removed by another scan meanwhile
            try:
                if _lock(fd):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    found.append(worker_id)
            finally:
                os.close(fd)
        return found

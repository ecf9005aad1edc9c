"""Process locks: a worker's lock is free exactly when its process has ended, however it ended, and each
dead worker is reported once."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from clarion.jobs.process_locks import ProcessLocks

HOLDER = """
import sys, time
from pathlib import Path
from clarion.jobs.process_locks import ProcessLocks
ProcessLocks(Path(sys.argv[1])).hold(sys.argv[2])
print("held", flush=True)
time.sleep(3600)
"""


async def test_a_live_workers_lock_is_held_and_a_clean_release_leaves_nothing(tmp_path: Path) -> None:
    mine = ProcessLocks(tmp_path / "workers")
    mine.hold("host:1:a")
    # Another holder of the same folder (another process, or another worker of this one) sees it alive.
    assert ProcessLocks(tmp_path / "workers").dead() == []
    assert mine.dead() == []
    mine.release("host:1:a")
    assert list((tmp_path / "workers").iterdir()) == []
    assert ProcessLocks(tmp_path / "workers").dead() == []


async def test_the_lock_of_a_killed_process_is_free_and_reported_once(tmp_path: Path) -> None:
    folder = tmp_path / "workers"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(folder), "host:42:dead", stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"held\n"
    survivor = ProcessLocks(folder)
    survivor.hold("host:7:live")
    assert survivor.dead() == [], "the holder still lives"
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    assert survivor.dead() == ["host:42:dead"]
    assert survivor.dead() == [], "reported once"
    assert ProcessLocks(folder).dead() == [], "the survivor is alive"
    survivor.release("host:7:live")


async def test_no_folder_no_dead_workers(tmp_path: Path) -> None:
    assert ProcessLocks.beside(tmp_path / "clarion.db").dead() == []
    assert ProcessLocks.beside(tmp_path / "clarion.db").directory == tmp_path / "clarion.db-workers"

"""SQLite's WAL checkpoints, off the event loop: a thread with a connection of its own copies the pages
that commits appended to the write-ahead log back into the database file.

By default SQLite does this inside the commit that takes the log past 1,000 pages, on the committing
connection. Clarion's writer runs inline on the event loop (`clarion.store.sqlite_driver`), so that commit
held the loop while SQLite copied every page and synced both files, in every fan-out large enough to
write more than that in one transaction, several times as long as the commit itself. Here the writer only
nudges this thread after each commit; the thread runs a PASSIVE checkpoint, which waits for no reader or
writer, with the GIL released for its whole duration, so on a second core it costs the loop nothing. It
checkpoints at most once per `pause`, so that a stream of small commits does not become a stream of
fsyncs. Its connection is opened on the first nudge: a process that never writes never starts it.

The writer keeps an automatic checkpoint as a backstop, far above the usual log (`BACKSTOP_PAGES`), for
the case where this thread cannot keep up. Another process's checkpoint under way makes this one a
no-op; one that fails (the file cannot be read, say) is logged and tried again at the next nudge: the
log only grows meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

logger = logging.getLogger(__name__)

BACKSTOP_PAGES = 16_384
"""The writer's own automatic checkpoint, in pages of the log (64 MiB at SQLite's 4 KiB pages)."""


class WalCheckpointer:
    def __init__(self, path: str, *, pause: float = 0.05) -> None:
        self.path = path
        self.pause = pause
        self._nudged = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def nudge(self) -> None:
        """A commit appended to the log: checkpoint soon."""
        if self._thread is None:
            self._start()
        self._nudged.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="clarion-wal-checkpointer", daemon=True
                )
                try:
                    self._thread.start()
                except RuntimeError as exc:  # no thread to be had: the commit stands all the same
                    logger.warning(
                        "no WAL checkpointer for %s; only the writer's backstop will: %s", self.path, exc
                    )

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            logger.warning(
                "cannot open %s to checkpoint it; only the writer's backstop will: %s", self.path, exc
            )
            return
        try:
            while True:
                self._nudged.wait()
                if self._stopped.is_set():
                    return
                self._nudged.clear()
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    logger.warning("WAL checkpoint of %s failed, to be tried again: %s", self.path, exc)
                if self._stopped.wait(self.pause):
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        """End the thread (a checkpoint under way finishes first) and close its connection."""
        with self._start_lock:
            self._stopped.set()
            thread = self._thread
        self._nudged.set()
        if thread is not None and thread.ident is not None:  # started
            thread.join()

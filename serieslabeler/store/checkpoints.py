"""WAL checkpoints off the request path, for a long-running process such as the app.

In WAL mode a commit appends the changed pages to the write-ahead log; a *checkpoint* copies
them into the catalog file and syncs it. By default SQLite checkpoints inside the commit that
takes the log past 1,000 pages, and again when the last connection closes, so a label click on
5,000 images of a million-image catalog spends about 0.08 s of its time (most of a 25 MB sync)
on it. A process that opens connections with ``background_checkpoints`` turns that off: one
keeper per catalog holds a connection open (so closing the others never checkpoints) and
checkpoints in its own thread shortly after each write, while the page is being drawn.

Nothing is less durable: a commit is in the log before it returns, whoever checkpoints it and
whenever (a process that ends first leaves the log, which the next connection reads). The
keeper closes its connection after :data:`IDLE_S` without writes.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

# Seconds the keeper waits after a write before checkpointing (more writes meanwhile join it).
DELAY_S = 0.05
# Seconds without a write after which the keeper closes its connection and its thread ends.
IDLE_S = 30.0
# The log file is cut back to this size after a checkpoint empties it (SQLite keeps its largest).
WAL_SIZE_LIMIT = 64 * 1024 * 1024

_keepers: dict[Path, CheckpointKeeper] = {}
_keepers_lock = threading.Lock()


class CheckpointKeeper:
    """The connection and thread that checkpoint one catalog's log after each write."""

    def __init__(self, path: Path):
        self.path = path
        self.file_id = file_id(path)
        self.checkpoints = 0
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self._connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # a read joins the log's shared memory
        self._thread = threading.Thread(target=self._run, name=f"checkpoints {path}", daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        """A write was committed: checkpoint soon."""
        self._wanted.set()

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy what the log holds into the catalog now, without waiting for readers or writers
        (``PASSIVE``); SQLite's (busy, log frames, frames checkpointed)."""
        with self._lock:
            result = tuple(self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
            self.checkpoints += 1
            return result

    def _run(self) -> None:
        while True:
            if not self._wanted.wait(IDLE_S) and self._retire():
                return
            self._wanted.clear()
            time.sleep(DELAY_S)
            try:
                self.checkpoint()
            except sqlite3.Error:
                continue  # the next write asks again; until then the log only grows

    def _retire(self) -> bool:
        """Leave the registry and close, unless a write came in meanwhile."""
        with _keepers_lock:
            if _keepers.get(self.path) is self:
                if self._wanted.is_set():
                    return False
                del _keepers[self.path]
        with self._lock:
            self._connection.close()
        return True


def file_id(path: Path) -> tuple[int, int]:
    """A file's identity (device, inode): a catalog made again at the same path is another file."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def keeper_for(path: Path) -> CheckpointKeeper:
    """The catalog's keeper in this process, started on first use, and again when the file at
    ``path`` is another one (a workspace removed and made again): a keeper checkpoints the file
    it opened."""
    path = Path(path).resolve()
    with _keepers_lock:
        keeper = _keepers.get(path)
        if keeper is None or keeper.file_id != file_id(path):
            keeper = _keepers[path] = CheckpointKeeper(path)
        return keeper

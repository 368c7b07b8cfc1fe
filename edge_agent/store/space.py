"""Disk space for the outbox on a full disk: a reserve file, and giving freed pages back to the disk.

A full disk must not stop the agent from deleting what it delivered: in WAL mode even a DELETE needs
room for new WAL frames, and a checkpoint needs room for the database file to take them. The reserve
is a file of `size` bytes beside the database, created while there is room and given up (`release`)
when the disk refuses a write; `give_back` then shrinks the WAL and hands the pages that deliveries
freed back to the disk (databases created with auto_vacuum=INCREMENTAL). Nothing here raises: each
step reports whether it worked.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

logger = logging.getLogger(__name__)


class Reserve:
    """The reserve file beside a database."""

    def __init__(self, db: Path, size: int) -> None:
        self.path = db.with_name(db.name + ".reserve")
        self.size = size

    def room(self) -> bool:
        """Room on the file system for the reserve and half as much again (records fit once it is back)."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return True
        return st.f_bavail * st.f_frsize >= self.size * 3 // 2

    def make(self) -> bool:
        """Create the reserve if missing; False if the disk has no room for it."""
        if not self.size or (self.path.exists() and self.path.stat().st_size >= self.size):
            return True
        if not self.room():
            return False
        try:
            with open(self.path, "wb") as f:
                f.write(bytes(self.size))
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self.path.unlink(missing_ok=True)
            return False
        return True

    def release(self, why: str) -> bool:
        """Give the reserve up; False if there was none left."""
        if not self.path.exists():
            return False
        self.path.unlink()
        logger.warning("released the %d KiB disk reserve (%s)", self.size // 1024, why)
        return True


def give_back(conn: sqlite3.Connection, steps: int = 32) -> None:
    """Shrink the WAL, then free pages to the disk in small steps, each checkpointed at once: one big
    step would need more WAL room than a full disk has. Best effort (stops at the first refusal)."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        for _ in range(steps):
            if not conn.execute("PRAGMA freelist_count").fetchone()[0]:
                break
            conn.executescript("PRAGMA incremental_vacuum(64)")  # execute() would free a single page
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as err:
        logger.debug("no more space given back: %s", err)

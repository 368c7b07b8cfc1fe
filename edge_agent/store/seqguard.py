"""High-water mark for sequence numbers, kept beside the database.

The outbox database is the authority for the next seq, but a database restored from an old backup
(or replaced after corruption) would hand out numbers the hub has already stored, and the hub would
discard the new records as duplicates. The guard file records a reserved ceiling, rewritten (atomic
rename + fsync) every BLOCK numbers, so every seq ever committed lies below it.
"""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 100_000


class SeqGuard:
    """Reserve blocks of sequence numbers durably in a small sidecar file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ceiling = self._read()

    def _read(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            return 0  # a torn or garbled guard only loses protection, never data

    def reserve(self, next_seq: int) -> None:
        """Make sure every seq below `next_seq` is under the durable ceiling."""
        if next_seq <= self.ceiling:
            return
        ceiling = next_seq + BLOCK
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(str(ceiling))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self.ceiling = ceiling

    def start_for(self, db_next: int | None, now_us: int) -> tuple[int, bool]:
        """Return (next seq to use, whether a new epoch starts) for a database's stored next seq.

        A fresh database (None) starts above both the guard and the wall clock in microseconds, so a
        re-flashed device that lost both files still cannot collide with numbers it used before
        (that would need more than one record per microsecond since the old install).
        A database behind the guard by more than a block was restored from an older copy.
        """
        if db_next is None:
            return max(self.ceiling, now_us), True
        if db_next < self.ceiling - BLOCK:
            return self.ceiling, True
        return db_next, False

"""Sequence-number guard: a ceiling above every seq ever handed out, kept in a file beside the database.

Guarantee: no run of the outbox hands out a number an earlier run handed out, whatever the disk did to
the database — an SD card whose write cache dropped confirmed WAL frames, a restored backup, a
quarantined file. Every start continues above the guard's ceiling, above the database's own next
seq plus one BLOCK (so even a guard rolled back by the same lying disk leaves a block of headroom),
and above the wall clock in microseconds (so even a run lost whole, guard move included, is not
started again on the same numbers); the guard is moved durably above the new run before any number
is handed out (`plan_start`). Where all three were rolled back, the hub's check is the last line
(hub/db.py: a run that does not start above what the hub holds is refused and renumbered).
The numbers between what the database remembers and the new start are announced to the hub with a
reason (`Start.announce`):

    restart     the previous run stopped cleanly, or the OS has not rebooted since it started (its
                writes are all in the page cache): none of those numbers was ever used
    power_loss  the OS rebooted without a clean stop: records in that range may have been lost with
                the unsynced tail of the WAL; the hub reports those it never received as lost
    rewind      no power loss, yet the database is more than a block behind the guard: an older copy
                was restored (records in the range may be lost, as for power_loss)

A database more than a block behind the guard also raises the `store.seq_rewind` alert (`Start.rewound`).

The file holds `ceiling boot_id clean start` (clean: the next seq at a clean stop, else -; start: the
first seq of the run that wrote it). It is written by
overwriting a spare file of the same size and renaming it over the guard, so a move needs no new disk
block and works on a full disk; write() raises OSError when it cannot be made durable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BLOCK = 100_000
RECORD = 96  # bytes: every version of the file has this size, so rewriting the spare allocates nothing


@dataclass(frozen=True)
class GuardState:
    """What the guard file said at start."""

    ceiling: int = 0
    boot_id: str | None = None  # OS boot the ceiling was written in
    clean: int | None = None  # next seq of a clean stop, None after a crash or power cut
    start: int | None = None  # first seq of the run that wrote it


@dataclass(frozen=True)
class Start:
    """Where a run starts and what the previous run left unaccounted."""

    next_seq: int  # first seq of this run (its epoch)
    announce: tuple[int, int, str] | None  # (first, last, reason) of numbers skipped at this start
    rewound: bool  # the database was behind the guard by more than a block (restored copy)


def plan_start(db_next: int | None, guard: GuardState, boot_id: str | None, now_us: int) -> Start:
    """Pure: the first seq of a new run and the announcement for the numbers it skips.

    db_next None is a database that holds no run (first install, re-flash, quarantine, or one whose
    first run a power cut took whole): it starts above both the guard and the wall clock in
    microseconds, so a device that lost both files still cannot collide with numbers it used before
    (that would need more than one record per microsecond). If the guard remembers a run, the numbers
    from that run's start on are announced.
    """
    trusted = guard.clean is not None and guard.clean == db_next or (boot_id is not None and guard.boot_id == boot_id)
    if db_next is None:
        start = max(guard.ceiling, now_us)
        if not guard.start:
            return Start(start, None, False)
        # The guard saw a run this (empty) database no longer holds: lost in a power cut, or deleted.
        return Start(start, (guard.start, start - 1, "rewind" if trusted else "power_loss"), trusted)
    # The clock as a third floor: a disk that lost a whole run *and* the guard's move for it would
    # otherwise start the next run on the very same numbers.
    start = max(guard.ceiling, db_next + BLOCK, now_us)
    rewound = db_next < guard.ceiling - BLOCK
    reason = "power_loss" if not trusted else "rewind" if rewound else "restart"
    return Start(start, (db_next, start - 1, reason), rewound)


def read_boot_id() -> str | None:
    """The OS boot id (Linux), or None where there is none: then every unclean stop counts as a power loss."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


class SeqGuard:
    """The guard file: read once at start, moved durably before numbers above the ceiling are used."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spare = path.with_name(path.name + ".tmp")
        self.state = self._read()
        self.ceiling = self.state.ceiling
        self.boot_id: str | None = None
        self.run_start: int | None = None  # first seq of the current run, written with every move

    def _read(self) -> GuardState:
        try:
            parts = self.path.read_text().split()
        except (OSError, UnicodeDecodeError):
            return GuardState()
        try:
            ceiling = int(parts[0])
            boot = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            clean = int(parts[2]) if len(parts) > 2 and parts[2] != "-" else None
            start = int(parts[3]) if len(parts) > 3 and parts[3] != "-" else None
        except (IndexError, ValueError):
            return GuardState()  # a torn or garbled guard only loses protection, never data
        return GuardState(ceiling, boot, clean, start)

    def write(self, ceiling: int, clean: int | None = None) -> None:
        """Make `ceiling` (and a clean-stop mark) durable; OSError if the disk refuses."""
        text = (f"{ceiling} {self.boot_id or '-'} {'-' if clean is None else clean} "
                f"{'-' if self.run_start is None else self.run_start}")
        data = text.encode().ljust(RECORD - 1) + b"\n"
        fd = os.open(self.spare, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.spare, self.path)
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self.ceiling = ceiling
        self._make_spare(data)

    def _make_spare(self, data: bytes) -> None:
        """Allocate the next spare now, while the block the rename just freed is still free."""
        try:
            fd = os.open(self.spare, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, data, 0)
            finally:
                os.close(fd)
        except OSError:
            pass  # write() creates it next time, if there is room by then

    def reserve(self, next_seq: int) -> None:
        """Make sure every seq below `next_seq` is under the durable ceiling (OSError if it cannot)."""
        if next_seq > self.ceiling:
            self.write(next_seq + BLOCK)

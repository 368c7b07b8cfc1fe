"""Outbox recovery steps that move or account for seq numbers: salvage, rebase, renumber.

Every function here runs on the outbox writer's connection inside its open transaction (or, for
`salvage`, on a quarantined file opened read-only) and never raises for a file it cannot read:
salvage returns what it could learn and says how much it could not.

Announcement reasons written here (the hub's reading of them is in docs/protocol.md):
    quarantined        seqs of rows found in a quarantined database: each of them existed
    quarantine_unread  the quarantined file could not be read (wholly or partly): numbers up to the new
                       start may have been lost, how many is unknown
    seq_rewind         the hub already held numbers at or above this run's start (the guard and the
                       database were both rolled back): this run was renumbered above them
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from edge_agent.records import DataClass, to_ranges

logger = logging.getLogger(__name__)

Announcement = tuple[int, int, str]  # (first, last, reason)
TABLES = ("ob_transaction", "ob_measurement", "ob_state")


def salvage(db: Path, new_start: int) -> tuple[list[Announcement], int | None]:
    """What a quarantined database still tells: announcements for the hub, and how many rows were queued.

    Rows that can be read become exact `quarantined` ranges; the file's own pending announcements are
    passed on as they were, and the numbers above its last one as `restart` (never used); anything
    unreadable adds one `quarantine_unread` range [1, new_start - 1]
    (the hub reports what it never received below the last seq it holds as lost, the rest as unknown).
    The count is None when not every table could be read.
    """
    out: list[Announcement] = []
    seqs: list[int] = []
    complete = True
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return [(1, new_start - 1, "quarantine_unread")], None
    try:
        for table in TABLES:
            try:
                seqs += [r[0] for r in conn.execute(f"SELECT seq FROM {table}") if isinstance(r[0], int)]  # nosec B608
            except sqlite3.Error:
                complete = False
        try:
            out += [(int(a), int(b), str(r)[:32]) for a, b, r in conn.execute("SELECT first, last, reason FROM skipped")
                    if isinstance(a, int) and isinstance(b, int) and 0 < a <= b < new_start]
            row = conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
            if row and isinstance(row[0], int) and 0 < row[0] < new_start:
                out.append((row[0], new_start - 1, "restart"))  # never handed out by the old file
        except sqlite3.Error:
            complete = False
    finally:
        conn.close()
    out += [(a, b, "quarantined") for a, b in to_ranges([s for s in seqs if 0 < s < new_start])]
    if not complete:
        out.append((1, new_start - 1, "quarantine_unread"))
    return out, (len(seqs) if complete else None)


def shift_run(conn: sqlite3.Connection, epoch: int, delta: int) -> int:
    """Move every row and announcement numbered from `epoch` up by `delta`; returns the rows moved.

    delta must be at least the run's length, so no moved number lands on one not yet moved.
    """
    moved = 0
    for table in TABLES:
        moved += conn.execute(f"UPDATE {table} SET seq = seq + ? WHERE seq >= ?", (delta, epoch)).rowcount  # nosec B608
    conn.execute("UPDATE skipped SET first = first + ?, last = last + ? WHERE first >= ?", (delta, delta, epoch))
    return moved


def renumber(conn: sqlite3.Connection, cls: DataClass, ranges: list[list[int]], next_seq: int) -> tuple[int, int]:
    """Give the rows of `cls` in `ranges` new numbers from `next_seq`, in their old order.

    Returns (rows moved, next free seq). The old numbers are not announced: the hub holds other records
    under them (that is why they are renumbered).
    """
    table = f"ob_{cls.value}"
    cols = "seq, ts, kind, body, key" if cls is DataClass.STATE else "seq, ts, kind, body"
    rows: list[tuple[object, ...]] = []
    for a, b in ranges:
        rows += conn.execute(f"DELETE FROM {table} WHERE seq BETWEEN ? AND ? RETURNING {cols}", (a, b)).fetchall()  # nosec B608
    rows.sort(key=lambda r: int(r[0]))  # type: ignore[call-overload]
    marks = ",".join("?" * len(cols.split(",")))
    conn.executemany(f"INSERT INTO {table} VALUES ({marks})",  # nosec B608
                     [(next_seq + i, *r[1:]) for i, r in enumerate(rows)])
    return len(rows), next_seq + len(rows)

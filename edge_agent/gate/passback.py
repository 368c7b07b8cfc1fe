"""Anti-passback: used tickets in SQLite, so a ticket cannot be reused after a reboot either."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


class UsedTickets:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS used (ticket TEXT PRIMARY KEY, at REAL, gate TEXT)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS occupancy (day TEXT PRIMARY KEY, inside INTEGER)")

    def load_inside(self, day: str) -> int:
        """Occupancy survives a reboot of the gate computer; a new day starts at 0."""
        row = self.conn.execute("SELECT inside FROM occupancy WHERE day=?", (day,)).fetchone()
        return int(row[0]) if row else 0

    def save_inside(self, day: str, inside: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO occupancy VALUES (?,?)", (day, inside))

    def used(self, ticket: str) -> bool:
        return self.conn.execute("SELECT 1 FROM used WHERE ticket=?", (ticket,)).fetchone() is not None

    def mark(self, ticket: str, gate: str) -> bool:
        """Record a confirmed pass; False if the ticket was already used (a race between two gates)."""
        cur = self.conn.execute("INSERT OR IGNORE INTO used VALUES (?,?,?)", (ticket, time.time(), gate))
        return cur.rowcount == 1

    def close(self) -> None:
        self.conn.close()

"""Anti-passback and the day's occupancy in SQLite (synchronous=FULL): a ticket cannot be reused after a reboot
either, and the count survives one.

`passed()` marks the ticket used and stores the day's count in one transaction, so a power cut never leaves a
person counted without their ticket used, or the reverse. The schema is versioned by named migrations.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from edge_agent.core.sqlite import transaction
from edge_agent.store.migrations import Migration, migrate

# Databases made before migrations existed already hold these tables: IF NOT EXISTS adopts them.
MIGRATIONS: list[Migration] = [
    ("0001_used_and_occupancy", [
        "CREATE TABLE IF NOT EXISTS used (ticket TEXT PRIMARY KEY, at REAL, gate TEXT)",
        "CREATE TABLE IF NOT EXISTS occupancy (day TEXT PRIMARY KEY, inside INTEGER)",
    ]),
]


class UsedTickets:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        migrate(self.conn, MIGRATIONS)

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

    def passed(self, used: list[tuple[str, str]], saves: list[tuple[str, int]]) -> None:
        """Tickets used up (ticket, gate) and day counts (day, inside) from one tick, in one transaction."""
        if not used and not saves:
            return
        with transaction(self.conn) as c:
            for ticket, gate in used:
                c.execute("INSERT OR IGNORE INTO used VALUES (?,?,?)", (ticket, time.time(), gate))
            c.executemany("INSERT OR REPLACE INTO occupancy VALUES (?,?)", saves)

    def close(self) -> None:
        self.conn.close()

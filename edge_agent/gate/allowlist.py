"""Real-name tickets: a locally synced allow-list of ID-card reservations.

The hub sends the list (downlink `gate.allowlist`, or a file for the field technician); the gate keeps
it in SQLite and decides offline. ID numbers are never stored: entries are keyed by an HMAC-SHA256 of
the number under a per-venue key from the device config, so a copied database does not reveal who
booked. A sync replaces the whole list atomically and carries a version so an older list never
overwrites a newer one.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.gate.idnumber import normalise


@dataclass(frozen=True)
class Entry:
    id_number: str
    ticket: str
    date: str
    slot: str
    party: int = 1


class AllowList:
    def __init__(self, path: Path, key: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS allow (idh BLOB PRIMARY KEY, ticket TEXT, date TEXT, slot TEXT,"
                          " party INTEGER)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS allow_meta (k TEXT PRIMARY KEY, v)")

    def digest(self, id_number: str) -> bytes:
        return hmac.new(self.key, normalise(id_number).encode(), hashlib.sha256).digest()

    @property
    def version(self) -> int:
        row = self.conn.execute("SELECT v FROM allow_meta WHERE k='version'").fetchone()
        return int(row[0]) if row else 0

    def replace(self, entries: Iterable[Entry], version: int) -> bool:
        """Install a new list; False (and nothing changed) if `version` is not newer than the one held."""
        rows = [(self.digest(e.id_number), e.ticket, e.date, e.slot, int(e.party)) for e in entries]
        with self._lock:
            if version <= self.version:
                return False
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("DELETE FROM allow")
                self.conn.executemany("INSERT OR REPLACE INTO allow VALUES (?,?,?,?,?)", rows)
                self.conn.execute("INSERT OR REPLACE INTO allow_meta VALUES ('version', ?)", (version,))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return True

    def lookup(self, id_number: str) -> Entry | None:
        row = self.conn.execute("SELECT ticket, date, slot, party FROM allow WHERE idh=?",
                                (self.digest(id_number),)).fetchone()
        if row is None:
            return None
        return Entry("", row[0], row[1], row[2], int(row[3]))

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM allow").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

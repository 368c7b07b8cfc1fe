"""Local guest registrations (the front desk's copy): ID numbers encrypted with the device key, purged a
configurable time after check-out. No photos, no frames. Raised: ValueError from the vault on a wrong key."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from edge_agent.kiosk.privacy import Vault
from edge_agent.store.migrations import Migration, migrate

GUEST_MIGRATIONS: list[Migration] = [(
    "0001_guests", [
        "CREATE TABLE guests (stay INTEGER PRIMARY KEY, room TEXT NOT NULL, name TEXT NOT NULL,"
        " id_number TEXT NOT NULL, nationality TEXT NOT NULL, checked_in_at REAL NOT NULL,"
        " departure TEXT NOT NULL, checked_out_at REAL, auth_id TEXT, deposit_cents INTEGER NOT NULL DEFAULT 0)",
    ])]


class GuestStore:
    def __init__(self, path: Path, vault: Vault) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.vault = vault
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA secure_delete=ON")  # purged rows are overwritten, not left in free pages
        self.lock = threading.Lock()
        migrate(self.conn, GUEST_MIGRATIONS)

    def add(self, stay: int, room: str, name: str, id_number: str, nationality: str, at: float,
            departure: str, auth_id: str | None = None, deposit_cents: int = 0) -> None:
        enc = self.vault.encrypt(id_number, context=str(stay).encode())
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO guests VALUES (?,?,?,?,?,?,?,NULL,?,?)",
                              (stay, room, name, enc, nationality, at, departure, auth_id, deposit_cents))

    def deposit(self, stay: int) -> tuple[str | None, int]:
        """The deposit held for a stay: (pre-authorisation id, cents); (None, 0) when none."""
        with self.lock:
            row = self.conn.execute("SELECT auth_id, deposit_cents FROM guests WHERE stay = ?", (stay,)).fetchone()
        return (row[0], int(row[1])) if row else (None, 0)

    def checked_out(self, stay: int, at: float) -> None:
        with self.lock:
            self.conn.execute("UPDATE guests SET checked_out_at = ? WHERE stay = ?", (at, stay))

    def id_number(self, stay: int) -> str | None:
        """The clear ID number of a registered guest (for the front desk), None when unknown or purged."""
        with self.lock:
            row = self.conn.execute("SELECT id_number FROM guests WHERE stay = ?", (stay,)).fetchone()
        return self.vault.decrypt(row[0], context=str(stay).encode()) if row else None

    def purge(self, now: float, retention_s: float) -> int:
        """Delete registrations checked out more than `retention_s` ago; returns how many."""
        with self.lock:
            cur = self.conn.execute("DELETE FROM guests WHERE checked_out_at IS NOT NULL AND checked_out_at < ?",
                                    (now - retention_s,))
            return cur.rowcount

    def count(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM guests").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

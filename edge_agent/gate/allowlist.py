"""Real-name tickets: a locally synced allow-list of ID-card reservations.

The hub sends the list (downlink `gate.allowlist`, signed: see edge_agent/core/signed.py); the gate keeps
it in SQLite and decides offline. ID numbers never reach the device in the list and are never stored:
the hub sends each entry keyed by an HMAC-SHA256 of the number under the site's secret key (`idh`), and the
gate hashes what its reader reads with the same key (a mandatory random secret from the environment or a
0600 file, never the config file). A sync replaces the whole list atomically and carries a version so an
older list never overwrites a newer one; the version is the hub's command counter, never above it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.core.idnumber import keyed_digest
from edge_agent.core.sqlite import transaction
from edge_agent.store.migrations import Migration, migrate

# Databases made before migrations existed already hold these tables: IF NOT EXISTS adopts them.
MIGRATIONS: list[Migration] = [
    ("0001_allow", [
        "CREATE TABLE IF NOT EXISTS allow (idh BLOB PRIMARY KEY, ticket TEXT, date TEXT, slot TEXT, party INTEGER)",
        "CREATE TABLE IF NOT EXISTS allow_meta (k TEXT PRIMARY KEY, v)",
        # A list too big for one command (64 KiB) arrives in parts, staged here until all have come.
        "CREATE TABLE IF NOT EXISTS allow_stage (part INTEGER, idh BLOB, ticket TEXT, date TEXT, slot TEXT,"
        " party INTEGER)",
        "CREATE TABLE IF NOT EXISTS allow_parts (version INTEGER, part INTEGER, parts INTEGER,"
        " PRIMARY KEY (version, part))",
    ]),
]


@dataclass(frozen=True)
class Entry:
    idh: bytes  # keyed_digest(site key, ID number): 32 bytes
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
        migrate(self.conn, MIGRATIONS)

    def digest(self, id_number: str) -> bytes:
        return keyed_digest(self.key, id_number)

    @property
    def version(self) -> int:
        row = self.conn.execute("SELECT v FROM allow_meta WHERE k='version'").fetchone()
        return int(row[0]) if row else 0

    def replace(self, entries: Iterable[Entry], version: int) -> bool:
        """Install a new list; False (and nothing changed) if `version` is not newer than the one held."""
        rows = [(e.idh, e.ticket, e.date, e.slot, int(e.party)) for e in entries]
        with self._lock:
            if version <= self.version:
                return False
            with transaction(self.conn) as c:
                c.execute("DELETE FROM allow")
                c.execute("DELETE FROM allow_stage")  # an unfinished older list in parts is void now
                c.execute("DELETE FROM allow_parts")
                c.executemany("INSERT OR REPLACE INTO allow VALUES (?,?,?,?,?)", rows)
                c.execute("INSERT OR REPLACE INTO allow_meta VALUES ('version', ?)", (version,))
        return True

    def stage(self, entries: Iterable[Entry], version: int, part: int, parts: int) -> int | None:
        """One part of a list sent in `parts` pieces (any order, any part may be sent again). Returns how
        many parts are still missing (0: the whole list is now installed, atomically), or None when
        `version` is not newer than the installed or the staged list (nothing changed)."""
        if not 0 <= part < parts:
            raise ValueError(f"part {part} of {parts}")
        rows = [(part, e.idh, e.ticket, e.date, e.slot, int(e.party)) for e in entries]
        with self._lock:
            if version <= self.version:
                return None
            with transaction(self.conn) as c:
                staged = c.execute("SELECT max(version), max(parts) FROM allow_parts").fetchone()
                if staged[0] is not None and (version < staged[0] or (version == staged[0] and parts != staged[1])):
                    return None  # nothing written: the commit changes nothing
                if staged[0] is not None and version > staged[0]:  # a newer list replaces an unfinished one
                    c.execute("DELETE FROM allow_stage")
                    c.execute("DELETE FROM allow_parts")
                c.execute("DELETE FROM allow_stage WHERE part=?", (part,))
                c.executemany("INSERT INTO allow_stage VALUES (?,?,?,?,?,?)", rows)
                c.execute("INSERT OR REPLACE INTO allow_parts VALUES (?,?,?)", (version, part, parts))
                missing = parts - int(c.execute("SELECT count(*) FROM allow_parts").fetchone()[0])
                if missing == 0:
                    c.execute("DELETE FROM allow")
                    c.execute("INSERT OR REPLACE INTO allow SELECT idh, ticket, date, slot, party FROM allow_stage"
                              " ORDER BY part")
                    c.execute("INSERT OR REPLACE INTO allow_meta VALUES ('version', ?)", (version,))
                    c.execute("DELETE FROM allow_stage")
                    c.execute("DELETE FROM allow_parts")
        return missing

    def lookup(self, id_number: str) -> Entry | None:
        row = self.conn.execute("SELECT ticket, date, slot, party FROM allow WHERE idh=?",
                                (self.digest(id_number),)).fetchone()
        if row is None:
            return None
        return Entry(b"", row[0], row[1], row[2], int(row[3]))

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM allow").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

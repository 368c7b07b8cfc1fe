"""A local PMS in one SQLite file for small hotels: rooms, bookings, stays and charges.

Room assignment takes a vacant, clean room of the booked type (lowest floor first) and marks it occupied
in the same transaction as the stay, so two kiosks never give out the same room. No ID numbers are kept
here. Raised: NotFound (no room free, unknown stay), DeviceUnavailable (the file cannot be used).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_agent.kiosk import DeviceUnavailable, NotFound
from edge_agent.kiosk.ports import Bill, Booking
from edge_agent.store.migrations import Migration, migrate

PMS_MIGRATIONS: list[Migration] = [(
    "0001_pms", [
        "CREATE TABLE rooms (number TEXT PRIMARY KEY, type TEXT NOT NULL, floor INTEGER NOT NULL,"
        " status TEXT NOT NULL DEFAULT 'vacant_clean')",
        "CREATE TABLE bookings (id INTEGER PRIMARY KEY, confirmation TEXT NOT NULL UNIQUE, guest_name TEXT NOT NULL,"
        " phone TEXT NOT NULL, arrival TEXT NOT NULL, departure TEXT NOT NULL, room_type TEXT NOT NULL,"
        " prepaid_cents INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'booked')",
        "CREATE TABLE stays (id INTEGER PRIMARY KEY, booking_id INTEGER NOT NULL REFERENCES bookings(id),"
        " room TEXT NOT NULL, checked_in_at REAL NOT NULL, checked_out_at REAL)",
        "CREATE TABLE charges (id INTEGER PRIMARY KEY, stay_id INTEGER NOT NULL REFERENCES stays(id),"
        " item TEXT NOT NULL, cents INTEGER NOT NULL)",
    ])]
COLUMNS = "id, confirmation, guest_name, phone, arrival, departure, room_type, prepaid_cents"


def _nights(arrival: str, departure: str) -> int:
    import datetime as dt

    return max(1, (dt.date.fromisoformat(departure) - dt.date.fromisoformat(arrival)).days)


class SqlitePms:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.lock = threading.Lock()
        migrate(self.conn, PMS_MIGRATIONS)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as err:
                raise DeviceUnavailable(f"PMS database {self.path}: {err}") from err

    def close(self) -> None:
        self.conn.close()

    def health(self) -> str:
        try:
            with self._tx() as c:
                c.execute("SELECT 1").fetchone()
            return "ok"
        except DeviceUnavailable:
            return "unavailable"

    # ------------------------------------------------------------------ front desk (set-up, tests)

    def add_room(self, number: str, room_type: str, floor: int, status: str = "vacant_clean") -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO rooms VALUES (?,?,?,?)", (number, room_type, floor, status))

    def add_booking(self, confirmation: str, guest_name: str, phone: str, arrival: str, departure: str,
                    room_type: str, prepaid_cents: int = 0) -> int:
        with self._tx() as c:
            cur = c.execute("INSERT INTO bookings (confirmation, guest_name, phone, arrival, departure, room_type,"
                            " prepaid_cents) VALUES (?,?,?,?,?,?,?)",
                            (confirmation, guest_name, phone, arrival, departure, room_type, prepaid_cents))
            return int(cur.lastrowid or 0)

    def add_charge(self, stay: int, item: str, cents: int) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO charges (stay_id, item, cents) VALUES (?,?,?)", (stay, item, cents))

    # ------------------------------------------------------------------ the Pms protocol

    def find(self, *, confirmation: str | None = None, name: str | None = None, phone: str | None = None,
             arrival: str | None = None) -> list[Booking]:
        where, args = ["status = 'booked'"], []
        for col, val in (("confirmation", confirmation), ("guest_name", name), ("phone", phone),
                         ("arrival", arrival)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val.strip())
        if len(where) == 1:
            return []
        with self._tx() as c:
            # B608 below: the WHERE clauses are fixed strings chosen in code; every value is a bound parameter
            rows = c.execute(f"SELECT {COLUMNS} FROM bookings WHERE {' AND '.join(where)} ORDER BY id",  # nosec B608
                             args).fetchall()
        return [Booking(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _nights(r[4], r[5]), r[7]) for r in rows]

    def assign_room(self, booking: Booking) -> str:
        with self._tx() as c:
            row = c.execute("SELECT number FROM rooms WHERE type = ? AND status = 'vacant_clean'"
                            " ORDER BY floor, number LIMIT 1", (booking.room_type,)).fetchone()
        if row is None:
            raise NotFound(f"no clean vacant {booking.room_type} room")
        return str(row[0])

    def check_in(self, booking: Booking, room: str, now: float) -> int:
        with self._tx() as c:
            took = c.execute("UPDATE rooms SET status = 'occupied' WHERE number = ? AND status = 'vacant_clean'",
                             (room,)).rowcount
            if not took:
                raise NotFound(f"room {room} was taken meanwhile")
            c.execute("UPDATE bookings SET status = 'checked_in' WHERE id = ?", (booking.id,))
            cur = c.execute("INSERT INTO stays (booking_id, room, checked_in_at) VALUES (?,?,?)",
                            (booking.id, room, now))
            return int(cur.lastrowid or 0)

    def cancel_check_in(self, stay: int) -> None:
        with self._tx() as c:
            row = c.execute("SELECT booking_id, room FROM stays WHERE id = ? AND checked_out_at IS NULL",
                            (stay,)).fetchone()
            if row is None:
                return
            c.execute("UPDATE rooms SET status = 'vacant_clean' WHERE number = ?", (row[1],))
            c.execute("UPDATE bookings SET status = 'booked' WHERE id = ?", (row[0],))
            c.execute("DELETE FROM stays WHERE id = ?", (stay,))

    def bill(self, stay: int) -> Bill:
        with self._tx() as c:
            row = c.execute("SELECT room FROM stays WHERE id = ? AND checked_out_at IS NULL", (stay,)).fetchone()
            if row is None:
                raise NotFound(f"no open stay {stay}")
            lines = c.execute("SELECT item, cents FROM charges WHERE stay_id = ? ORDER BY id", (stay,)).fetchall()
        return Bill(stay, str(row[0]), [(str(i), int(cents)) for i, cents in lines])

    def check_out(self, stay: int, now: float) -> None:
        with self._tx() as c:
            row = c.execute("SELECT booking_id, room FROM stays WHERE id = ? AND checked_out_at IS NULL",
                            (stay,)).fetchone()
            if row is None:
                raise NotFound(f"no open stay {stay}")
            c.execute("UPDATE stays SET checked_out_at = ? WHERE id = ?", (now, stay))
            c.execute("UPDATE rooms SET status = 'vacant_dirty' WHERE number = ?", (row[1],))
            c.execute("UPDATE bookings SET status = 'checked_out' WHERE id = ?", (row[0],))

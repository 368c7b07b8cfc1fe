"""Hub storage: SQLite (default) or PostgreSQL, unique on (device_id, seq), one commit per drain.

Exceptions from the drivers are not translated: a failed commit sends no ack, and the device
re-sends, which is the whole recovery story.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.sync.envelope import Batch


@dataclass
class DeviceState:
    site: str
    device: str
    online: bool
    boot: int | None
    epoch: int | None
    meta: dict[str, Any]


class Backend(Protocol):
    def ingest(self, batches: list[Batch], states: list[DeviceState]) -> list[tuple[int, int]]: ...
    def devices(self) -> list[dict[str, Any]]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


def subtract(gaps: list[list[int]], holes: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Remove the ranges in holes from gaps (all inclusive)."""
    out = [list(g) for g in gaps]
    for a, b in sorted(holes):
        nxt = []
        for g0, g1 in out:
            if b < g0 or a > g1:
                nxt.append([g0, g1])
                continue
            if g0 < a:
                nxt.append([g0, a - 1])
            if b < g1:
                nxt.append([b + 1, g1])
        out = nxt
    return out


def explain_gaps(raw: list[tuple[int, int]], skips: list[tuple[int, int]], epochs: set[int]) -> list[list[int]]:
    """Missing seq ranges minus the ones the device announced as dropped, and minus epoch jumps."""
    gaps = [[a, b] for a, b in raw if b + 1 not in epochs]
    return subtract(gaps, skips)


def device_row(cols: tuple[Any, ...], meta: dict[str, Any], events: int, raw: list[tuple[int, int]],
               skips: list[tuple[int, int]], epochs: set[int]) -> dict[str, Any]:
    """The per-device status both backends report (columns as selected from `devices`)."""
    dev, site, online, boot, epoch, last_seq, last_seen = cols
    return {"device": dev, "site": site, "online": bool(online), "boot": boot, "epoch": epoch,
            "last_seq": last_seq, "last_seen": last_seen, "events": events, "meta": meta,
            "gaps": explain_gaps(raw, skips, epochs), "dropped_ranges": len(skips)}


SQLITE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS events (device_id TEXT NOT NULL, seq INTEGER NOT NULL, site TEXT NOT NULL,"
    " class TEXT NOT NULL, kind TEXT NOT NULL, ts REAL NOT NULL, body TEXT NOT NULL, received REAL NOT NULL,"
    " PRIMARY KEY (device_id, seq)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY, site TEXT, online INTEGER DEFAULT 0,"
    " boot INTEGER, epoch INTEGER, last_seq INTEGER, last_seen REAL, meta TEXT)",
    "CREATE TABLE IF NOT EXISTS epochs (device_id TEXT, first_seq INTEGER, PRIMARY KEY (device_id, first_seq))",
    "CREATE TABLE IF NOT EXISTS skips (device_id TEXT, first INTEGER, last INTEGER, reason TEXT,"
    " PRIMARY KEY (device_id, first, last))",
]

GAP_SQL = ("SELECT seq + 1, nxt - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt FROM events"
           " WHERE device_id = {p}) AS s WHERE nxt > seq + 1")


class SqliteBackend:
    """Hub database in one SQLite file (WAL)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the ack goes out after COMMIT, so the commit must survive a power cut, not only a crash.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=60000")
        for sql in SQLITE_SCHEMA:
            self.conn.execute(sql)

    def ingest(self, batches: list[Batch], states: list[DeviceState]) -> list[tuple[int, int]]:
        c = self.conn
        now = time.time()
        out = []
        c.execute("BEGIN IMMEDIATE")
        try:
            for b in batches:
                n = len(b.seq)
                # Per-batch constants as literals: binding 4 values a row instead of 8 is ~25% faster.
                # Safe: device and site match ID_RE ([A-Za-z0-9_.-]) and class is an enum value.
                cur = c.executemany(
                    f"INSERT INTO events VALUES ('{b.device}',?,'{b.site}','{b.cls.value}',?,?,?,{now!r})"
                    " ON CONFLICT DO NOTHING", zip(b.seq, b.kind, b.ts, b.body, strict=True))
                out.append((cur.rowcount, n - cur.rowcount))
                self._touch(b, now)
            for s in states:
                self._state(s, now)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return out

    def _touch(self, b: Batch, now: float) -> None:
        c = self.conn
        top = max(b.seq) if b.seq else None
        c.execute("INSERT INTO devices (device_id, site, last_seq, last_seen, boot, epoch) VALUES (?,?,?,?,?,?)"
                  " ON CONFLICT(device_id) DO UPDATE SET last_seq=max(coalesce(last_seq, 0),"
                  " coalesce(excluded.last_seq, 0)), last_seen=excluded.last_seen, site=excluded.site",
                  (b.device, b.site, top, now, b.boot, b.epoch))
        c.execute("INSERT OR IGNORE INTO epochs VALUES (?,?)", (b.device, b.epoch))
        if b.skipped:
            c.executemany("INSERT OR IGNORE INTO skips VALUES (?,?,?,?)",
                          [(b.device, f, la, r) for _, f, la, r in b.skipped])

    def _state(self, s: DeviceState, now: float) -> None:
        self.conn.execute(
            "INSERT INTO devices (device_id, site, online, boot, epoch, last_seen, meta) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT(device_id) DO UPDATE SET online=excluded.online, site=excluded.site,"
            " boot=coalesce(excluded.boot, boot), epoch=coalesce(excluded.epoch, epoch),"
            " last_seen=excluded.last_seen, meta=coalesce(excluded.meta, meta)",
            (s.device, s.site, int(s.online), s.boot, s.epoch, now, json.dumps(s.meta) if s.meta else None))
        if s.epoch is not None:
            self.conn.execute("INSERT OR IGNORE INTO epochs VALUES (?,?)", (s.device, s.epoch))

    def devices(self) -> list[dict[str, Any]]:
        c = self.conn
        out = []
        rows = c.execute("SELECT device_id, site, online, boot, epoch, last_seq, last_seen, meta FROM devices"
                         " ORDER BY device_id").fetchall()
        for dev, site, online, boot, epoch, last_seq, last_seen, meta in rows:
            raw = c.execute(GAP_SQL.format(p="?"), (dev,)).fetchall()
            skips = c.execute("SELECT first, last FROM skips WHERE device_id=?", (dev,)).fetchall()
            epochs = {r[0] for r in c.execute("SELECT first_seq FROM epochs WHERE device_id=?", (dev,))}
            n = c.execute("SELECT COUNT(*) FROM events WHERE device_id=?", (dev,)).fetchone()[0]
            out.append(device_row((dev, site, online, boot, epoch, last_seq, last_seen),
                                  json.loads(meta) if meta else {}, n, raw, skips, epochs))
        return out

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


PG_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS events (device_id TEXT NOT NULL, seq BIGINT NOT NULL, site TEXT NOT NULL,"
    " class TEXT NOT NULL, kind TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, body JSONB NOT NULL,"
    " received DOUBLE PRECISION NOT NULL, PRIMARY KEY (device_id, seq))",
    "CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY, site TEXT, online BOOLEAN DEFAULT false,"
    " boot BIGINT, epoch BIGINT, last_seq BIGINT, last_seen DOUBLE PRECISION, meta JSONB)",
    "CREATE TABLE IF NOT EXISTS epochs (device_id TEXT, first_seq BIGINT, PRIMARY KEY (device_id, first_seq))",
    "CREATE TABLE IF NOT EXISTS skips (device_id TEXT, first BIGINT, last BIGINT, reason TEXT,"
    " PRIMARY KEY (device_id, first, last))",
]


class PostgresBackend:
    """Hub database in PostgreSQL; one INSERT … SELECT unnest(…) per batch."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.conn = psycopg.connect(url, autocommit=False)
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(77001)")  # workers starting together
            for sql in PG_SCHEMA:
                cur.execute(sql)
        self.conn.commit()

    def ingest(self, batches: list[Batch], states: list[DeviceState]) -> list[tuple[int, int]]:
        try:
            return self._ingest(batches, states, strict=False)
        except self.psycopg.DataError:
            self.conn.rollback()
            return self._ingest(batches, states, strict=True)
        except BaseException:
            self.conn.rollback()
            raise

    def _ingest(self, batches: list[Batch], states: list[DeviceState], strict: bool) -> list[tuple[int, int]]:
        now = time.time()
        out = []
        with self.conn.cursor() as cur:
            for b in batches:
                n = len(b.seq)
                bodies = [_json_or_wrapped(x) for x in b.body] if strict else b.body
                cur.execute(
                    "INSERT INTO events SELECT d, s, si, c, k, t, b::jsonb, r FROM unnest("
                    "%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[],"
                    " %s::float8[]) AS u(d, s, si, c, k, t, b, r) ON CONFLICT DO NOTHING",
                    ([b.device] * n, b.seq, [b.site] * n, [b.cls.value] * n, b.kind, b.ts, bodies, [now] * n))
                out.append((cur.rowcount, n - cur.rowcount))
                cur.execute(
                    "INSERT INTO devices (device_id, site, last_seq, last_seen, boot, epoch) VALUES"
                    " (%s,%s,%s,%s,%s,%s) ON CONFLICT (device_id) DO UPDATE SET last_seq=GREATEST("
                    "devices.last_seq, excluded.last_seq), last_seen=excluded.last_seen, site=excluded.site",
                    (b.device, b.site, max(b.seq) if b.seq else None, now, b.boot, b.epoch))
                cur.execute("INSERT INTO epochs VALUES (%s,%s) ON CONFLICT DO NOTHING", (b.device, b.epoch))
                for _, f, la, r in b.skipped:
                    cur.execute("INSERT INTO skips VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                                (b.device, f, la, r))
            for s in states:
                cur.execute(
                    "INSERT INTO devices (device_id, site, online, boot, epoch, last_seen, meta) VALUES"
                    " (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (device_id) DO UPDATE SET online=excluded.online,"
                    " site=excluded.site, boot=COALESCE(excluded.boot, devices.boot),"
                    " epoch=COALESCE(excluded.epoch, devices.epoch), last_seen=excluded.last_seen,"
                    " meta=COALESCE(excluded.meta, devices.meta)",
                    (s.device, s.site, s.online, s.boot, s.epoch, now, json.dumps(s.meta) if s.meta else None))
                if s.epoch is not None:
                    cur.execute("INSERT INTO epochs VALUES (%s,%s) ON CONFLICT DO NOTHING", (s.device, s.epoch))
        self.conn.commit()
        return out

    def devices(self) -> list[dict[str, Any]]:
        out = []
        with self.conn.cursor() as cur:
            cur.execute("SELECT device_id, site, online, boot, epoch, last_seq, last_seen, meta FROM devices"
                        " ORDER BY device_id")
            for dev, site, online, boot, epoch, last_seq, last_seen, meta in cur.fetchall():
                cur.execute(GAP_SQL.format(p="%s"), (dev,))
                raw = cur.fetchall()
                cur.execute("SELECT first, last FROM skips WHERE device_id=%s", (dev,))
                skips = cur.fetchall()
                cur.execute("SELECT first_seq FROM epochs WHERE device_id=%s", (dev,))
                epochs = {r[0] for r in cur.fetchall()}
                cur.execute("SELECT COUNT(*) FROM events WHERE device_id=%s", (dev,))
                n = cur.fetchone()[0]  # type: ignore[index]
                out.append(device_row((dev, site, online, boot, epoch, last_seq, last_seen), meta or {}, n,
                                      raw, skips, epochs))
        self.conn.commit()
        return out

    def count(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM events")
            n = int(cur.fetchone()[0])  # type: ignore[index]
        self.conn.commit()
        return n

    def close(self) -> None:
        self.conn.close()


def _json_or_wrapped(text: str) -> str:
    """Keep a body that is not valid JSON (only a broken device sends one) as a JSON string."""
    try:
        json.loads(text)
        return text.replace("\\u0000", "")  # jsonb cannot hold NUL
    except ValueError:
        return json.dumps({"_invalid_body": text.replace("\x00", "")})


def open_backend(url: str) -> Backend:
    """`postgresql://…` for PostgreSQL, `sqlite:///path` or a plain path for SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(url)
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    return SqliteBackend(path)

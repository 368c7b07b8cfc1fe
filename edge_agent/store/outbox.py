"""SQLite outbox: group-committed, class-aware, budgeted, self-healing on corruption.

One writer thread owns every write. Producers hand it records and wait on a Future that resolves
only after the commit that contains the record; all records queued meanwhile share that commit (and
its single fsync). Transaction records switch the commit to synchronous=FULL; measurement and state
commits run at NORMAL (WAL: durable at the next checkpoint, never corrupt).

Sequence numbers never repeat for a device, whatever the disk did (store/seqguard.py): each open
starts a new run above the guard's ceiling, and the numbers it skips are announced to the hub with
the reason (restart, power_loss, rewind). A hub that already holds numbers of the new run (the guard
was rolled back too) refuses its batches; `rebase()` then renumbers the run above what the hub holds.

Full disk: the outbox opens and serves reads and acks without writing anything first. Until a run
could be started (guard moved, start committed), transactions are refused with OutboxFull and
measurements and states come back dropped; `full` and `stats()` say so, and a `store.disk_full`
alert record is written once space allows. A corrupt database is moved aside (quarantined); what it
still held is announced to the hub (recovery.salvage).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.records import Block, DataClass, PutResult, Record, to_ranges
from edge_agent.store import recovery, space
from edge_agent.store.migrations import migrate
from edge_agent.store.seqguard import BLOCK, GuardState, SeqGuard, Start, plan_start, read_boot_id

logger = logging.getLogger(__name__)

ROW_OVERHEAD = 48  # bytes a row costs beyond its body: seq, ts, kind, b-tree cell
TABLE = {c: f"ob_{c.value}" for c in DataClass}
TABLES = recovery.TABLES
MAX_KIND = 64


def quarantined_files(db: Path) -> list[str]:
    """Names of corrupt databases moved aside next to `db` (kept for upload)."""
    return sorted(p.name for p in db.parent.glob(db.name + ".corrupt-*") if not p.name.endswith(("-wal", "-shm")))


class OutboxError(Exception):
    """Base of outbox errors."""


class OutboxFull(OutboxError):
    """A transaction record could not be made durable: no space left."""


class OutboxClosed(OutboxError):
    """The outbox is closed."""


@dataclass
class StorePolicy:
    """Budget and retention; `ttl_s` of None keeps records until delivered."""

    budget_bytes: int = 256 * 1024 * 1024
    ttl_s: dict[DataClass, float | None] = field(
        default_factory=lambda: {
            DataClass.TRANSACTION: None,
            DataClass.MEASUREMENT: 7 * 86400.0,
            DataClass.STATE: 7 * 86400.0,
        }
    )
    max_commit_records: int = 20_000
    hard_cap_bytes: int | None = None  # SQLite max_page_count: a size-limited database file
    # Disk space held in a file beside the database and given up when the disk is full, so a checkpoint
    # and the deletions of delivered records still fit: the agent drains a full disk instead of sticking.
    reserve_bytes: int = 2 * 1024 * 1024


@dataclass
class _Put:
    rec: Record
    fut: Future[PutResult]


@dataclass
class _PutMany:
    recs: list[Record]
    fut: Future[list[PutResult]]


@dataclass
class _Ack:
    cls: DataClass
    ranges: list[list[int]]
    skip_ids: list[int]
    fut: Future[int]


@dataclass
class _Call:
    fn: Callable[[sqlite3.Connection], Any]
    fut: Future[Any]


_STOP = object()


def _is_full(err: sqlite3.Error) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "full" in str(err).lower()


def _pieces(ranges: list[list[int]], span: int) -> list[list[int]]:
    """Split inclusive seq ranges into ranges of at most `span` numbers."""
    return [[x, min(b, x + span - 1)] for a, b in ranges for x in range(a, b + 1, span)]


def _no_space(err: sqlite3.Error) -> bool:
    """Full, or an I/O error (what SQLite says when it cannot even create the WAL index on a full disk)."""
    return _is_full(err) or (isinstance(err, sqlite3.OperationalError) and "disk i/o error" in str(err).lower())


def _is_corrupt(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return isinstance(err, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


class Outbox:
    """Durable FIFO of records per data class, with idempotency keys (device, seq)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        policy: StorePolicy | None = None,
        clock: Callable[[], float] = time.time,
        boot_id: Callable[[], str | None] = read_boot_id,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.policy = policy or StorePolicy()
        self.clock = clock
        self.guard = SeqGuard(self.path.with_name(self.path.name + ".seq"))
        self.guard.boot_id = boot_id()
        self._disk_reserve = space.Reserve(self.path, self.policy.reserve_bytes)
        self.alerts: list[dict[str, Any]] = []  # raised by the store, also written as transaction records
        self._unwritten: list[dict[str, Any]] = []  # alerts waiting for space
        self.epoch = 0  # first seq of this run
        self.boot = 0  # runs of this database, this one included (the agent's boot counter)
        self.ready = False  # a run has started: numbers may be handed out
        self.full = False  # the disk (or the size cap) refused the last write that needed space
        self._start = Start(0, None, False)
        self._announce: list[recovery.Announcement] = []
        self._retry_at = 0.0
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._bytes = 0
        self._sync_mode = ""
        self._lock = threading.Lock()
        self.commits = 0  # durable commits (fsyncs for transaction groups): records/commit shows grouping
        self.committed = threading.Event()  # set after each commit that added records (uplink wakes)
        self._w = self._open_writer()
        self._r = self._connect(readonly=True)
        self._disk_reserve.make()
        self._accepting()
        self._thread = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._thread.start()
        if self.ready and self._unwritten:  # durable before anyone uses the new database
            self.call(lambda conn: None).result(30)

    # ---------------------------------------------------------------- opening and healing

    def _connect(self, readonly: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        if readonly:
            conn.execute("PRAGMA query_only=1")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        """Open (or heal) the database. A disk too full even to open it (no room for the WAL index) costs
        the reserve; with none left this raises OutboxFull, and a healthy database is never quarantined."""
        try:
            return self._open_once()
        except sqlite3.OperationalError as err:
            if not _no_space(err):
                raise
            if not self._disk_reserve.release("to open the outbox on a full disk"):
                raise OutboxFull(f"cannot open the outbox, the disk is full ({err}): free some space") from err
        try:
            return self._open_once()
        except sqlite3.OperationalError as err:
            if _no_space(err):
                raise OutboxFull(f"cannot open the outbox, the disk is full ({err}): free some space") from err
            raise

    def _open_once(self) -> sqlite3.Connection:
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        conn = self._connect()
        try:
            if fresh:  # before WAL mode and the first table, or it does not take
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._check(conn)
        except sqlite3.DatabaseError as err:
            conn.close()
            if _no_space(err):
                raise
            moved = self._quarantine(str(err))
            conn = self._connect()
            self._prepare(conn, fresh=True, salvaged=True)
            self._salvage(moved)
            return conn
        self._prepare(conn, fresh)
        return conn

    def _check(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot enable WAL (journal_mode={mode})")
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise sqlite3.DatabaseError(f"corrupt: quick_check says {result}")

    def _quarantine(self, reason: str) -> Path:
        """Move a broken database aside (kept for upload) so a fresh one can start; returns where to."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 0
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        logger.error("outbox database %s is corrupt (%s): quarantined as %s", self.path, reason, target)
        self._raise_alert({"alert": "store.quarantined", "file": target.name, "reason": reason[:200]})
        return target

    def _salvage(self, moved: Path) -> None:
        """Tell the hub what the quarantined file held (exact where readable, else an unknown range)."""
        found, queued = recovery.salvage(moved, self.epoch)
        self._announce += found
        self.alerts[-1]["queued"] = queued  # None: unknown
        logger.error("quarantined outbox held %s undelivered records", "an unknown number of" if queued is None
                     else queued)

    def _raise_alert(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)
        self._unwritten.append(alert)

    def _prepare(self, conn: sqlite3.Connection, fresh: bool, salvaged: bool = False) -> None:
        """Settings, migrations and the plan of this run; writes nothing a full disk could refuse.
        salvaged: the old database was quarantined, and what it held is announced from the file itself."""
        if fresh:  # lets a full disk get back the pages deliveries free (before WAL mode and any table)
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # A WAL kept small (checkpoint every 1 MiB) always fits in the reserve when the disk fills up.
        conn.execute("PRAGMA wal_autocheckpoint=256")
        conn.execute(f"PRAGMA journal_size_limit={1 << 20}")
        self._sync_mode = "FULL"
        if self.policy.hard_cap_bytes:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={max(16, self.policy.hard_cap_bytes // page)}")
        migrate(conn)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        db_next = None if fresh or "next_seq" not in meta else int(meta["next_seq"])
        guard = GuardState(self.guard.state.ceiling) if salvaged else self.guard.state
        self._start = plan_start(db_next, guard, self.guard.boot_id, int(self.clock() * 1_000_000))
        self.epoch = self._start.next_seq
        self.boot = int(meta.get("boot") or 0) + 1
        self.ready = False
        self._announce = [self._start.announce] if self._start.announce else []
        if self._start.rewound:
            logger.warning("outbox seq %s is more than a block behind the guard (a restored copy, or a power cut "
                           "lost a whole run): new epoch %d", "(none)" if db_next is None else db_next, self.epoch)
            self._raise_alert({"alert": "store.seq_rewind", "db_next": db_next, "epoch": self.epoch})
        elif self._start.announce and self._start.announce[2] == "power_loss":
            logger.warning("outbox was not closed cleanly before the last OS boot: records after seq %d may have "
                           "been lost with the disk's write cache; announced to the hub", db_next)
        self._bytes = sum(
            conn.execute(f"SELECT COALESCE(SUM(length(body)),0) + {ROW_OVERHEAD}*COUNT(*) FROM {t}")  # nosec B608
            .fetchone()[0]
            for t in TABLES
        )

    def _begin_run(self) -> bool:
        """Move the guard above the new run, then commit its start; False (and `full`) if the disk refuses."""
        if self.ready:
            return True
        conn, s = self._w, self._start
        self.guard.run_start = s.next_seq
        try:
            self.guard.write(s.next_seq + BLOCK)  # durable before any number is handed out
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?), ('epoch', ?), ('boot', ?)",
                         (s.next_seq, s.next_seq, self.boot))
            conn.executemany("INSERT OR IGNORE INTO skipped VALUES (?,?,?)", self._announce)
            conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not isinstance(err, OSError) and not _is_full(err):
                raise
            self._enter_full(f"cannot start numbering records: {err}")
            return False
        self.ready = True
        return True

    def _accepting(self) -> bool:
        """Whether records can be numbered now. While full, a way out is looked for at most once a second:
        pages freed by deliveries go back to the disk, and once the reserve fits again the run starts."""
        if self.ready and not self.full:
            return True
        if time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + 1.0
        if self.full:
            space.give_back(self._w)
            if not self._disk_reserve.make():
                return False
        if not self._begin_run():
            return False
        self._set_full(False)
        return True

    def _set_full(self, full: bool, why: str = "") -> None:
        if full and not self.full:
            logger.error("OUTBOX FULL (%s): transactions are refused, measurements and states dropped, until "
                         "space frees up; delivered records are still deleted", why)
            self._raise_alert({"alert": "store.disk_full", "since": self.clock(), "reason": why[:200]})
        elif not full and self.full:
            logger.warning("outbox has space again: accepting records")
        self.full = full

    def _enter_full(self, why: str) -> None:
        """The file system refused a write: give up the reserve so checkpoints and deletions still fit."""
        self._set_full(True, why)
        self._retry_at = time.monotonic() + 1.0
        self._disk_reserve.release("the disk is full")
        space.give_back(self._w)

    def _reopen_after_corruption(self, err: sqlite3.Error) -> None:
        for conn in (self._w, self._r):
            try:
                conn.close()
            except sqlite3.Error:
                pass
        moved = self._quarantine(str(err))
        self._w = self._connect()
        self._prepare(self._w, fresh=True, salvaged=True)
        self._salvage(moved)
        self._r = self._connect(readonly=True)
        self._retry_at = 0.0
        self._accepting()

    # ---------------------------------------------------------------- producer API

    def submit(self, rec: Record) -> Future[PutResult]:
        """Queue a record; the Future resolves once it is durable (or dropped, for measurements)."""
        if self._closed:
            raise OutboxClosed("outbox is closed")
        if not rec.kind or len(rec.kind) > MAX_KIND:
            raise ValueError(f"record kind must be 1..{MAX_KIND} characters, got {rec.kind!r}")
        if rec.cls is DataClass.STATE and not rec.key:
            raise ValueError(f"state record {rec.kind!r} needs a coalescing key")
        fut: Future[PutResult] = Future()
        self._q.put(_Put(rec, fut))
        return fut

    def put(
        self,
        cls: DataClass | str,
        kind: str,
        body: Any,
        *,
        key: str | None = None,
        ts: float | None = None,
        timeout: float | None = 30.0,
    ) -> PutResult:
        """Store one record and return once it is durable. Raises OutboxFull for an unstorable
        transaction; a measurement that cannot be kept comes back with `dropped` set."""
        return self.submit(self.make_record(cls, kind, body, key=key, ts=ts)).result(timeout)

    def put_many(self, records: list[Record], timeout: float | None = 60.0) -> list[PutResult]:
        """Store many records in one commit (bulk producers, backfills)."""
        if self._closed:
            raise OutboxClosed("outbox is closed")
        for rec in records:
            if rec.cls is DataClass.STATE and not rec.key:
                raise ValueError(f"state record {rec.kind!r} needs a coalescing key")
        fut: Future[list[PutResult]] = Future()
        self._q.put(_PutMany(list(records), fut))
        return fut.result(timeout)

    def make_record(
        self, cls: DataClass | str, kind: str, body: Any, *, key: str | None = None, ts: float | None = None,
        origin: tuple[str, str, int] | None = None,
    ) -> Record:
        """Validate and encode a record (ValueError on bad input; nothing is queued)."""
        cls = DataClass(cls)
        if isinstance(body, str):
            json.loads(body)  # must already be JSON text
            text = body
        else:
            try:
                text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise ValueError(f"record body of {kind!r} is not JSON-encodable: {err}") from err
        return Record(cls, kind, text, self.clock() if ts is None else float(ts), key, origin)

    # ---------------------------------------------------------------- uplink API

    def fetch(self, cls: DataClass, after: int, before: int | None = None, limit: int = 5000,
              max_bytes: int = 1 << 20) -> Block:
        """Oldest undelivered rows of one class with after < seq < before, as columns."""
        sql = f"SELECT seq, ts, kind, body FROM {TABLE[cls]} WHERE seq > ?"  # nosec B608
        args: list[Any] = [after]
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._r.execute(sql, args).fetchall()
        if not rows:
            return Block([], [], [], [])
        seq, ts, kind, body = (list(c) for c in zip(*rows, strict=True))
        if sum(map(len, body)) + 24 * len(body) > max_bytes:
            size, n = 0, 0
            for n, b in enumerate(body):  # noqa: B007 - n is used after the loop
                size += len(b) + 24
                if size > max_bytes:
                    break
            n = max(n, 1)
            seq, ts, kind, body = seq[:n], ts[:n], kind[:n], body[:n]
        return Block(seq, ts, kind, body)

    def pending_skips(self, limit: int = 256, exclude: Iterable[int] = ()) -> list[tuple[int, int, int, str]]:
        """(id, first, last, reason) of seq ranges not delivered on purpose, to announce to the hub.

        The id is the range's first seq (never reused). `exclude`: ids already travelling in a batch, so
        the ones after them are not starved behind a full window.
        """
        skip = json.dumps(sorted({int(i) for i in exclude}))
        with self._lock:
            return self._r.execute(
                "SELECT first, first, last, reason FROM skipped WHERE first NOT IN (SELECT value FROM json_each(?))"
                " ORDER BY first LIMIT ?", (skip, limit)).fetchall()

    def ack(self, cls: DataClass, ranges: Iterable[Iterable[int]], skip_ids: Iterable[int] = ()) -> Future[int]:
        """Delete rows the hub confirmed as committed; the Future gives the number deleted."""
        clean = [[int(a), int(b)] for a, b in ranges]
        fut: Future[int] = Future()
        if self._closed:
            fut.set_exception(OutboxClosed("outbox is closed"))
            return fut
        self._q.put(_Ack(DataClass(cls), clean, [int(i) for i in skip_ids], fut))
        return fut

    def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
        """Run fn(conn) on the writer thread inside a transaction."""
        fut: Future[Any] = Future()
        self._q.put(_Call(fn, fut))
        return fut

    def next_seq(self) -> int:
        """The seq the next record will get (this run's start while no run could begin)."""
        if not self.ready:
            return self.epoch
        with self._lock:
            return int(self._r.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])

    def rebase(self, hub_top: int) -> Future[int | None]:
        """The hub refused this run: it already holds `hub_top` >= our start (guard and database were both
        rolled back). Renumber the run's queued records above it; the Future gives the new epoch (None
        when nothing had to move). Alert `store.seq_rewind`; the numbers skipped are announced."""
        return self.call(lambda conn: self._rebase(conn, int(hub_top)))

    def renumber(self, cls: DataClass, ranges: Iterable[Iterable[int]]) -> Future[int]:
        """Give new seqs to queued rows the hub holds other records under; the Future gives the count."""
        clean = [[int(a), int(b)] for a, b in ranges]
        return self.call(lambda conn: self._renumber(conn, DataClass(cls), clean))

    # ---------------------------------------------------------------- maintenance and stats

    def set_runtime(self, values: dict[str, Any]) -> None:
        """Record agent state (broker connection, totals) for `edge-agent status`."""
        now = self.clock()
        rows = [(k, json.dumps(v), now) for k, v in values.items()]
        self.call(lambda c: c.executemany("INSERT OR REPLACE INTO runtime VALUES (?,?,?)", rows))

    def expire(self) -> Future[Any]:
        """Drop records past their class TTL (counted)."""
        return self.call(self._expire)

    def _expire(self, conn: sqlite3.Connection) -> int:
        total = 0
        for cls, ttl in self.policy.ttl_s.items():
            if ttl is None or cls is DataClass.TRANSACTION:
                continue
            rows = conn.execute(f"DELETE FROM {TABLE[cls]} WHERE ts < ? RETURNING seq, length(body)",  # nosec B608
                                (self.clock() - ttl,)).fetchall()
            total += self._account_drop(conn, cls, rows, "ttl")
        return total

    def _account_drop(self, conn: sqlite3.Connection, cls: DataClass, rows: list[Any], reason: str) -> int:
        if not rows:
            return 0
        self._bytes -= sum(r[1] + ROW_OVERHEAD for r in rows)
        conn.executemany("INSERT INTO skipped VALUES (?,?,?) ON CONFLICT(first) DO UPDATE SET"
                         " last=max(last, excluded.last)",
                         [(a, b, reason) for a, b in to_ranges([r[0] for r in rows])])
        self._count(conn, f"dropped.{cls.value}.{reason}", len(rows))
        # A newer state replacing an older one is the design, not a loss: debug, not a warning.
        (logger.debug if reason == "coalesced" else logger.warning)("dropped %d %s records (%s)", len(rows),
                                                                    cls.value, reason)
        return len(rows)

    def _count(self, conn: sqlite3.Connection, name: str, n: int) -> None:
        conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+?",
                     (name, n, n))

    def _enforce_budget(self, conn: sqlite3.Connection) -> None:
        """Drop the oldest measurements, then the oldest states, while over the byte budget."""
        for cls in (DataClass.MEASUREMENT, DataClass.STATE):
            while self._bytes > self.policy.budget_bytes:
                excess = self._bytes - self.policy.budget_bytes
                if not self._drop_oldest(conn, cls, max(1, excess // 256 + 1), "budget"):
                    break

    def _drop_oldest(self, conn: sqlite3.Connection, cls: DataClass, n: int, reason: str) -> int:
        """Delete the n oldest rows of a class, counted and announced as skipped; returns how many."""
        rows = conn.execute(
            f"DELETE FROM {TABLE[cls]} WHERE seq IN (SELECT seq FROM {TABLE[cls]} ORDER BY seq LIMIT ?)"  # nosec B608
            " RETURNING seq, length(body)", (n,)).fetchall()
        return self._account_drop(conn, cls, rows, reason)

    def stats(self) -> dict[str, Any]:
        """Queue depth and oldest age per class, drop counters, bytes, quarantined files."""
        now = self.clock()
        out: dict[str, Any] = {"classes": {}, "bytes": self._bytes, "epoch": self.epoch, "boot": self.boot,
                               "full": self.full}
        with self._lock:
            for cls, table in TABLE.items():
                n, oldest = self._r.execute(f"SELECT COUNT(*), MIN(ts) FROM {table}").fetchone()  # nosec B608
                out["classes"][cls.value] = {"depth": n, "oldest_age_s": (now - oldest) if oldest else 0.0}
            out["counters"] = dict(self._r.execute("SELECT name, value FROM counters").fetchall())
        out["quarantined"] = quarantined_files(self.path)
        return out

    def depth(self) -> int:
        with self._lock:
            return sum(self._r.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLE.values())  # nosec B608

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued work, then close and mark the stop clean; later calls raise OutboxClosed."""
        if self._closed:
            return
        self._closed = True
        self._q.put(_STOP)
        self._thread.join(timeout)
        clean = None
        with self._lock:
            if self.ready and not self._thread.is_alive():
                clean = int(self._r.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
            self._r.close()
        self._w.close()
        if clean is not None:
            try:  # the next start then knows no number above `clean` was used: nothing to report as lost
                self.guard.write(self.guard.ceiling, clean=clean)
            except OSError as err:
                logger.warning("could not mark the outbox closed cleanly (%s): the next start reports an "
                               "unknown range to the hub", err)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        stop = False
        while not stop:
            ops = [self._q.get()]
            while len(ops) < self.policy.max_commit_records:
                try:
                    ops.append(self._q.get_nowait())
                except queue.Empty:
                    break
            if _STOP in ops:
                stop = True
                ops = [o for o in ops if o is not _STOP]
            if ops:
                self._apply(ops)
        # Anything queued after the stop marker is refused, not silently lost.
        while True:
            try:
                op = self._q.get_nowait()
            except queue.Empty:
                break
            if op is not _STOP and not op.fut.done():
                op.fut.set_exception(OutboxClosed("outbox closed before write"))

    def _apply(self, ops: list[Any]) -> None:
        if not self._accepting():
            ops = self._refuse_puts(ops)
            if not ops:
                return
        ops = self._with_alerts(ops)
        try:
            results = self._commit(ops)
        except sqlite3.Error as err:
            if _is_corrupt(err):
                self._reopen_after_corruption(err)
                self._apply_each(self._expand(ops))
                return
            if _is_full(err) and not self._disk_reserve.room():
                self._enter_full(str(err))
                self._apply_rest(self._refuse_puts(ops))
                return
            if _is_full(err):  # the size cap, not the disk
                self._apply_when_full(self._expand(ops))
                return
            logger.exception("outbox commit failed")
            for op in ops:
                if not op.fut.done():
                    op.fut.set_exception(OutboxError(str(err)))
            return
        self._resolve(results)

    def _apply_rest(self, ops: list[Any]) -> None:
        """The disk is full: acks and calls one by one, acks in small pieces, so each fits in the room the
        reserve left (one ack of a full batch can need more WAL than that)."""
        for op in ops:
            try:
                if isinstance(op, _Ack):
                    pieces = [_Ack(op.cls, [p], [], Future()) for p in _pieces(op.ranges, 500)]
                    pieces.append(_Ack(op.cls, [], op.skip_ids, Future()))
                    op.fut.set_result(sum(n for piece in pieces for _, n in self._commit([piece])))
                else:
                    self._resolve(self._commit([op]))
            except sqlite3.Error as err:
                if not op.fut.done():
                    op.fut.set_exception(OutboxFull(f"outbox full: {err}"))

    def _alert_written(self, alert: dict[str, Any]) -> Callable[[Future[PutResult]], None]:
        def done(fut: Future[PutResult]) -> None:
            if fut.exception() is not None:
                self._unwritten.append(alert)  # refused (full): the next commit tries again
        return done

    def _refuse_puts(self, ops: list[Any]) -> list[Any]:
        """No run could start (full disk): refuse transactions, drop the rest; return the other ops."""
        rest = []
        for op in self._expand(ops):
            if not isinstance(op, _Put):
                rest.append(op)
            elif op.rec.cls is DataClass.TRANSACTION:
                op.fut.set_exception(OutboxFull("outbox full: no space to start numbering records"))
            else:
                op.fut.set_result(PutResult(None, "disk_full"))
        return rest

    def _with_alerts(self, ops: list[Any]) -> list[Any]:
        """Put the store's unwritten alerts in front of this commit; one that fails waits for the next."""
        if not self._unwritten or not self.ready:
            return ops
        alerts, self._unwritten = self._unwritten, []
        extra = []
        for alert in alerts:
            fut: Future[PutResult] = Future()
            fut.add_done_callback(self._alert_written(alert))
            extra.append(_Put(Record(DataClass.TRANSACTION, "agent.alert", json.dumps(alert), self.clock()), fut))
        return extra + ops

    def _resolve(self, results: list[tuple[Any, Any]]) -> None:
        for op, res in results:
            if not op.fut.done():
                op.fut.set_result(res)
        if any(isinstance(op, (_Put, _PutMany)) for op, _ in results):
            self.committed.set()

    def _expand(self, ops: list[Any]) -> list[Any]:
        """Split bulk puts into single puts whose results are gathered into the bulk Future."""
        out: list[Any] = []
        for op in ops:
            if not isinstance(op, _PutMany):
                out.append(op)
                continue
            subs = [_Put(r, Future()) for r in op.recs]
            if not subs:
                op.fut.set_result([])
            remaining = [len(subs)]

            def done(_: Future[PutResult], subs: list[_Put] = subs, gather: Future[Any] = op.fut,
                     remaining: list[int] = remaining) -> None:
                remaining[0] -= 1  # all futures resolve on the writer thread: no lock needed
                if remaining[0] or gather.done():
                    return
                err = next((s.fut.exception() for s in subs if s.fut.exception()), None)
                if err is not None:
                    gather.set_exception(err)
                else:
                    gather.set_result([s.fut.result() for s in subs])

            for sub in subs:
                sub.fut.add_done_callback(done)
            out += subs
        return out

    def _apply_each(self, ops: list[Any]) -> None:
        for op in ops:
            try:
                self._apply([op])
            except Exception as err:  # the writer must survive anything one op does
                if not op.fut.done():
                    op.fut.set_exception(err)

    def _apply_when_full(self, ops: list[Any]) -> None:
        """Disk or cap full: refuse measurements, free space, keep transactions if at all possible."""
        conn = self._w
        keep = []
        dropped: dict[DataClass, int] = {}
        for op in ops:
            if isinstance(op, _Put) and op.rec.cls is not DataClass.TRANSACTION:
                dropped[op.rec.cls] = dropped.get(op.rec.cls, 0) + 1
                op.fut.set_result(PutResult(None, "disk_full"))
            else:
                keep.append(op)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("BEGIN IMMEDIATE")
            for cls, n in dropped.items():
                self._count(conn, f"dropped.{cls.value}.disk_full", n)
            self._drop_oldest(conn, DataClass.MEASUREMENT, 2000, "disk_full")
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            logger.error("outbox full and nothing could be freed: %s", err)
        if dropped:
            logger.warning("disk full: refused %s", {c.value: n for c, n in dropped.items()})
        try:
            results = self._commit(keep)
        except sqlite3.Error as err:
            refused = sum(isinstance(op, _Put) for op in keep)
            if refused:
                logger.error("outbox full: %d transaction records refused (%s)", refused, err)
            for op in keep:
                if not op.fut.done():
                    op.fut.set_exception(OutboxFull(f"outbox full: {err}"))
            return
        self._resolve(results)

    def _commit(self, ops: list[Any]) -> list[tuple[Any, Any]]:
        """One transaction for everything queued: inserts, ack deletions, calls, budget enforcement."""
        conn = self._w
        puts = [o for o in ops if isinstance(o, (_Put, _PutMany))]
        acks = [o for o in ops if isinstance(o, _Ack)]
        calls = [o for o in ops if isinstance(o, _Call)]
        mode = "FULL" if any(r.cls is DataClass.TRANSACTION for p in puts
                             for r in (p.recs if isinstance(p, _PutMany) else (p.rec,))) else "NORMAL"
        if mode != self._sync_mode:
            conn.execute(f"PRAGMA synchronous={mode}")
            self._sync_mode = mode
        results: list[tuple[Any, Any]] = []
        start_bytes, start_epoch = self._bytes, self.epoch
        conn.execute("BEGIN IMMEDIATE")
        try:
            if puts:
                results += self._insert(conn, puts)
            for ack in acks:
                results.append((ack, self._delete(conn, ack)))
            for call in calls:
                results.append((call, call.fn(conn)))
            if self._bytes > self.policy.budget_bytes:
                self._enforce_budget(conn)
            conn.execute("COMMIT")
            self.commits += 1
        except BaseException:
            self._bytes, self.epoch = start_bytes, start_epoch
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _insert(self, conn: sqlite3.Connection, puts: list[Any]) -> list[tuple[Any, Any]]:
        seq = int(conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
        rows: dict[DataClass, list[tuple[Any, ...]]] = {c: [] for c in DataClass}
        results: list[tuple[Any, Any]] = []
        coalesced: list[Any] = []
        for p in puts:
            got = []
            for r in p.recs if isinstance(p, _PutMany) else (p.rec,):
                if r.origin is not None and not self._new_origin(conn, r.origin):
                    got.append(PutResult(None, "duplicate"))
                    self._count(conn, "relayed.duplicate", 1)  # re-sent by a device: shown by `status`
                    continue
                if r.cls is DataClass.STATE:
                    coalesced += conn.execute(
                        "DELETE FROM ob_state WHERE key=? RETURNING seq, length(body)", (r.key,)).fetchall()
                    # executemany would miss a second update of the same key within this group
                    conn.execute("INSERT INTO ob_state VALUES (?,?,?,?,?)", (seq, r.ts, r.kind, r.body, r.key))
                else:
                    rows[r.cls].append((seq, r.ts, r.kind, r.body))
                self._bytes += len(r.body) + ROW_OVERHEAD
                got.append(PutResult(seq))
                seq += 1
            results.append((p, got if isinstance(p, _PutMany) else got[0]))
        for cls in (DataClass.TRANSACTION, DataClass.MEASUREMENT):
            if rows[cls]:
                conn.executemany(f"INSERT INTO {TABLE[cls]} VALUES (?,?,?,?)", rows[cls])  # nosec B608
        if coalesced:
            self._account_drop(conn, DataClass.STATE, coalesced, "coalesced")
        conn.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seq,))
        self._reserve(seq)  # before COMMIT: the guard always covers committed numbers
        return results

    def _reserve(self, next_seq: int) -> None:
        try:
            self.guard.reserve(next_seq)
        except OSError as err:  # the same outcome as SQLite's own "full": this commit is refused
            raise sqlite3.OperationalError(f"database or disk is full (seq guard: {err})") from err

    @staticmethod
    def _next(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])

    def _rebase(self, conn: sqlite3.Connection, hub_top: int) -> int | None:
        if not self.ready or hub_top < self.epoch:
            return None  # stale: this run already starts above what the hub holds
        nxt = self._next(conn)
        start = max(hub_top + 1 + BLOCK, nxt)  # a block of headroom: the hub may not have all that was used
        delta = start - self.epoch
        self.guard.run_start = start
        self._reserve(nxt + delta)
        moved = recovery.shift_run(conn, self.epoch, delta)
        conn.execute("INSERT OR REPLACE INTO skipped VALUES (?,?,?)", (self.epoch, start - 1, "seq_rewind"))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?), ('epoch', ?)", (nxt + delta, start))
        logger.error("the hub already holds seq %d, above this run's start %d (guard and database rolled back): "
                     "%d queued records renumbered from %d", hub_top, self.epoch, moved, start)
        self._raise_alert({"alert": "store.seq_rewind", "hub_top": hub_top, "epoch": start, "renumbered": moved})
        self.epoch = start
        return start

    def _renumber(self, conn: sqlite3.Connection, cls: DataClass, ranges: list[list[int]]) -> int:
        moved, nxt = recovery.renumber(conn, cls, ranges, self._next(conn))
        if moved:
            self._reserve(nxt)
            conn.execute("UPDATE meta SET value=? WHERE key='next_seq'", (nxt,))
            self._count(conn, "renumbered.conflict", moved)
            logger.error("the hub holds other %s records under %d of our seqs: renumbered them", cls.value, moved)
        return moved

    @staticmethod
    def _new_origin(conn: sqlite3.Connection, origin: tuple[str, str, int]) -> bool:
        """True (and the watermark moved) for a record not stored before; inside the insert's transaction."""
        source, epoch, n = origin
        row = conn.execute("SELECT epoch, last FROM origins WHERE source=?", (source,)).fetchone()
        if row is not None and row[0] == epoch and n <= row[1]:
            return False
        conn.execute("INSERT OR REPLACE INTO origins VALUES (?,?,?)", (source, epoch, n))
        return True

    def origin_last(self, source: str) -> tuple[str, int] | None:
        """(epoch, highest number) stored for a source, for its acknowledgements."""
        with self._lock:
            row = self._r.execute("SELECT epoch, last FROM origins WHERE source=?", (source,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def _delete(self, conn: sqlite3.Connection, ack: _Ack) -> int:
        table = TABLE[ack.cls]
        n = 0
        for a, b in ack.ranges:
            # Aggregate in SQLite, then delete: no Python object per deleted row.
            count, size = conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM {table} WHERE seq BETWEEN ? AND ?",  # nosec B608
                (a, b)).fetchone()
            if count:
                conn.execute(f"DELETE FROM {table} WHERE seq BETWEEN ? AND ?", (a, b))  # nosec B608
                self._bytes -= size + ROW_OVERHEAD * count
                n += count
        if ack.skip_ids:
            conn.executemany("DELETE FROM skipped WHERE first=?", [(i,) for i in ack.skip_ids])
        if n:
            self._count(conn, f"acked.{ack.cls.value}", n)
        return n

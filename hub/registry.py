"""The hub's device registry and claim tokens, in the hub database (SQLite or PostgreSQL).

What is guaranteed:
- A claim token is stored only as its SHA-256, is redeemed at most once and not after it expires. The
  redemption (check, sign, mark used, register the device) is one transaction: a failed signing leaves
  the token unused; two services redeeming the same token at once give one certificate.
- Asking again with the key the token was redeemed with returns the same certificate (a device that lost
  the answer); any other key is refused as `used`.
- `admit(device, site)` is the ingest's gate: True only for a registered, active device at its own site.
  Refusals are counted per device (kept in memory, written at most every `flush_s`).

Tables have their own named migrations (`registry_migrations`), apart from the ingest's tables.
Raises ClaimRefused (provisioning) for a token that is unknown, used or expired; driver errors pass through.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from provisioning import ClaimRefused

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("0001_registry", [
        "CREATE TABLE reg_devices (device_id TEXT PRIMARY KEY, site TEXT NOT NULL, role TEXT,"
        " status TEXT NOT NULL, cert_serial TEXT, cert_fingerprint TEXT, not_after DOUBLE PRECISION,"
        " via TEXT NOT NULL, registered DOUBLE PRECISION NOT NULL, meta TEXT)",
        "CREATE TABLE reg_claims (token_hash TEXT PRIMARY KEY, device_id TEXT NOT NULL, site TEXT NOT NULL,"
        " role TEXT, created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL,"
        " used DOUBLE PRECISION, key_id TEXT, cert TEXT)",
        "CREATE TABLE reg_refusals (device_id TEXT PRIMARY KEY, site TEXT, count BIGINT NOT NULL,"
        " first DOUBLE PRECISION NOT NULL, last DOUBLE PRECISION NOT NULL, reason TEXT)",
        "CREATE TABLE reg_selftests (device_id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, ok INTEGER NOT NULL,"
        " report TEXT NOT NULL, PRIMARY KEY (device_id, ts))",
    ]),
]
TOKEN_BYTES = 24


@dataclass(frozen=True)
class Claim:
    device: str
    site: str
    role: str | None
    expires: float


@dataclass(frozen=True)
class Signed:
    """What the signer returns for a claim: the chain the device presents, and the facts to register."""

    cert_pem: str
    serial: str
    fingerprint: str
    not_after: float


@dataclass(frozen=True)
class Device:
    device: str
    site: str
    role: str | None
    status: str
    serial: str | None
    fingerprint: str | None
    not_after: float | None
    via: str
    registered: float
    meta: dict[str, Any]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Registry:
    """Devices, claims, refusals and self-test reports. One instance per thread or process."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time, flush_s: float = 5.0) -> None:
        self.clock, self.flush_s = clock, flush_s
        self.pg = url.startswith(("postgresql://", "postgres://"))
        if self.pg:
            import psycopg

            self.conn: Any = psycopg.connect(url, autocommit=True)
        else:
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, int, float, float, str]] = {}
        self._flushed = clock()
        self._migrate()

    # ------------------------------------------------------------------ plumbing

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(self._sql(sql), args)
        return list(cur.fetchall()) if cur.description else []

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            self.conn.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        self._q("CREATE TABLE IF NOT EXISTS registry_migrations (name TEXT PRIMARY KEY, applied DOUBLE PRECISION)")
        for name, statements in MIGRATIONS:
            with self._tx():
                if self.pg:
                    self._q("SELECT pg_advisory_xact_lock(77010)")  # services starting together
                if self._q("SELECT 1 FROM registry_migrations WHERE name=?", (name,)):
                    continue
                for sql in statements:
                    self._q(sql)
                self._q("INSERT INTO registry_migrations VALUES (?, ?)", (name, self.clock()))

    # ------------------------------------------------------------------ claims

    def create_claim(self, device: str, site: str, role: str | None = None, ttl_s: float = 86400) -> str:
        """A new one-time token for `device` at `site`; only its hash is kept, so show it now."""
        # A fixed prefix: a bare url-safe token starts with '-' one time in 64, and a technician's
        # `--claim -Kq…` is then read as an option (found by a test that failed 1 run in 5).
        token = "vc1_" + secrets.token_urlsafe(TOKEN_BYTES)
        now = self.clock()
        with self._tx():
            self._q("INSERT INTO reg_claims VALUES (?,?,?,?,?,?,NULL,NULL,NULL)",
                    (token_hash(token), device, site, role, now, now + ttl_s))
        return token

    def redeem(self, token: str, key_id: str, sign: Callable[[Claim], Signed], via: str = "claim",
               meta: dict[str, Any] | None = None, expect: str | None = None) -> tuple[Claim, str]:
        """Check the token, sign, mark it used and register the device, in one transaction. `expect`: the
        device id the technician's work order names; a token for another device is refused, not used up."""
        h = token_hash(token)
        with self._tx():
            rows = self._q("SELECT device_id, site, role, expires, used, key_id, cert FROM reg_claims"  # nosec B608
                           " WHERE token_hash=?" + (" FOR UPDATE" if self.pg else ""), (h,))
            if not rows:
                raise ClaimRefused("unknown", "no such claim token (check it was typed right, or ask for a new one)")
            device, site, role, expires, used, used_key, cert = rows[0]
            claim = Claim(device, site, role, expires)
            if used is not None:
                if used_key == key_id and cert:
                    return claim, str(cert)  # the same device asking again: same answer
                raise ClaimRefused("used", f"this token was already used on {_iso(used)}; ask for a new one")
            if self.clock() >= expires:
                raise ClaimRefused("expired", f"this token expired on {_iso(expires)}; ask for a new one")
            if expect and expect != device:
                raise ClaimRefused("wrong_device", f"the token is for device {device!r}, not {expect!r}: check "
                                   "the work order (the token is still valid for its device)")
            signed = sign(claim)
            self._q("UPDATE reg_claims SET used=?, key_id=?, cert=? WHERE token_hash=?",
                    (self.clock(), key_id, signed.cert_pem, h))
            self._register(claim.device, claim.site, claim.role, signed, via, meta or {})
        return claim, signed.cert_pem

    def claims(self) -> list[dict[str, Any]]:
        rows = self._q("SELECT device_id, site, role, created, expires, used FROM reg_claims ORDER BY created")
        return [{"device": d, "site": s, "role": r, "created": c, "expires": e, "used": u}
                for d, s, r, c, e, u in rows]

    # ------------------------------------------------------------------ devices

    def register(self, device: str, site: str, role: str | None, signed: Signed, via: str,
                 meta: dict[str, Any] | None = None) -> None:
        with self._tx():
            self._register(device, site, role, signed, via, meta or {})

    def _register(self, device: str, site: str, role: str | None, signed: Signed, via: str,
                  meta: dict[str, Any]) -> None:
        self._q("INSERT INTO reg_devices VALUES (?,?,?,'active',?,?,?,?,?,?) ON CONFLICT (device_id) DO UPDATE SET"
                " site=excluded.site, role=excluded.role, status='active', cert_serial=excluded.cert_serial,"
                " cert_fingerprint=excluded.cert_fingerprint, not_after=excluded.not_after, via=excluded.via,"
                " registered=excluded.registered, meta=excluded.meta",
                (device, site, role, signed.serial, signed.fingerprint, signed.not_after, via, self.clock(),
                 json.dumps(meta)))

    def retire(self, device: str) -> bool:
        with self._tx():
            found = bool(self._q("SELECT 1 FROM reg_devices WHERE device_id=?", (device,)))
            self._q("UPDATE reg_devices SET status='retired' WHERE device_id=?", (device,))
        return found

    def device(self, device: str) -> Device | None:
        rows = self._q("SELECT * FROM reg_devices WHERE device_id=?", (device,))
        return _device(rows[0]) if rows else None

    def devices(self) -> list[Device]:
        return [_device(r) for r in self._q("SELECT * FROM reg_devices ORDER BY device_id")]

    # ------------------------------------------------------------------ the ingest's gate

    def admit(self, device: str, site: str) -> bool:
        """True for a registered, active device at its registered site; otherwise count a refusal."""
        d = self.device(device)
        if d is not None and d.status == "active" and d.site == site:
            return True
        reason = "unknown" if d is None else "retired" if d.status != "active" else f"site is {d.site}"
        now = self.clock()
        with self._lock:
            _, n, first, _, _ = self._pending.get(device, (site, 0, now, now, reason))
            self._pending[device] = (site, n + 1, first, now, reason)
        if now - self._flushed >= self.flush_s:
            self.flush()
        return False

    def flush(self) -> None:
        """Write the refusals counted in memory."""
        with self._lock:
            pending, self._pending = self._pending, {}
        self._flushed = self.clock()
        if not pending:
            return
        with self._tx():
            for device, (site, n, first, last, reason) in pending.items():
                self._q("INSERT INTO reg_refusals VALUES (?,?,?,?,?,?) ON CONFLICT (device_id) DO UPDATE SET"
                        " count=reg_refusals.count+excluded.count, last=excluded.last, site=excluded.site,"
                        " reason=excluded.reason", (device, site, n, first, last, reason))

    def refusals(self) -> dict[str, dict[str, Any]]:
        self.flush()
        return {d: {"site": s, "count": n, "first": f, "last": la, "reason": r}
                for d, s, n, f, la, r in self._q("SELECT * FROM reg_refusals ORDER BY device_id")}

    # ------------------------------------------------------------------ self-tests

    def record_selftest(self, device: str, ok: bool, report: dict[str, Any]) -> None:
        with self._tx():
            self._q("INSERT INTO reg_selftests VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                    (device, self.clock(), int(ok), json.dumps(report)))

    def selftests(self, device: str) -> list[dict[str, Any]]:
        rows = self._q("SELECT ts, ok, report FROM reg_selftests WHERE device_id=? ORDER BY ts", (device,))
        return [{"ts": ts, "ok": bool(ok), "report": json.loads(r)} for ts, ok, r in rows]

    def close(self) -> None:
        self.flush()
        self.conn.close()


def _device(row: tuple[Any, ...]) -> Device:
    dev, site, role, status, serial, fp, not_after, via, registered, meta = row
    return Device(dev, site, role, status, serial, fp, not_after, via, registered, json.loads(meta or "{}"))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))

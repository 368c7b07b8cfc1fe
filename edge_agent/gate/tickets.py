"""Offline ticket validation: Ed25519-signed QR payloads, anti-passback, time slots, capacity.

QR text: `VT1.<payload>.<signature>`, both base64url without padding; the signature covers
`VT1.<payload>`; payload JSON {"t": ticket id, "v": venue, "d": "YYYY-MM-DD", "s": "HH:MM-HH:MM",
"p": party size, "x": expiry unix time}. The venue's public key lives in the device config.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "VT1."
MAX_QR = 1024


@dataclass(frozen=True)
class Ticket:
    id: str
    venue: str
    date: str
    slot: str
    party: int
    expires: float


@dataclass(frozen=True)
class Decision:
    ok: bool
    reason: str  # "ok" or why not
    ticket: str | None = None
    persons: int = 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(ticket: Ticket, key: Ed25519PrivateKey) -> str:
    """Issue side (reservation system, tests, simulators)."""
    doc = {"t": ticket.id, "v": ticket.venue, "d": ticket.date, "s": ticket.slot, "p": ticket.party,
           "x": ticket.expires}
    head = PREFIX + _b64(json.dumps(doc, separators=(",", ":")).encode())
    return head + "." + _b64(key.sign(head.encode()))


def parse(qr: str, key: Ed25519PublicKey) -> Ticket:
    """Verify and decode; ValueError('bad_format' | 'bad_signature')."""
    if not isinstance(qr, str) or len(qr) > MAX_QR or not qr.startswith(PREFIX) or qr.count(".") != 2:
        raise ValueError("bad_format")
    head, _, sig = qr.rpartition(".")
    try:
        signature = _unb64(sig)
        payload = _unb64(head[len(PREFIX):])
    except (ValueError, TypeError) as err:
        raise ValueError("bad_format") from err
    try:
        key.verify(signature, head.encode())
    except InvalidSignature as err:
        raise ValueError("bad_signature") from err
    try:
        doc = json.loads(payload)
        t = Ticket(str(doc["t"]), str(doc["v"]), str(doc["d"]), str(doc["s"]), int(doc["p"]), float(doc["x"]))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError("bad_format") from err
    if not 1 <= t.party <= 50 or not t.id:
        raise ValueError("bad_format")
    return t


def in_slot(slot: str, now: dt.datetime, grace_min: int) -> bool:
    try:
        a, b = slot.split("-")
        start = now.replace(hour=int(a[:2]), minute=int(a[3:5]), second=0, microsecond=0)
        end = now.replace(hour=int(b[:2]), minute=int(b[3:5]), second=0, microsecond=0)
    except (ValueError, IndexError):
        return False
    g = dt.timedelta(minutes=grace_min)
    return start - g <= now <= end + g


class UsedStore(Protocol):
    def used(self, ticket: str) -> bool: ...


class Capacity:
    """Occupancy from confirmed passes; refuses at the limit, raises alerts at thresholds."""

    def __init__(self, limit: int, thresholds: tuple[float, ...] = (0.8, 0.9, 1.0)) -> None:
        self.limit, self.thresholds = limit, sorted(thresholds)
        self.inside = 0
        self.level = 0.0  # highest threshold reached

    def allows(self, persons: int) -> bool:
        return self.inside + persons <= self.limit

    def passed(self, persons: int, direction: str) -> list[float]:
        """Apply a confirmed pass; returns thresholds newly crossed upward (alerts to raise)."""
        self.inside = max(0, self.inside + (persons if direction == "in" else -persons))
        ratio = self.inside / self.limit if self.limit else 1.0
        crossed = [t for t in self.thresholds if t > self.level and ratio >= t]
        # Hysteresis: a level is left only 5 points below it, so a count hovering there does not flap.
        held = [t for t in self.thresholds if ratio >= t or (t <= self.level and ratio >= t - 0.05)]
        self.level = max(held) if held else 0.0
        return crossed


class AllowStore(Protocol):
    def lookup(self, id_number: str) -> Any: ...  # an allowlist.Entry or None


class Room(Protocol):
    """The site's people let in but not yet through, against its capacity (gate/site.py's Site)."""

    def room_for(self, persons: int) -> bool: ...
    def holds(self, ticket: str) -> bool: ...
    def reserve(self, ticket: str, persons: int) -> None: ...
    def release(self, ticket: str) -> bool: ...


class Validator:
    """Offline rules for one site. Gates share it and its `lock`, which also guards the site's occupancy (the
    role ticks the site under it), so no two lanes let in the last free place."""

    def __init__(self, venue: str, key: Ed25519PublicKey, used: UsedStore, room: Room,
                 clock: Callable[[], dt.datetime], grace_min: int = 15, allow: AllowStore | None = None,
                 lock: threading.RLock | None = None) -> None:
        self.venue, self.key, self.used_store, self.room = venue, key, used, room
        self.clock, self.grace, self.allow = clock, grace_min, allow
        self.lock = lock or threading.RLock()

    def decide(self, qr: str) -> Decision:
        try:
            t = parse(qr, self.key)
        except ValueError as err:
            return Decision(False, str(err))
        return self.check(t)

    def decide_id(self, id_number: str) -> Decision:
        """A real-name ticket: the ID card read at the gate against the synced allow-list."""
        from edge_agent.core.idnumber import validate

        if validate(id_number) is not None:
            return Decision(False, "bad_id_number")
        entry = self.allow.lookup(id_number) if self.allow is not None else None
        if entry is None:
            return Decision(False, "no_reservation")
        return self.check(Ticket(entry.ticket, self.venue, entry.date, entry.slot, entry.party, float("inf")))

    def release(self, ticket: str) -> None:
        """An opened ticket nobody walked through (or the turnstile never opened): it may be used again."""
        with self.lock:
            self.room.release(ticket)

    def check(self, t: Ticket) -> Decision:
        with self.lock:
            return self._check(t)

    def _check(self, t: Ticket) -> Decision:
        now = self.clock()
        if t.venue != self.venue:
            return Decision(False, "wrong_venue", t.id)
        if now.timestamp() > t.expires:
            return Decision(False, "expired", t.id)
        if t.date != now.date().isoformat():
            return Decision(False, "wrong_date", t.id)
        if not in_slot(t.slot, now, self.grace):
            return Decision(False, "wrong_slot", t.id)
        if self.room.holds(t.id) or self.used_store.used(t.id):
            return Decision(False, "already_used", t.id)
        if not self.room.room_for(t.party):
            return Decision(False, "capacity", t.id)
        self.room.reserve(t.id, t.party)
        return Decision(True, "ok", t.id, t.party)

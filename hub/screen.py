"""Screening of one hub message (pure, no I/O): what arrives on a topic becomes a Batch, a DeviceState, or a
`Refused` with a short reason the hub counts per device.

What is guaranteed:
- `screen` raises only `Refused`; whatever else the decoders might raise on a hostile payload (an
  OverflowError, a RecursionError, a MemoryError on a huge list) is turned into `Refused("internal")`;
- the size is checked on the raw bytes before anything is decoded (`too_large`);
- a batch is accepted only on its own device's topic (`topic_mismatch`): the broker's ACL makes the topic the
  device's authenticated identity, so the envelope may not name another device, site or class;
- each record body is JSON text of at most `max_body` bytes holding no NUL character (`body_*`, `nul`); a
  kind holds no NUL (PostgreSQL text cannot store it) and every ts is finite;
- a state (birth / last will) names no other device than its topic's.

Reasons: too_large, envelope, topic_mismatch, body_not_json, body_too_large, nul, ts, state, internal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

from edge_agent.sync import envelope
from edge_agent.sync.topics import PREFIX, parse

MAX_MESSAGE = 4 * 1024 * 1024  # raw bytes on the wire; the generated broker config allows 2 MiB
MAX_BODY = 64 * 1024  # one record's JSON text
MAX_TS = 1e11  # unix seconds (year 5138): a sum of a batch's ts stays far from overflow


class Refused(Exception):
    """A message the hub refuses; `reason` is one of the short codes above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class DeviceState:
    site: str
    device: str
    online: bool
    boot: int | None
    epoch: int | None
    meta: dict[str, Any]


@dataclass(frozen=True)
class Limits:
    max_message: int = MAX_MESSAGE
    max_body: int = MAX_BODY


DEFAULT_LIMITS = Limits()
Screened = envelope.Batch | DeviceState


def where(topic: str, prefix: str = PREFIX) -> tuple[str, str, str, str] | None:
    """(site, device, kind, rest) of a device topic, or None for one the hub does not handle."""
    w = parse(topic, prefix)
    if w is None or w[2] not in ("up", "state"):
        return None
    return w


def screen(topic: str, payload: bytes, prefix: str = PREFIX, limits: Limits = DEFAULT_LIMITS) -> Screened | None:
    """The message decoded and checked, None for a topic the hub ignores (or an empty retained-clear)."""
    w = where(topic, prefix)
    if w is None:
        return None
    site, device, kind, rest = w
    if len(payload) > limits.max_message:
        raise Refused("too_large", f"{len(payload)} bytes > {limits.max_message}")
    try:
        if kind == "up":
            return _batch(site, device, rest, payload, limits)
        return decode_state(site, device, payload) if payload else None
    except Refused:
        raise
    except envelope.EnvelopeError as err:
        raise Refused("state" if kind == "state" else "envelope", str(err)[:200]) from err
    except Exception as err:  # noqa: BLE001 - a hostile payload must not reach the worker's loop
        raise Refused("internal", f"{type(err).__name__}: {err}"[:200]) from err


def _batch(site: str, device: str, cls: str, payload: bytes, limits: Limits) -> envelope.Batch:
    b = envelope.decode_batch(payload)
    if (b.site, b.device, b.cls.value) != (site, device, cls):
        raise Refused("topic_mismatch", f"envelope {b.site}/{b.device}/{b.cls.value} on {site}/{device}/{cls}")
    if b.ts and not (all(map(math.isfinite, b.ts)) and min(b.ts) >= -MAX_TS and max(b.ts) <= MAX_TS):
        raise Refused("ts", f"ts values must be finite seconds within ±{MAX_TS:.0e}")
    if any("\x00" in k for k in b.kind):
        raise Refused("nul", "a kind holds a NUL character")
    for body in b.body:
        check_body(body, limits.max_body)
    return b


def check_body(body: str, max_body: int) -> None:
    """Refused unless body is JSON text of at most max_body bytes (UTF-8) with no NUL anywhere in it."""
    if len(body) > max_body or len(body.encode()) > max_body:
        raise Refused("body_too_large", f"a record body of {len(body.encode())} bytes > {max_body}")
    if "\x00" in body:
        raise Refused("nul", "a record body holds a NUL character")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise Refused("body_not_json", f"a record body is not JSON: {err}"[:200]) from err
    if "\\u0000" in body and _has_nul(value):  # the escape only: rare, so walk the value only then
        raise Refused("nul", "a record body holds a NUL character (\\u0000)")


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return True
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return False


def decode_state(site: str, device: str, payload: bytes) -> DeviceState:
    """Birth / last-will message → DeviceState (EnvelopeError when malformed)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise envelope.EnvelopeError(f"state is not JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("state") not in ("online", "offline"):
        raise envelope.EnvelopeError("state must be an object with state online|offline")
    if doc.get("device", device) != device or doc.get("site", site) != site:
        raise envelope.EnvelopeError("state names another device or site than its topic")
    boot, epoch, meta = doc.get("boot"), doc.get("epoch"), doc.get("meta") or {}
    if boot is not None and type(boot) is not int or epoch is not None and type(epoch) is not int:
        raise envelope.EnvelopeError("boot and epoch must be integers")
    if any(x is not None and not 0 <= x < 2**63 for x in (boot, epoch)):
        raise envelope.EnvelopeError("boot and epoch must be 63-bit integers")
    if not isinstance(meta, dict):
        raise envelope.EnvelopeError("meta must be an object")
    if _has_nul(doc):
        raise envelope.EnvelopeError("a state holds a NUL character")
    info = {k: v for k, v in doc.items() if k in ("role", "agent")}
    return DeviceState(site, device, doc["state"] == "online", boot, epoch, {**meta, **info} if meta or info else {})

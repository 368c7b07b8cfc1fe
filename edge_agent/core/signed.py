"""Signed downlink commands: what the hub signs (Ed25519) and how a device checks it.

Wire form of a command on `{prefix}/{site}/{device}/cmd/{name}`:

    {"id": str, "args": {...}, "auth": {"site": str, "device": str, "iat": int, "exp": int, "ctr": int,
                                        "sig": base64(64 bytes)}}

The signature covers DOMAIN + the canonical JSON (sorted keys, no spaces, ASCII) of site, device, command
name, id, args, issued-at, expiry (Unix seconds) and the per-device counter. The name comes from the topic,
so a signed payload moved to another command's topic no longer verifies. `check` is pure: the caller
supplies the key, the clock and the last counter it accepted, and persists `ctr` before acting on it (a
retained or re-delivered command then carries a counter that is not above the last one and is refused).
An integer `args.version` (allow-lists) must not exceed the command's counter.

Nothing here raises for bad input: `check` returns a Refusal with the reason; `sign` raises ValueError
for arguments the hub itself got wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DOMAIN = b"smart-venue-edge/cmd/v1\n"
MAX_CTR = 2**53  # JSON-safe integers: a counter the hub never reaches (it counts milliseconds at most)
SKEW_S = 300  # an issued-at this far in the device's future is refused (its clock or the command is wrong)
MAX_WINDOW_S = 86400  # exp - iat: a command valid for longer is refused (a captured one must die soon)


@dataclass(frozen=True)
class Auth:
    site: str
    device: str
    iat: int
    exp: int
    ctr: int


@dataclass(frozen=True)
class Refusal:
    reason: str


def canonical(name: str, cmd_id: str, args: dict[str, Any], auth: Auth) -> bytes:
    """The exact bytes signed: the domain line, then sorted, compact, ASCII JSON."""
    doc = {"site": auth.site, "device": auth.device, "cmd": name, "id": cmd_id, "args": args,
           "iat": auth.iat, "exp": auth.exp, "ctr": auth.ctr}
    return DOMAIN + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                               allow_nan=False).encode()


def sign(key: Ed25519PrivateKey, name: str, cmd_id: str, args: dict[str, Any], auth: Auth) -> dict[str, Any]:
    """The whole payload document for `name`; ValueError for a counter or window out of range."""
    if not 0 < auth.ctr <= MAX_CTR or auth.exp <= auth.iat:
        raise ValueError("ctr must be in 1..2**53 and exp after iat")
    sig = key.sign(canonical(name, cmd_id, args, auth))
    return {"id": cmd_id, "args": args,
            "auth": {"site": auth.site, "device": auth.device, "iat": auth.iat, "exp": auth.exp, "ctr": auth.ctr,
                     "sig": base64.b64encode(sig).decode()}}


def _auth_of(doc: Any) -> Auth | Refusal:
    if not isinstance(doc, dict):
        return Refusal("unsigned: no auth object")
    fields = {k: doc.get(k) for k in ("site", "device", "iat", "exp", "ctr")}
    if not all(isinstance(fields[k], str) for k in ("site", "device")):
        return Refusal("auth.site and auth.device must be strings")
    if not all(type(fields[k]) is int for k in ("iat", "exp", "ctr")):
        return Refusal("auth.iat, auth.exp and auth.ctr must be integers")
    return Auth(**fields)  # type: ignore[arg-type]


def check(key: Ed25519PublicKey | None, site: str, device: str, name: str, doc: dict[str, Any], now: float,
          last_ctr: int) -> Auth | Refusal:
    """The command's Auth if it is signed by `key` for this device, in its window and newer than `last_ctr`."""
    if key is None:
        return Refusal("no hub command key provisioned: every command is refused")
    raw = doc.get("auth")
    if raw is None:
        return Refusal("unsigned command")
    auth = _auth_of(raw)
    if isinstance(auth, Refusal):
        return auth
    try:
        sig = base64.b64decode(str(raw.get("sig", "")), validate=True)
    except (binascii.Error, ValueError):
        return Refusal("signature is not base64")
    try:
        key.verify(sig, canonical(name, str(doc.get("id")), doc.get("args", {}), auth))
    except (InvalidSignature, ValueError, TypeError):
        return Refusal("bad signature (forged or tampered)")
    # Signed, so the fields below are the hub's own: check them against this device and its clock.
    if (auth.site, auth.device) != (site, device):
        return Refusal(f"signed for another device ({auth.site}/{auth.device})")
    if not 0 < auth.ctr <= MAX_CTR:
        return Refusal("counter out of range")
    if auth.exp - auth.iat > MAX_WINDOW_S:
        return Refusal(f"valid for more than {MAX_WINDOW_S} s")
    if now >= auth.exp:
        return Refusal(f"expired {now - auth.exp:.0f} s ago")
    if auth.iat > now + SKEW_S:
        return Refusal("issued in the future (clock skew beyond 300 s)")
    if auth.ctr <= last_ctr:
        return Refusal(f"replayed: counter {auth.ctr} is not above the last accepted {last_ctr}")
    version = doc.get("args", {}).get("version") if isinstance(doc.get("args"), dict) else None
    if isinstance(version, int) and version > auth.ctr:
        # Versions (allow-lists) are hub counters: none beyond the command's own, so no list can claim 2^63-1
        # and lock out the lists after it.
        return Refusal(f"args.version {version} is above the command counter {auth.ctr}")
    return auth


def counter_floor(now: float) -> int:
    """Where a device without a counter file starts (first boot, wiped or damaged state): the hub issues counters
    of at least its issue time in ms, so every command issued more than SKEW_S before `now` is refused as
    replayed; one captured in those last SKEW_S seconds could run once more, within its own window."""
    return max(0, int((now - SKEW_S) * 1000))


def load_public(text: str) -> Ed25519PublicKey:
    """A raw 32-byte Ed25519 public key in base64; ValueError otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("hub command key must be base64") from err
    if len(raw) != 32:
        raise ValueError("hub command key must be a raw 32-byte Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw)

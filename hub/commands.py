"""Signing downlink commands at the hub: Ed25519 over device, command, args, window and a per-device counter.

What is guaranteed: every payload `Signer` makes carries a counter above every counter it made before for
that device, durable before the payload is returned (SQLite, one transaction), so a device that stores its
last counter refuses any replay. Counters are max(last + 1, issue time in ms): a hub whose counter book was
lost still issues counters above the old ones, and no one can make the hub issue a counter near 2^53.
Allow-lists are hashed here with the site's key (`keyed_digest`), so ID numbers never reach the wire, and
their version is the counter of the command that carries the list's first part: a list can never claim a
version beyond what the hub has issued (the device refuses `version > ctr`), so 2^63-1 cannot happen.

Raised: ValueError for bad arguments (an unknown device name shape, a key file that is not a key);
sqlite3.Error from the counter book.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.core import signed
from edge_agent.core.idnumber import keyed_digest
from edge_agent.sync.topics import PREFIX

DEFAULT_TTL_S = 300
PART_ENTRIES = 400  # allow-list entries per command: well under the agent's 64 KiB command limit


def generate_key(path: Path) -> str:
    """A new command-signing key, written 0600 (PEM, PKCS#8); returns the public key for provisioning."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_b64(key)


def load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


class CounterBook:
    """The last counter issued per device (SQLite, WAL, synchronous=FULL)."""

    def __init__(self, path: Path | str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS cmd_counter (site TEXT, device TEXT, ctr INTEGER NOT NULL,"
                          " PRIMARY KEY (site, device))")

    def next(self, site: str, device: str, now: float) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute("SELECT ctr FROM cmd_counter WHERE site=? AND device=?",
                                    (site, device)).fetchone()
            ctr = max((row[0] if row else 0) + 1, int(now * 1000))
            self.conn.execute("INSERT OR REPLACE INTO cmd_counter VALUES (?,?,?)", (site, device, ctr))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return ctr

    def close(self) -> None:
        self.conn.close()


class Signer:
    def __init__(self, key: Ed25519PrivateKey, book: CounterBook, clock: Callable[[], float] = time.time,
                 prefix: str = PREFIX) -> None:
        self.key, self.book, self.clock, self.prefix = key, book, clock, prefix

    def topic(self, site: str, device: str, name: str) -> str:
        return f"{self.prefix}/{site}/{device}/cmd/{name}"

    def command(self, site: str, device: str, name: str, args: dict[str, Any] | None = None,
                ttl_s: int = DEFAULT_TTL_S, cmd_id: str | None = None,
                build: Callable[[int], dict[str, Any]] | None = None) -> tuple[str, bytes]:
        """(topic, payload) of one signed command; `build(ctr)` makes args that depend on the counter."""
        now = self.clock()
        ctr = self.book.next(site, device, now)
        body = build(ctr) if build is not None else dict(args or {})
        auth = signed.Auth(site, device, int(now), int(now) + ttl_s, ctr)
        doc = signed.sign(self.key, name, cmd_id or uuid.uuid4().hex[:16], body, auth)
        return self.topic(site, device, name), json.dumps(doc, separators=(",", ":")).encode()

    def allowlist(self, site: str, device: str, entries: Iterable[dict[str, Any]], site_key: bytes,
                  ttl_s: int = DEFAULT_TTL_S) -> list[tuple[str, bytes]]:
        """The list as signed `gate.allowlist` commands: hashed entries, in parts when large."""
        hashed = [hash_entry(site_key, e) for e in entries]
        chunks = [hashed[i:i + PART_ENTRIES] for i in range(0, len(hashed), PART_ENTRIES)] or [[]]
        version: list[int] = []

        def build(i: int, chunk: list[dict[str, Any]]) -> Callable[[int], dict[str, Any]]:
            def args(ctr: int) -> dict[str, Any]:
                if not version:  # the first part's counter names the whole list
                    version.append(ctr)
                body: dict[str, Any] = {"version": version[0], "entries": chunk}
                return body if len(chunks) == 1 else {**body, "part": i, "parts": len(chunks)}
            return args

        return [self.command(site, device, "gate.allowlist", ttl_s=ttl_s, build=build(i, c))
                for i, c in enumerate(chunks)]


def hash_entry(site_key: bytes, entry: dict[str, Any]) -> dict[str, Any]:
    """A plain allow-list entry (id, ticket, date, slot, party) → its wire form with `idh` instead of `id`."""
    out = {k: entry[k] for k in ("ticket", "date", "slot")}
    out["party"] = int(entry.get("party", 1))
    out["idh"] = keyed_digest(site_key, str(entry["id"])).hex()
    return out

"""The hub's command signer for tests: one key per test run, counters in memory (hub/commands.py)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.commands import CounterBook, Signer, public_b64

HUB_KEY = Ed25519PrivateKey.generate()
HUB_PUB = public_b64(HUB_KEY)
SIGNER = Signer(HUB_KEY, CounterBook(":memory:"))


def signed(site: str, device: str, name: str, args: dict[str, Any] | None = None, cmd_id: str | None = None,
           ttl_s: int = 300) -> bytes:
    """The payload of a command the hub signed for site/device (a fresh counter each call)."""
    return SIGNER.command(site, device, name, args or {}, ttl_s=ttl_s, cmd_id=cmd_id)[1]


def signed_doc(site: str, device: str, name: str, args: dict[str, Any] | None = None,
               cmd_id: str | None = None) -> dict[str, Any]:
    return dict(json.loads(signed(site, device, name, args, cmd_id)))

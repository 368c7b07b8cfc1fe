"""Tell the hub something as the device itself, over mutual TLS, and wait for its answer.

The device publishes `{"id", "cmd", "ok", "result"}` on its own `result` topic (the only place, besides
`up/` and `state`, the broker lets it write) and waits for the claim service's answer on its own
`cmd/provision`. Used to register a certificate issued offline and to report a self-test.
Raises StepFailed when the broker refuses, or no answer comes in time.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provisioning.broker import PREFIX


def call_hub(url: str, site: str, device: str, tls: tuple[Path, Path, Path], cmd: str, ok: bool,
             result: dict[str, Any], timeout_s: float = 20.0, prefix: str = PREFIX) -> dict[str, Any]:
    """Publish one report and return the hub's `args` (tls = (ca, cert, key))."""
    from provisioning.mqttcall import ask

    base = f"{prefix}/{site}/{device}"
    rid = uuid.uuid4().hex
    parts = urlsplit(url)
    answer = ask(parts.hostname or "localhost", parts.port or 8883, device, tls, f"{base}/cmd/provision",
                 f"{base}/result", json.dumps({"id": rid, "cmd": cmd, "ok": ok, "result": result}).encode(),
                 lambda payload: _args(payload, rid) is not None, timeout_s, cmd, {
                     "unreachable": "check the network; a certificate error means this device's certificate is "
                                    "not (or no longer) accepted: re-provision it",
                     "refused": "re-provision the device: its certificate is not accepted",
                     "no answer": "the broker accepted the device but the hub's claim service did not answer: ask "
                                  "the hub operator to check `venue-provision hub serve`; run this again later"})
    return _args(answer, rid) or {}


def _args(payload: bytes, rid: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("id") == rid and isinstance(doc.get("args"), dict):
        return dict(doc["args"])
    return None

"""Fleet provisioning by claim: the messages, and the device's side of the exchange.

The device connects to the claim broker over TLS (it checks the broker's certificate against the city CA
it was given, so the token never goes to an impostor), with a random client id, and publishes on
`provision/v1/<client id>/req`:
    {"v": 1, "token": "...", "csr": "-----BEGIN CERTIFICATE REQUEST-----...", "meta": {...}, "device": id|null}
("device": what the work order says; a token for another device is refused without being used up.)
The claim service answers on `provision/v1/<client id>/resp`:
    {"v": 1, "ok": true, "device", "site", "role", "cert": "<leaf + intermediates PEM>"}
    {"v": 1, "ok": false, "reason": "unknown|used|expired|wrong_device|bad_request|bad_csr|busy", "message": ".."}

Raises ClaimRefused (the service said no, or the answer is malformed) and StepFailed (no broker, no answer).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provisioning import ClaimRefused, StepFailed
from provisioning.broker import CLAIM_PREFIX

MAX_MESSAGE = 32 * 1024
META_KEYS = 16


@dataclass(frozen=True)
class ClaimRequest:
    token: str
    csr: str
    meta: dict[str, str]
    device: str | None = None


@dataclass(frozen=True)
class ClaimAnswer:
    device: str
    site: str
    role: str | None
    cert: str


def encode_request(req: ClaimRequest) -> bytes:
    return json.dumps({"v": 1, "token": req.token, "csr": req.csr, "meta": req.meta, "device": req.device}).encode()


def decode_request(payload: bytes) -> ClaimRequest:
    """ClaimRefused('bad_request') for anything that is not a well-formed request."""
    doc = _json(payload, "bad_request")
    token, csr, meta, device = doc.get("token"), doc.get("csr"), doc.get("meta", {}), doc.get("device")
    if not isinstance(token, str) or not 8 <= len(token) <= 128:
        raise ClaimRefused("bad_request", "token must be a string of 8..128 characters")
    if not isinstance(csr, str) or "BEGIN CERTIFICATE REQUEST" not in csr:
        raise ClaimRefused("bad_request", "csr must be a PEM certificate request")
    if not isinstance(meta, dict) or len(meta) > META_KEYS or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 256 for k, v in meta.items()):
        raise ClaimRefused("bad_request", f"meta must be at most {META_KEYS} short string pairs")
    if device is not None and (not isinstance(device, str) or len(device) > 64):
        raise ClaimRefused("bad_request", "device must be a device id")
    return ClaimRequest(token, csr, meta, device)


def encode_answer(answer: ClaimAnswer) -> bytes:
    return json.dumps({"v": 1, "ok": True, "device": answer.device, "site": answer.site, "role": answer.role,
                       "cert": answer.cert}).encode()


def encode_refusal(err: ClaimRefused) -> bytes:
    return json.dumps({"v": 1, "ok": False, "reason": err.reason, "message": str(err)}).encode()


def decode_answer(payload: bytes) -> ClaimAnswer:
    doc = _json(payload, "bad_answer")
    if doc.get("ok") is not True:
        raise ClaimRefused(str(doc.get("reason", "refused")), str(doc.get("message", "the claim was refused")))
    fields = [doc.get(k) for k in ("device", "site", "cert")]
    if not all(isinstance(f, str) and f for f in fields) or not isinstance(doc.get("role"), str | None):
        raise ClaimRefused("bad_answer", "the claim service's answer lacks device, site or cert")
    return ClaimAnswer(doc["device"], doc["site"], doc.get("role"), doc["cert"])


def _json(payload: bytes, reason: str) -> dict[str, Any]:
    if len(payload) > MAX_MESSAGE:
        raise ClaimRefused(reason, f"message of {len(payload)} bytes (max {MAX_MESSAGE})")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise ClaimRefused(reason, f"not JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ClaimRefused(reason, "not a version 1 object")
    return doc


def request_certificate(url: str, ca: Path, req: ClaimRequest, timeout_s: float = 30.0) -> ClaimAnswer:
    """Send the claim to the claim broker at `url` (mqtts://host:port) and wait for the answer."""
    from provisioning.mqttcall import ask

    parts = urlsplit(url)
    if parts.scheme != "mqtts" or not parts.hostname:
        raise StepFailed("claim", f"claim URL {url!r} is not mqtts://host:port",
                         "use the claim broker's address, e.g. mqtts://hub.example:8884")
    cid = f"claim-{secrets.token_hex(8)}"
    topic = f"{CLAIM_PREFIX}/{cid}"
    answer = ask(parts.hostname, parts.port or 8884, cid, (ca, None, None), f"{topic}/resp", f"{topic}/req",
                 encode_request(req), lambda payload: True, timeout_s, "claim", {
                     "unreachable": "check the network and the address; is the hub's claim broker running? "
                                    "A certificate error means the CA file is not the city CA.",
                     "refused": "check the claim broker's address and the city CA file",
                     "no answer": "the claim broker answered but the hub's claim service did not: ask the hub "
                                  "operator to check `venue-provision hub serve`"})
    return decode_answer(answer)

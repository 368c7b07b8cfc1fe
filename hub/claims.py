"""The hub's claim service: signs claimed CSRs, registers devices, records self-test reports.

Two MQTT sessions, both mutual TLS as `_provision` (provisioning/broker.py gives it exactly these rights):
- on the claim broker: `provision/v1/+/req` → validate, redeem the token (hub/registry.py), sign with the
  CA, answer on `provision/v1/<client id>/resp`;
- on the city broker: `venue/v1/+/+/result` with `cmd` `provision.register` (a device provisioned offline
  registers its certificate, which must chain to the city CA and name that device and site) or `selftest`
  (stored with the device); answered on the device's `cmd/provision`.

Every message is handled on one worker thread (the CA and the registry are not shared between threads);
at most MAX_PENDING wait, more are answered `busy`. No exception from one message stops the service:
refusals are answered and counted, anything else is logged and counted.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.registry import Claim, Registry, Signed
from provisioning import ClaimRefused, PkiError, pki
from provisioning.broker import CLAIM_PREFIX, PREFIX
from provisioning.ca import CertificateAuthority, verify_chain
from provisioning.claim import ClaimAnswer, decode_request, encode_answer, encode_refusal

logger = logging.getLogger(__name__)

MAX_PENDING = 100
CRL_EVERY_S = 3600.0  # keep the CRL's next_update far ahead: a stale CRL would lock every device out
MAX_RESULT = 64 * 1024
OURS = ("provision.register", "selftest")


@dataclass(frozen=True)
class Endpoint:
    """A broker and the `_provision` identity's files for it."""

    url: str
    ca: Path
    cert: Path
    key: Path


class ClaimService:
    def __init__(self, registry: Registry, ca: CertificateAuthority, claims: Endpoint | None,
                 city: Endpoint | None, days: int = 730, client_id: str = "claim-service") -> None:
        self.registry, self.ca, self.days = registry, ca, days
        self.root = ca.chain[-1]
        self.counts: Counter[str] = Counter()
        self._q: queue.Queue[tuple[mqtt.Client, str, bytes]] = queue.Queue(MAX_PENDING)
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._clients: list[tuple[mqtt.Client, Endpoint, str]] = []
        if claims:
            self._clients.append((self._client(f"{client_id}-claims", claims), claims, f"{CLAIM_PREFIX}/+/req"))
        if city:
            self._clients.append((self._client(f"{client_id}-city", city), city, f"{PREFIX}/+/+/result"))
        self._subscribed: set[int] = set()
        self._thread = threading.Thread(target=self._work, name="claim-service", daemon=True)

    def _client(self, cid: str, ep: Endpoint) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(ep.ca), certfile=str(ep.cert), keyfile=str(ep.key))
        c.on_connect = self._on_connect
        c.on_subscribe = lambda cl, u, mid, rcs, p: self._on_subscribed(cl)
        c.on_message = self._on_message
        return c

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            logger.error("broker refused the claim service: %s", rc)
            return
        topic = next(t for c, _, t in self._clients if c is client)
        client.subscribe(topic, qos=1)

    def _on_subscribed(self, client: mqtt.Client) -> None:
        self._subscribed.add(id(client))
        if len(self._subscribed) == len(self._clients):
            self.ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._q.put_nowait((client, msg.topic, bytes(msg.payload)))
        except queue.Full:
            self.counts["busy"] += 1
            if msg.topic.startswith(CLAIM_PREFIX + "/"):
                reply = msg.topic.rsplit("/", 1)[0] + "/resp"
                client.publish(reply, encode_refusal(ClaimRefused("busy", "try again in a minute")), qos=1)

    def start(self) -> None:
        self._thread.start()
        for c, ep, _ in self._clients:
            u = urlsplit(ep.url)
            c.reconnect_delay_set(1, 10)
            c.connect_async(u.hostname or "localhost", u.port or 8885, keepalive=30)
            c.loop_start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for c, _, _ in self._clients:
            c.disconnect()
            c.loop_stop()

    # ------------------------------------------------------------------ work

    def _work(self) -> None:
        crl_at = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - crl_at >= CRL_EVERY_S:
                crl_at = time.monotonic()
                self._guarded(self.ca.write_crl)
            try:
                client, topic, payload = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            reply = self._guarded(partial(self.handle, topic, payload))
            if reply is None and topic.startswith(CLAIM_PREFIX + "/") and topic.endswith("/req"):
                reply = (topic[:-len("req")] + "resp", encode_refusal(ClaimRefused(
                    "error", "the claim service failed on this request (the token is still unused): try again, "
                    "and tell the hub operator")))
            if reply is not None:
                client.publish(reply[0], reply[1], qos=1)

    def _guarded(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:  # one bad message never stops the service
            self.counts["error"] += 1
            logger.exception("claim service failed")
            return None

    def handle(self, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        """One message → the (topic, payload) to answer with, or None."""
        parts = topic.split("/")
        if topic.startswith(CLAIM_PREFIX + "/") and len(parts) == 4 and parts[3] == "req":
            return f"{CLAIM_PREFIX}/{parts[2]}/resp", self.claim(payload)
        if topic.startswith(PREFIX + "/") and len(parts) == 5 and parts[4] == "result":
            return self.result(parts[2], parts[3], payload)
        return None

    def claim(self, payload: bytes) -> bytes:
        try:
            req = decode_request(payload)
            try:
                csr = pki.load_csr(req.csr)
            except PkiError as err:
                raise ClaimRefused("bad_csr", str(err)) from err
            public = csr.public_key()

            def sign(claim: Claim) -> Signed:
                cert = self.ca.issue_device(public, claim.device, claim.site, days=self.days, replace=True)
                self.ca.write_crl()  # a replaced certificate is revoked
                return Signed(self.ca.chain_for(cert).decode(), format(cert.serial_number, "x"),
                              pki.fingerprint(cert), cert.not_valid_after_utc.timestamp())

            claim, cert = self.registry.redeem(req.token, pki.key_id(pki.check_public_key(public)), sign,
                                               meta=req.meta, expect=req.device)
        except ClaimRefused as err:
            self.counts[f"refused.{err.reason}"] += 1
            logger.warning("claim refused: %s", err)
            return encode_refusal(err)
        self.counts["claimed"] += 1
        logger.info("claimed: %s at %s", claim.device, claim.site)
        return encode_answer(ClaimAnswer(claim.device, claim.site, claim.role, cert))

    def result(self, site: str, device: str, payload: bytes) -> tuple[str, bytes] | None:
        if len(payload) > MAX_RESULT:
            self.counts["result.too_big"] += 1
            return None
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or doc.get("cmd") not in OURS:
            return None  # a command result meant for the hub, not for us
        body: dict[str, Any] = doc["result"] if isinstance(doc.get("result"), dict) else {}
        try:
            args = self._register(site, device, body) if doc["cmd"] == "provision.register" \
                else self._selftest(device, bool(doc.get("ok")), body)
        except ClaimRefused as err:
            self.counts[f"{doc['cmd']}.refused"] += 1
            args = {"ok": False, "reason": err.reason, "error": str(err)}
        answer = {"id": doc.get("id"), "args": {"what": doc["cmd"], **args}}
        return f"{PREFIX}/{site}/{device}/cmd/provision", json.dumps(answer).encode()

    def _register(self, site: str, device: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            chain = pki.load_certs(str(body.get("cert", "")))
            verify_chain(chain[0], chain[1:], self.root)
        except (PkiError, IndexError) as err:
            raise ClaimRefused("bad_cert", str(err)) from err
        leaf = chain[0]
        san = f"urn:venue:v1:device:{site}:{device}"
        uris = _uris(leaf)
        if pki.common_name(leaf.subject) != device or san not in uris:
            raise ClaimRefused("bad_cert", f"the certificate is not {device!r} at {site!r}")
        self.registry.register(device, site, body.get("role") if isinstance(body.get("role"), str) else None,
                               Signed(pki.cert_pem(leaf).decode(), format(leaf.serial_number, "x"),
                                      pki.fingerprint(leaf), leaf.not_valid_after_utc.timestamp()), "bundle")
        self.counts["registered"] += 1
        return {"ok": True, "registered": device}

    def _selftest(self, device: str, ok: bool, body: dict[str, Any]) -> dict[str, Any]:
        d = self.registry.device(device)
        if d is None or d.status != "active":
            raise ClaimRefused("unknown", f"{device} is not registered")
        self.registry.record_selftest(device, ok, body)
        self.counts["selftest"] += 1
        return {"ok": True, "stored": True}


def _uris(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in ext.value.get_values_for_type(x509.UniformResourceIdentifier)]

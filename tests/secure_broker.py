"""A real mosquitto running the configuration `venue-provision broker config` generates, and TLS clients."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from provisioning import pki
from provisioning.broker import BrokerPlan, write_broker, write_crl_bundle
from provisioning.ca import CertificateAuthority
from tests.helpers import free_port, wait_for


class SecureBroker:
    """The city broker and the claim broker (two mosquittos, four free ports) with the generated TLS + ACL
    config; the CRL reloaded on demand."""

    def __init__(self, workdir: Path, ca: CertificateAuthority, **plan: Any) -> None:
        self.ca, self.dir = ca, workdir / "broker"
        ports = {k: free_port() for k in ("device_port", "claim_port", "service_port", "claim_service_port")}
        self.plan = BrokerPlan(run_as=pwd.getpwuid(os.geteuid()).pw_name, **{**ports, **plan})
        self.files = write_broker(ca, self.dir, self.plan)
        self.log = open(workdir / "mosquitto-secure.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self.claims: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, which: str = "device") -> str:
        return f"mqtts://localhost:{getattr(self.plan, which + '_port')}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.files.conf)], stdout=self.log, stderr=self.log)
        ports = [self.plan.device_port, self.plan.service_port]
        if self.plan.claim_port is not None:
            self.claims = subprocess.Popen(["mosquitto", "-c", str(self.files.claims_conf)], stdout=self.log,
                                           stderr=self.log)
            ports += [self.plan.claim_port, self.plan.claim_service_port]
        wait_for(lambda: all(_listening(p) for p in ports), 10, "mosquitto to listen")

    def reload_crl(self) -> None:
        """Write the CA's CRL into the broker's crlfile and SIGHUP mosquitto (it re-reads it)."""
        write_crl_bundle(self.ca, self.plan.extra_crls, self.dir)
        assert self.proc is not None
        mark = self.log.tell()
        self.proc.send_signal(signal.SIGHUP)
        log = Path(self.log.name)
        wait_for(lambda: b"Reloading config" in log.read_bytes()[mark:], 10, "mosquitto to reload")

    def close(self) -> None:
        for p in (self.proc, self.claims):
            if p and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        self.log.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def identity(ca: CertificateAuthority, workdir: Path, name: str, site: str = "westlake") -> tuple[Path, Path]:
    """A key and certificate chain for a device (or `_service`) made here with the CA: (cert, key)."""
    key = pki.new_key()
    if name.startswith("_"):
        cert = ca.issue_service(key.public_key(), name, replace=True)
    else:
        cert = ca.issue_device(key.public_key(), name, site, replace=True)
    d = pki.private_dir(workdir / "ids")
    pki.write_secret(d / f"{name}.key", pki.key_pem(key))
    pki.write_file(d / f"{name}.pem", ca.chain_for(cert))
    return d / f"{name}.pem", d / f"{name}.key"


class TlsClient:
    """An MQTT v5 client over TLS that records messages, PUBACK reason codes and disconnects."""

    def __init__(self, broker: SecureBroker, port: int, ident: tuple[Path, Path] | None, client_id: str,
                 ca: Path | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.acks: dict[int, int] = {}
        self.disconnects = 0
        self.connack: Any = None
        self.failed: str | None = None
        self.event = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        c.tls_set(ca_certs=str(ca or broker.files.ca), certfile=str(ident[0]) if ident else None,
                  keyfile=str(ident[1]) if ident else None)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect
        self.c = c
        try:
            c.connect("localhost", port, keepalive=30)
        except OSError as err:  # the TLS handshake itself refused (no or a bad certificate)
            self.failed = f"{type(err).__name__}: {err}"
            return
        c.loop_start()
        wait_for(lambda: self.connack is not None or self.failed or self.disconnects, 10, "CONNACK or refusal")

    @property
    def connected(self) -> bool:
        return self.connack is not None and not self.connack.is_failure and not self.disconnects

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = rc

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
        self.event.set()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        self.acks[mid] = rc.value if rc is not None else 0

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnects += 1
        self.failed = self.failed or f"disconnected: {rc}"

    def subscribe(self, *topics: str) -> None:
        granted: list[Any] = []
        self.c.on_subscribe = lambda c, u, mid, rcs, p: granted.extend(rcs)
        self.c.subscribe([(t, 1) for t in topics])
        wait_for(lambda: len(granted) == len(topics), 10, "SUBACK")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish QoS 1 and return the PUBACK reason code (0 success, 135 not authorised)."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.acks, 10, f"PUBACK for {topic}")
        return self.acks[info.mid]

    def got(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()

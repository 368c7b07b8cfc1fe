"""The uplink over mutual TLS to a real mosquitto (certificates made here with `cryptography`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.app import Agent
from edge_agent.registry import AgentConfig
from edge_agent.sync.session import SessionState
from tests.helpers import wait_for

pytestmark = pytest.mark.broker


def _cert(subject: str, key: Any, issuer_key: Any, issuer: x509.Name | None, ca: bool,
          san_ip: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san_ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def write_pki(d: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("venue-test-ca", ca_key, ca_key, None, True, False)
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, ip in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"{who}", key, ca_key, ca.subject, False, ip)
        out[who] = d / f"{who}.pem"
        out[who + "_key"] = d / f"{who}.key"
        out[who].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[who + "_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return out


def test_mutual_tls_uplink(tmp_path: Path, make_broker: Any) -> None:
    pki = write_pki(tmp_path)
    broker = make_broker(f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
                         "require_certificate true\n")

    def cfg(**tls: Any) -> AgentConfig:
        return AgentConfig.model_validate({
            "device": {"id": "gate-01", "site": "westlake"}, "store": {"path": str(tmp_path / "o.db")},
            "mqtt": {"url": f"mqtts://127.0.0.1:{broker.port}", "tls": tls},
            "sync": {"backoff_min_s": 0.2, "backoff_max_s": 0.5}})

    good = Agent(cfg(ca=str(pki["ca"]), cert=str(pki["client"]), key=str(pki["client_key"])))
    good.start()
    try:
        wait_for(lambda: good.uplink and good.uplink.state is SessionState.ONLINE, 15, "TLS connection")
    finally:
        good.stop()
    no_client_cert = Agent(cfg(ca=str(pki["ca"])))
    log = broker.conf.with_suffix(".log")
    tries = log.read_text(errors="replace").count("New connection from")
    no_client_cert.start()
    try:
        # the broker saw it try three times (backoff between), and refused the handshake each time
        wait_for(lambda: log.read_text(errors="replace").count("New connection from") >= tries + 3, 15,
                 "three attempts at the broker")
        assert no_client_cert.uplink is not None and no_client_cert.uplink.stats.connects == 0
        assert no_client_cert.uplink.state is not SessionState.ONLINE
    finally:
        no_client_cert.stop()


def test_tls_cert_without_key_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="together"):
        AgentConfig.model_validate({"device": {"id": "g", "site": "s"}, "mqtt": {"tls": {"cert": "c.pem"}}})

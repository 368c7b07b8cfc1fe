"""A real mosquitto with the generated TLS + ACL configuration, attacked the way issue 10 describes.

Negative checks are event-driven: a forbidden publish is followed by an allowed one on the same path;
once the allowed one has arrived, the forbidden one would have arrived before it (mosquitto keeps the
order of one connection's messages).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning import CAError, pki
from provisioning.broker import BrokerPlan, claim_acl, claim_service_acl, device_acl, service_acl
from provisioning.ca import CertificateAuthority
from tests.helpers import wait_for
from tests.secure_broker import SecureBroker, TlsClient, identity

pytestmark = pytest.mark.broker

A = "venue/v1/westlake/gate-a"
B = "venue/v1/westlake/gate-b"
NOT_AUTHORIZED = 135


@pytest.fixture
def secure(tmp_path: Path, ca: CertificateAuthority) -> Iterator[SecureBroker]:
    b = SecureBroker(tmp_path, ca)
    yield b
    b.close()


@pytest.fixture
def clients(tmp_path: Path, ca: CertificateAuthority, secure: SecureBroker) -> Iterator[dict[str, TlsClient]]:
    made = {
        "a": TlsClient(secure, secure.plan.device_port, identity(ca, tmp_path, "gate-a"), "gate-a"),
        "b": TlsClient(secure, secure.plan.device_port, identity(ca, tmp_path, "gate-b"), "gate-b"),
        "hub": TlsClient(secure, secure.plan.service_port, identity(ca, tmp_path, "_hub"), "hub-worker-1"),
    }
    assert all(c.connected for c in made.values()), {k: c.failed for k, c in made.items()}
    made["hub"].subscribe("$share/hub/venue/v1/+/+/up/+", "venue/v1/+/+/state", "venue/v1/+/+/result")
    yield made
    for c in made.values():
        c.close()


def test_generated_acls_give_each_identity_only_its_own_topics() -> None:
    dev = device_acl().splitlines()
    assert [ln for ln in dev if not ln.startswith("#")] == [
        "pattern write venue/v1/+/%u/up/+", "pattern write venue/v1/+/%u/state",
        "pattern write venue/v1/+/%u/result", "pattern read venue/v1/+/%u/ack", "pattern read venue/v1/+/%u/cmd/+"]
    hub, prov = service_acl().split("user _provision")
    assert "topic write venue/v1/+/+/ack" in hub and "topic write venue/v1/+/+/cmd/+" in hub
    assert "topic write venue/v1/_hub/online" in hub and "_hub/online" not in prov
    assert [ln for ln in prov.splitlines() if "write" in ln] == ["topic write venue/v1/+/+/cmd/provision"]
    assert "topic read provision/v1/+/req" in claim_service_acl()
    assert [ln for ln in claim_acl().splitlines() if not ln.startswith("#")] == [
        "pattern write provision/v1/%c/req", "pattern read provision/v1/%c/resp"]


def test_anonymous_no_certificate_and_foreign_ca_clients_are_refused(
        tmp_path: Path, secure: SecureBroker) -> None:
    other = CertificateAuthority.init(tmp_path / "other-ca", "Somebody else's CA")
    forged = identity(other, tmp_path / "forged", "gate-a")
    for port in (secure.plan.device_port, secure.plan.service_port):
        for ident, cid in ((None, "anon"), (forged, "gate-a")):
            c = TlsClient(secure, port, ident, cid)
            assert not c.connected and c.failed, f"port {port} accepted {cid} with {ident}"
            c.close()
    good = TlsClient(secure, secure.plan.device_port, identity(secure.ca, tmp_path, "gate-a"), "gate-a")
    assert good.connected  # the same broker accepts a certificate of its own CA
    good.close()


def test_device_b_cannot_publish_read_or_ack_as_device_a(clients: dict[str, TlsClient]) -> None:
    a, b, hub = clients["a"], clients["b"], clients["hub"]
    a.subscribe(f"{A}/ack", f"{A}/cmd/+")
    b.subscribe("venue/v1/#", f"{A}/ack", f"{A}/cmd/+")  # granted by the broker, but nothing of A's is delivered
    assert b.publish(f"{A}/up/transaction", b"forged by B") == NOT_AUTHORIZED
    assert b.publish(f"{A}/state", b'{"v":1,"state":"offline"}', retain=True) == NOT_AUTHORIZED
    assert b.publish(f"{A}/ack", b'{"ranges":[[1,9223372036854775807]]}') == NOT_AUTHORIZED
    assert b.publish(f"{A}/cmd/config", b"{}") == NOT_AUTHORIZED
    assert b.publish(f"{B}/up/transaction", b"B's own") == 0
    assert a.publish(f"{A}/up/transaction", b"A's own") == 0
    wait_for(lambda: hub.got(f"{A}/up/transaction") and hub.got(f"{B}/up/transaction"), 10, "both real batches")
    assert hub.got(f"{A}/up/transaction") == [b"A's own"]
    assert hub.got(f"{A}/state") == []
    assert hub.publish(f"{A}/ack", b"real ack") == 0
    assert hub.publish(f"{A}/cmd/ping", b"real cmd") == 0
    wait_for(lambda: a.got(f"{A}/cmd/ping"), 10, "the hub's command at A")
    assert a.got(f"{A}/ack") == [b"real ack"]  # B's forged ack never reached A
    assert a.got(f"{A}/cmd/config") == []
    assert b.publish(f"{B}/result", b"sentinel") == 0
    wait_for(lambda: hub.got(f"{B}/result"), 10, "B's sentinel")
    assert [t for t, _, _ in b.messages if t.startswith(A)] == []  # B read nothing of A's


def test_device_cannot_write_ack_or_cmd_nor_retain_a_command(
        tmp_path: Path, secure: SecureBroker, clients: dict[str, TlsClient]) -> None:
    a, hub = clients["a"], clients["hub"]
    hub.subscribe(f"{A}/ack", f"{A}/cmd/+")
    assert a.publish(f"{A}/cmd/config", b'{"patch":{}}', retain=True) == NOT_AUTHORIZED
    assert a.publish(f"{A}/ack", b'{"ranges":[[1,2]]}') == NOT_AUTHORIZED
    assert a.publish(f"{A}/result", b"sentinel") == 0
    wait_for(lambda: hub.got(f"{A}/result"), 10, "A's sentinel")
    assert hub.got(f"{A}/ack") == [] and hub.got(f"{A}/cmd/config") == []
    # Nothing was retained: a fresh session of A subscribing to its commands gets no stored message.
    a.close()
    fresh = TlsClient(secure, secure.plan.device_port, identity(secure.ca, tmp_path, "gate-a"), "gate-a")
    fresh.subscribe(f"{A}/cmd/+")
    assert hub.publish(f"{A}/cmd/ping", b"live") == 0
    wait_for(lambda: fresh.got(f"{A}/cmd/ping"), 10, "the live command")
    assert fresh.messages == [(f"{A}/cmd/ping", b"live", False)]
    fresh.close()


def test_a_device_cannot_log_another_off_by_taking_its_client_id(
        tmp_path: Path, secure: SecureBroker, clients: dict[str, TlsClient]) -> None:
    a = clients["a"]
    thief = TlsClient(secure, secure.plan.device_port, identity(secure.ca, tmp_path, "gate-b"), "gate-a")
    assert thief.connected  # connected, but as gate-b: the broker replaced the client id with the CN
    assert thief.publish(f"{B}/result", b"from the thief") == 0
    wait_for(lambda: clients["hub"].got(f"{B}/result"), 10, "thief's message")
    assert a.connected and a.disconnects == 0
    assert a.publish(f"{A}/result", b"still here") == 0
    thief.close()


def test_a_revoked_certificate_is_refused_after_the_crl_reload(tmp_path: Path, secure: SecureBroker) -> None:
    ident = identity(secure.ca, tmp_path, "gate-r")
    first = TlsClient(secure, secure.plan.device_port, ident, "gate-r")
    assert first.connected
    first.close()
    secure.ca.revoke("gate-r", "keyCompromise")
    secure.reload_crl()
    refused = TlsClient(secure, secure.plan.device_port, ident, "gate-r")
    assert not refused.connected and refused.failed
    other = TlsClient(secure, secure.plan.device_port, identity(secure.ca, tmp_path, "gate-ok"), "gate-ok")
    assert other.connected  # the CRL refuses that serial only
    other.close()


def test_claimants_can_only_ask_for_a_certificate(
        tmp_path: Path, secure: SecureBroker, clients: dict[str, TlsClient]) -> None:
    port = secure.plan.claim_port
    assert port is not None
    service = TlsClient(secure, secure.plan.claim_service_port, identity(secure.ca, tmp_path, "_provision"),
                        "claim-service")
    service.subscribe("provision/v1/+/req")
    claimant = TlsClient(secure, port, None, "claim-1")
    other = TlsClient(secure, port, None, "claim-2")
    thief = TlsClient(secure, port, None, "gate-a")  # an anonymous client using a device's client id
    impostor = TlsClient(secure, port, None, "claim-3")
    assert claimant.connected and other.connected and thief.connected
    other.subscribe("provision/v1/claim-1/resp", "provision/v1/+/req", "#")
    assert claimant.publish("venue/v1/westlake/gate-a/up/transaction", b"forged") == NOT_AUTHORIZED
    assert claimant.publish("provision/v1/claim-2/req", b"as another claimant") == NOT_AUTHORIZED
    assert impostor.publish("provision/v1/claim-1/resp", b"a fake certificate") == NOT_AUTHORIZED
    assert claimant.publish("provision/v1/claim-1/req", b"mine") == 0
    wait_for(lambda: service.got("provision/v1/claim-1/req"), 10, "the request at the claim service")
    assert service.messages == [("provision/v1/claim-1/req", b"mine", False)]
    assert service.publish("provision/v1/claim-1/resp", b"answer") == 0
    claimant.subscribe("provision/v1/claim-1/resp")
    assert service.publish("provision/v1/claim-1/resp", b"answer") == 0
    wait_for(lambda: claimant.got("provision/v1/claim-1/resp"), 10, "the answer")
    assert other.messages == []  # neither the request nor the answer reached another claimant
    # The claim broker is another mosquitto: taking device A's client id there does not touch A.
    a = clients["a"]
    assert a.connected and a.disconnects == 0 and a.publish(f"{A}/result", b"still here") == 0
    for c in (service, claimant, other, thief, impostor):
        c.close()


def test_an_oversized_packet_disconnects_its_sender(tmp_path: Path, ca: CertificateAuthority) -> None:
    small = SecureBroker(tmp_path, ca, max_packet_kb=64)
    try:
        hub = TlsClient(small, small.plan.service_port, identity(ca, tmp_path, "_hub"), "hub-1")
        hub.subscribe("venue/v1/+/+/up/+")
        a = TlsClient(small, small.plan.device_port, identity(ca, tmp_path, "gate-a"), "gate-a")
        a.c.publish(f"{A}/up/transaction", b"x" * (65 * 1024), qos=1)
        wait_for(lambda: a.disconnects, 10, "the broker to drop the sender")
        b = TlsClient(small, small.plan.device_port, identity(ca, tmp_path, "gate-b"), "gate-b")
        assert b.publish(f"{B}/up/transaction", b"y" * (60 * 1024)) == 0  # under the limit: delivered
        wait_for(lambda: hub.got(f"{B}/up/transaction"), 10, "the batch under the limit")
        assert hub.got(f"{A}/up/transaction") == []
    finally:
        small.close()


def test_a_site_ca_device_is_accepted_and_its_revocation_reaches_the_broker(
        tmp_path: Path, ca: CertificateAuthority) -> None:
    site = CertificateAuthority.init(tmp_path / "site-ca", "Westlake site CA", parent=ca, site="westlake")
    with pytest.raises(CAError, match="site"):
        site.issue_device(pki.new_key().public_key(), "gate-x", "lingyin")
    broker = SecureBroker(tmp_path, ca, extra_crls=(site.dir / "crl.pem",))
    try:
        ident = identity(site, tmp_path, "gate-s")
        first = TlsClient(broker, broker.plan.device_port, ident, "gate-s")
        assert first.connected
        first.close()
        site.revoke("gate-s")
        broker.reload_crl()
        again = TlsClient(broker, broker.plan.device_port, ident, "gate-s")
        assert not again.connected
    finally:
        broker.close()
        site.close()


def test_the_ca_refuses_identities_that_would_break_the_acl(ca: CertificateAuthority) -> None:
    key = pki.new_key().public_key()
    for bad in ("_hub", "a/b", "+", "#", "gate a", ""):
        with pytest.raises(pki.PkiError):
            ca.issue_device(key, bad, "westlake")
    with pytest.raises(CAError):
        ca.issue_service(key, "gate-01")  # a hub identity must start with "_"
    ca.issue_device(key, "gate-01", "westlake")
    with pytest.raises(CAError, match="--replace"):
        ca.issue_device(key, "gate-01", "westlake")
    old = [i for i in ca.issued() if i.name == "gate-01"]
    ca.issue_device(key, "gate-01", "westlake", replace=True)
    assert [i.reason for i in ca.issued() if i.serial == old[0].serial] == ["superseded"]
    assert BrokerPlan().max_packet_kb * 1024 > 1024 * 1024  # sync.batch_max_kb's default fits

"""The hub on the generated TLS + ACL broker (issue 10): it logs in with its `_hub` certificate, stores only
registered devices' records from their own topics, and nobody else can make it believe anything.

A real mosquitto with the config `venue-provision broker config` writes (tests/secure_broker.py), a real hub
worker (in process, and `venue-hub run` as a process), SQLite. Negative checks are ordered: a forbidden
publish is followed by an allowed one on the same connection, and once the allowed one has had its effect,
the forbidden one would have had its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.records import Block, DataClass
from edge_agent.sync import envelope
from hub.db import SqliteBackend
from hub.ingest import HubWorker
from hub.link import BrokerLink
from hub.registry import Registry, Signed
from provisioning.ca import CertificateAuthority
from tests.helpers import wait_for
from tests.secure_broker import SecureBroker, TlsClient, identity

pytestmark = pytest.mark.broker

A = "venue/v1/westlake/gate-a"
B = "venue/v1/westlake/gate-b"
ONLINE = "venue/v1/_hub/online"
NOT_AUTHORIZED = 135
E = 1_800_000_000_000_000


def batch(device: str, seqs: list[int], body: str, batch_id: str = "b1") -> bytes:
    rows = Block(seqs, [1.7e9] * len(seqs), ["gate.pass"] * len(seqs), [body] * len(seqs))
    return envelope.encode_batch(device, "westlake", DataClass.TRANSACTION, batch_id, E, 1, rows, [])


@pytest.fixture
def secure(tmp_path: Path, ca: CertificateAuthority) -> Iterator[SecureBroker]:
    b = SecureBroker(tmp_path, ca, claim_port=None)
    yield b
    b.close()


@pytest.fixture
def hub_db(tmp_path: Path) -> Path:
    db = tmp_path / "hub.db"
    reg = Registry(str(db))
    reg.register("gate-a", "westlake", "gate", Signed("", "01", "fp", time.time() + 86400), "test")
    reg.close()
    return db


def device(secure: SecureBroker, tmp_path: Path, name: str) -> TlsClient:
    c = TlsClient(secure, secure.plan.device_port, identity(secure.ca, tmp_path, name), name)
    assert c.connected, c.failed
    c.subscribe(f"venue/v1/westlake/{name}/ack", ONLINE)
    return c


def test_the_hub_over_mtls_stores_only_registered_devices_on_their_own_topics(
        tmp_path: Path, secure: SecureBroker, hub_db: Path) -> None:
    cert, key = identity(secure.ca, tmp_path, "_hub")
    link = BrokerLink("localhost", secure.plan.service_port, tls=True, ca=secure.files.ca, cert=cert, key=key)
    backend = SqliteBackend(str(hub_db))
    registry = Registry(str(hub_db))
    w = HubWorker(backend, link=link, client_id="hub-worker-1", admit=registry.admit)
    w.start()
    a, b = device(secure, tmp_path, "gate-a"), device(secure, tmp_path, "gate-b")
    try:
        assert w.connected.wait(10), "the hub could not log in with its certificate"
        # B forges A's next records, A's state, an ack for A and the hub's online message: the broker refuses all.
        assert b.publish(f"{A}/up/transaction", batch("gate-a", [E + 1, E + 2], '{"forged":1}')) == NOT_AUTHORIZED
        assert b.publish(f"{A}/state", b'{"v":1,"state":"online","epoch":1,"boot":99}', retain=True) == NOT_AUTHORIZED
        skip_all = envelope.encode_batch("gate-a", "westlake", DataClass.STATE, "sk", E, 1, Block([], [], [], []),
                                         [(E + 3, E + 3, 2**62, "budget")])
        assert b.publish(f"{A}/up/state", skip_all) == NOT_AUTHORIZED  # a forged "dropped on purpose"
        assert b.publish(f"{A}/ack", b'{"v":1,"batch":"x","class":"transaction","ranges":[[1,9223372036854775807]]}'
                         ) == NOT_AUTHORIZED
        assert a.publish(ONLINE, b'{"v":1,"hub":"fake"}', retain=True) == NOT_AUTHORIZED
        # B on its own topics, with a valid certificate but not registered: refused and counted.
        assert b.publish(f"{B}/up/transaction", batch("gate-b", [E + 1], '{"b":1}')) == 0
        # A names B in its envelope on its own topic: the ACL lets it through, the hub does not.
        assert a.publish(f"{A}/up/transaction", batch("gate-b", [E + 5], '{"as_b":1}', "bx")) == 0
        # A's real records at the seqs B tried to take.
        assert a.publish(f"{A}/up/transaction", batch("gate-a", [E + 1, E + 2], '{"real":1}')) == 0
        wait_for(lambda: a.got(f"{A}/ack"), 10, "A's ack")
        [ack] = [json.loads(p) for p in a.got(f"{A}/ack")]
        assert (ack["batch"], ack["ranges"], ack["stored"], ack["dup"]) == ("b1", [[E + 1, E + 2]], 2, 0)
        assert backend.conn.execute("SELECT DISTINCT body FROM events").fetchall() == [('{"real":1}',)]
        w.flush_rejections()
        per = {(r["device"], r["reason"]): r["count"] for r in backend.rejections()}
        assert per == {("gate-b", "unregistered"): 1, ("gate-a", "topic_mismatch"): 1}
        assert registry.refusals()["gate-b"]["reason"] == "unknown"
        assert b.got(f"{B}/ack") == [] and a.got(ONLINE) == []  # devices neither write nor read it
        [dev] = backend.devices()
        # B's forged birth never came (online, boot 99, epoch 1) nor its skip announcement.
        assert (dev["device"], dev["online"], dev["boot"], dev["epoch"], dev["events"]) == ("gate-a", False, 1, E, 2)
        assert dev["dropped_ranges"] == 0
    finally:
        for c in (a, b):
            c.close()
        w.stop()
        registry.close()
        backend.close()


def test_venue_hub_run_logs_in_with_its_certificate_and_refuses_secrets_in_argv(
        tmp_path: Path, secure: SecureBroker, hub_db: Path) -> None:
    cert, key = identity(secure.ca, tmp_path, "_hub")
    url = f"mqtts://localhost:{secure.plan.service_port}"
    base = [sys.executable, "-m", "hub", "run", "--broker", url, "--ca", str(secure.files.ca), "--db", str(hub_db)]
    refused = subprocess.run([*base[:5], "mqtts://_hub:pw@localhost:1", "--db", str(hub_db)], capture_output=True,
                             text=True, timeout=30)
    assert refused.returncode == 2 and "no credentials in the broker URL" in refused.stderr
    a = device(secure, tmp_path, "gate-a")
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        p = subprocess.Popen([*base, "--cert", str(cert), "--key", str(key), "--client-id", "hub-cli"], stderr=out)
        try:
            wait_for(lambda: b"hub worker connected" in log.read_bytes(), 20, "the CLI hub to log in")
            assert a.publish(f"{A}/up/transaction", batch("gate-a", [E + 1], '{"real":1}')) == 0
            wait_for(lambda: a.got(f"{A}/ack"), 20, "A's ack from the CLI hub")
        finally:
            p.terminate()
            p.wait(20)
            a.close()
    # Without a certificate the services listener refuses the hub: it never says it is online.
    anon = TlsClient(secure, secure.plan.service_port, None, "hub-anon")
    assert not anon.connected
    anon.close()

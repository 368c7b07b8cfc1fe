"""Sensor nodes on the gateway's generated local broker: per-node passwords, the ACL shape, TLS from the
real firmware under the MicroPython unix port."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.nodes import AGENT, password_hash, write_nodes
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.broker
FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


class NodesBroker:
    def __init__(self, d: Path) -> None:
        self.agent_port, self.node_port = free_port(), free_port()
        self.files = write_nodes(d / "nodes-broker", ["wc-n1", "wc-n2"], "localhost", agent_port=self.agent_port,
                                 node_port=self.node_port, tls=True, run_as=pwd.getpwuid(os.geteuid()).pw_name)
        self.dir = d / "nodes-broker"
        self.log = open(d / "nodes-broker.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.files["conf"])], stdout=self.log, stderr=self.log)
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.node_port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "local broker")

    def secret(self, node: str) -> dict[str, Any]:
        return dict(json.loads((self.dir / "nodes" / f"{node}.json").read_text()))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def nb(tmp_path: Path) -> Iterator[NodesBroker]:
    b = NodesBroker(tmp_path)
    yield b
    b.close()


class Client:
    def __init__(self, port: int, user: str | None, password: str | None, tls_ca: Path | None = None,
                 cid: str = "c") -> None:
        self.rc: Any = None
        self.msgs: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
        if user:
            self.c.username_pw_set(user, password)
        if tls_ca:
            self.c.tls_set(ca_certs=str(tls_ca))
        self.c.on_connect = lambda c, u, f, rc, p: setattr(self, "rc", rc)
        self.c.on_message = lambda c, u, m: self.msgs.append((m.topic, bytes(m.payload)))
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc.value)
        self.c.connect("localhost", port)
        self.c.loop_start()
        wait_for(lambda: self.rc is not None, 10, "CONNACK")

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.c.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.acks, 10, "PUBACK")
        return self.acks[info.mid]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_password_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    import base64
    import hashlib

    h = password_hash("s3cret", salt=b"0123456789ab")
    _, alg, it, salt, dig = h.split("$")
    assert (alg, it) == ("7", "101")
    assert base64.b64decode(dig) == hashlib.pbkdf2_hmac("sha512", b"s3cret", b"0123456789ab", 101)
    if shutil.which("mosquitto_passwd"):
        pw = tmp_path / "pw"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "u", "s3cret"], check=True)
        _, alg2, it2, salt2, dig2 = pw.read_text().strip().split(":", 1)[1].split("$")
        assert (alg2, it2) == (alg, it)
        assert password_hash("s3cret", base64.b64decode(salt2)).endswith(dig2)


def test_a_node_writes_only_its_own_topics_and_only_the_agent_acks(nb: NodesBroker) -> None:
    agent_pw = (nb.dir / "agent.secret").read_text().strip()
    agent = Client(nb.agent_port, AGENT, agent_pw, cid="edge-agent-nodes")
    assert agent.rc == 0
    agent.c.subscribe("svnode/#", qos=1)
    ca = nb.dir / "ca.pem"
    n2 = nb.secret("wc-n2")
    neighbour = Client(nb.node_port, "wc-n2", n2["mqtt_pass"], ca, cid="wc-n1")  # and it tries n1's client id
    assert neighbour.rc == 0
    for bad in ("wc-n2", None):
        refused = Client(nb.node_port, "wc-n1" if bad else None, "wrong" if bad else None, ca, cid="x")
        assert refused.rc != 0  # a wrong password and an anonymous client are refused
        refused.close()
    assert neighbour.publish("svnode/wc-n1/data", b'{"ring":"r","recs":[]}') == 135
    assert neighbour.publish("svnode/wc-n1/ack", b'{"ring":"r","upto":999999}') == 135
    assert neighbour.publish("svnode/wc-n1/config/set", b'{"id":"x","set":{"ssid":"evil"}}') == 135
    assert neighbour.publish("svnode/wc-n2/ack", b'{"upto":1}') == 135  # not even its own ack
    assert neighbour.publish("svnode/wc-n2/data", b"own") == 0
    neighbour.c.subscribe([("svnode/wc-n2/ack", 1), ("svnode/wc-n1/#", 1)])
    wait_for(lambda: ("svnode/wc-n2/data", b"own") in agent.msgs, 10, "the node's own data at the agent")
    assert agent.publish("svnode/wc-n1/ack", b'{"upto":7}') == 0  # for n1: n2 must not see it
    assert agent.publish("svnode/wc-n2/ack", b'{"upto":1}') == 0
    wait_for(lambda: neighbour.msgs, 10, "the agent's ack at the node")
    assert neighbour.msgs == [("svnode/wc-n2/ack", b'{"upto":1}')]
    assert [t for t, _ in agent.msgs] == ["svnode/wc-n2/data"]  # none of the forged ones arrived
    neighbour.close()
    agent.close()


def test_the_firmware_connects_with_tls_and_its_password(tmp_path: Path, nb: NodesBroker) -> None:
    micropython = shutil.which("micropython")
    if micropython is None:
        pytest.fail("micropython not installed (dev extra)")
    agent = Client(nb.agent_port, AGENT, (nb.dir / "agent.secret").read_text().strip(), cid="a")
    agent.c.subscribe("svnode/wc-n1/#", qos=1)
    flash = tmp_path / "flash"
    flash.mkdir()
    shutil.copy(nb.dir / "ca.der", flash / "ca.der")
    cfg = {**nb.secret("wc-n1"), "interval_s": 1}
    (flash / "config.json").write_text(json.dumps(cfg))
    (flash / "hw.json").write_text(json.dumps({"doors": [1, 0], "t_c": 22.0, "rh": 50.0}))
    log = open(flash / "node.log", "ab")  # noqa: SIM115
    node = subprocess.Popen([micropython, "-c", "from svnode.app import main\nmain()"], cwd=flash, stdout=log,
                            stderr=log, env={**os.environ, "MICROPYPATH": f"{FIRMWARE}:.frozen",
                                             "SVNODE_FAKE": str(flash / "hw.json")})
    try:
        wait_for(lambda: any(t == "svnode/wc-n1/data" for t, _ in agent.msgs), 30, "the node's data over TLS")
        status = json.loads(next(p for t, p in agent.msgs if t == "svnode/wc-n1/status"))
        assert status["online"] is True and status["config"]["mqtt_pass"] == "***" and status["config"]["tls"]
    finally:
        node.kill()
        node.wait()
        log.close()
        agent.close()
    # With the wrong CA the node refuses the broker (no readings leave it).
    (flash / "config.json").write_text(json.dumps({**cfg, "ca": "other.der"}))
    from provisioning.ca import CertificateAuthority

    other = CertificateAuthority.init(tmp_path / "other", "not the gateway")
    from cryptography.hazmat.primitives.serialization import Encoding

    (flash / "other.der").write_bytes(other.cert.public_bytes(Encoding.DER))
    r = subprocess.run([micropython, "-c", "from svnode.app import Node\nn = Node()\ntry:\n    n.connect()\n"
                        "except Exception as e:\n    print('REFUSED', repr(e))\n"], cwd=flash, capture_output=True,
                       text=True, timeout=30, env={**os.environ, "MICROPYPATH": f"{FIRMWARE}:.frozen",
                                                   "SVNODE_FAKE": str(flash / "hw.json")})
    assert "REFUSED" in r.stdout and "connect" in r.stdout, r.stdout + r.stderr
    other.close()


def test_the_nodes_producer_logs_in_with_the_generated_secret_file(nb: NodesBroker) -> None:
    """The config `venue-provision broker nodes` prints: the agent's session reads agent.secret itself."""
    from edge_agent.nodes.config import NodesConfig
    from edge_agent.sync.session import probe

    cfg = NodesConfig(type="nodes", port=nb.agent_port, username=AGENT, password_file=nb.dir / "agent.secret")
    ok, detail = probe(cfg.mqtt(), "edge-agent-nodes")
    assert ok, detail
    assert "3.1.1" in detail
    wrong = nb.dir.parent / "wrong.secret"
    wrong.write_text("not-the-secret\n")
    ok, detail = probe(cfg.model_copy(update={"password_file": wrong}).mqtt(), "x")
    assert not ok and "refused" in detail

"""The one MQTT session against a real mosquitto: login, refusal, last will, birth, reconnect, goodbye, TLS."""

from __future__ import annotations

import json
import random
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config.models import MqttConfig
from edge_agent.core.backoff import Backoff
from edge_agent.sync.session import Message, MqttSession, SessionState, probe, read_password
from tests.helpers import Broker, Listener, wait_for

pytestmark = pytest.mark.broker

STATE = "venue/v1/westlake/gate-01/state"


def locked_broker(tmp_path: Path, make_broker: Any) -> Broker:
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gate-01", "s3cret"], check=True)
    pw.chmod(0o644)  # mosquitto runs as us and only warns about the mode
    return make_broker(f"allow_anonymous false\npassword_file {pw}")  # type: ignore[no-any-return]


def session(url: str, **kw: Any) -> MqttSession:
    cfg = MqttConfig.model_validate({"url": url, "keepalive_s": 5, **kw.pop("cfg", {})})
    return MqttSession(cfg, "gate-01", backoff=Backoff(0.1, 0.3, random.Random(1)), **kw)


def test_password_file_logs_in_and_a_wrong_one_is_refused_never_online(tmp_path: Path, make_broker: Any) -> None:
    broker = locked_broker(tmp_path, make_broker)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret\n")
    bad.write_text("guess\n")
    refused = session(broker.url, cfg={"username": "gate-01", "password_file": str(bad)})
    states: list[SessionState] = []
    refused.start()
    try:
        wait_for(lambda: (states.append(refused.state), refused.refusals >= 3)[1], 20, "three refusals", every=0.01)
    finally:
        refused.stop()
    assert SessionState.ONLINE not in states and refused.connects == 0
    assert "authori" in (refused.refusal or "").lower() and "refused" in (refused.last_error or "")
    assert refused.state is SessionState.CLOSED

    ok = session(broker.url, cfg={"username": "gate-01", "password_file": str(good)})
    assert ok.connect_once(5) and ok.state is SessionState.ONLINE and ok.refusal is None
    ok.close()
    assert ok.state is SessionState.CLOSED


def test_password_must_exist_where_the_settings_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SVE_TEST_PW", raising=False)
    cfg = MqttConfig(username="u", password_env="SVE_TEST_PW")
    with pytest.raises(ValueError, match="SVE_TEST_PW"):
        read_password(cfg)
    monkeypatch.setenv("SVE_TEST_PW", "from-env")
    assert read_password(cfg) == "from-env"
    with pytest.raises(ValueError, match="no-such-file"):
        read_password(MqttConfig(username="u", password_file=tmp_path / "no-such-file"))
    with pytest.raises(ValueError, match="not both"):
        MqttConfig(password_env="X", password_file=tmp_path / "f")


def test_birth_will_reconnect_and_goodbye(tmp_path: Path, broker: Broker) -> None:
    listener = Listener(broker, STATE)
    online: list[int] = []
    s = session(broker.url,
                will=Message(STATE, json.dumps({"state": "offline"}), retain=True),
                birth=lambda: Message(STATE, json.dumps({"state": "online", "n": len(online)}), retain=True),
                goodbye=lambda: Message(STATE, json.dumps({"state": "offline", "clean": True}), retain=True),
                on_online=lambda: online.append(1))
    s.start()
    try:
        wait_for(lambda: s.online and listener.messages, 10, "birth")
        assert json.loads(listener.messages[-1][1])["state"] == "online"
        # A dead TCP link (no DISCONNECT): the broker publishes the last will; the session notices and comes back.
        s.client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        wait_for(lambda: any(json.loads(p) == {"state": "offline"} for _, p, _r in listener.messages), 10, "last will")
        wait_for(lambda: s.connects == 2 and s.online, 10, "reconnect")
        assert len(online) == 2 and s.last_error and "lost" in s.last_error
        broker.kill()
        wait_for(lambda: s.state is not SessionState.ONLINE, 10, "offline on a dead broker")
        broker.start()
        wait_for(lambda: s.connects == 3 and s.online, 15, "back after a broker restart")
    finally:
        s.stop()
    listener.close()
    assert s.state is SessionState.CLOSED
    late = Listener(broker, STATE)  # the first one lost its subscription with the broker restart
    wait_for(lambda: late.messages, 5, "the retained state")
    assert json.loads(late.messages[-1][1]) == {"state": "offline", "clean": True}
    late.close()


def test_messages_and_jobs_run_on_the_network_thread(broker: Broker) -> None:
    import threading

    seen: list[tuple[str, bytes, str]] = []
    s = session(broker.url, subscriptions=[("t/in", 1)],
                on_message=lambda topic, payload, props: seen.append((topic, payload, threading.current_thread().name)))
    s.start()
    try:
        wait_for(lambda: s.online, 10, "online")
        assert s.publish("t/in", b"hello") is not None
        ran: list[str] = []
        s.post(lambda: ran.append(threading.current_thread().name))
        wait_for(lambda: seen and ran, 10, "message and job")
    finally:
        s.stop()
    assert seen == [("t/in", b"hello", "mqtt-net")] and ran == ["mqtt-net"]


def test_probe_says_what_happened(tmp_path: Path, make_broker: Any) -> None:
    broker = locked_broker(tmp_path, make_broker)
    ok, detail = probe(MqttConfig(url=broker.url), "doctor")
    assert not ok and "refused" in detail
    ok, detail = probe(MqttConfig(url="mqtt://127.0.0.1:1"), "doctor")
    assert not ok and "cannot connect" in detail
    ok, detail = probe(MqttConfig(url=broker.url, username="u", password_env="SVE_UNSET_VARIABLE"), "doctor")
    assert not ok and "SVE_UNSET_VARIABLE" in detail


def test_mutual_tls_session(tmp_path: Path, make_broker: Any) -> None:
    from tests.test_tls import write_pki

    pki = write_pki(tmp_path)
    broker = make_broker(f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
                         "require_certificate true\n")
    url = f"mqtts://127.0.0.1:{broker.port}"
    mutual = session(url, cfg={"tls": {"ca": str(pki["ca"]), "cert": str(pki["client"]),
                                       "key": str(pki["client_key"])}})
    assert mutual.connect_once(5), mutual.last_error
    mutual.close()
    server_only = session(url, cfg={"tls": {"ca": str(pki["ca"])}})
    assert not server_only.connect_once(5) and server_only.state is SessionState.OFFLINE
    assert server_only.last_error
    server_only.close()
    with pytest.raises(ValueError, match="tls.cert"):
        session(url, cfg={"tls": {"ca": str(pki["ca"]), "cert": str(tmp_path / "nope.pem"),
                                  "key": str(pki["client_key"])}})


def test_nodes_gateway_settings_become_session_settings(tmp_path: Path) -> None:
    from edge_agent.nodes.config import NodesConfig

    n = NodesConfig(type="nodes", port=1884, username="edge-agent", password_file=tmp_path / "pw")
    m = n.mqtt()
    assert (m.host, m.port, m.protocol, m.username, m.password_file) == ("127.0.0.1", 1884, "3.1.1", "edge-agent",
                                                                       tmp_path / "pw")
    with pytest.raises(ValueError, match="one of password_env, password_file"):
        NodesConfig(type="nodes", password_file=tmp_path / "pw", password_env="Y")
    with pytest.raises(ValueError, match="password"):  # a plain password has no key in the config at all
        NodesConfig.model_validate({"type": "nodes", "password": "x"})


class V311OnlyBroker:
    """Just enough of a broker that speaks only MQTT 3.1.1: refuses a v5 CONNECT with `v5_answer`, accepts 3.1.1.
    (mosquitto cannot be told to refuse v5, so the fallback is shown against this stub.)"""

    def __init__(self, v5_answer: bytes) -> None:
        import threading

        self.v5_answer, self.levels = v5_answer, []
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.conns: list[Any] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            head = conn.recv(2)
            rest, mult = head[1] & 0x7F, 128  # remaining length (the CONNECTs here are short)
            while head[-1] & 0x80:
                head += conn.recv(1)
                rest += (head[-1] & 0x7F) * mult
                mult *= 128
            body = b""
            while len(body) < rest:
                body += conn.recv(rest - len(body))
            level = body[6]  # after the protocol name "\0\x04MQTT"
            self.levels.append(level)
            conn.sendall(self.v5_answer if level == 5 else bytes([0x20, 2, 0, 0]))

    def close(self) -> None:
        self.srv.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("v5_answer", [bytes([0x20, 3, 0, 0x84, 0]), bytes([0x20, 2, 0, 1])],
                         ids=["v5-unsupported-protocol", "v3-unacceptable-version"])
def test_a_broker_that_refuses_v5_gets_3_1_1(v5_answer: bytes) -> None:
    import paho.mqtt.client as mqtt

    stub = V311OnlyBroker(v5_answer)
    try:
        s = session(f"mqtt://127.0.0.1:{stub.port}")
        assert s.connect_once(5), s.last_error
        assert stub.levels == [5, 4] and s.protocol == mqtt.MQTTv311 and s.refusals == 1 and s.online
        s.close()
    finally:
        stub.close()

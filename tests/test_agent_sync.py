"""The agent against a real mosquitto and an in-process hub worker on SQLite."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.app import Agent, overlay_path
from edge_agent.records import DataClass
from edge_agent.registry import AgentConfig
from edge_agent.sync.uplink import Link
from hub.ingest import HubWorker
from tests.helpers import Broker, Listener, agent_config, agent_proc, free_port, hub_worker, wait_for
from tests.signing import HUB_PUB, signed

pytestmark = pytest.mark.broker


def make_cfg(tmp_path: Path, broker: Broker, **over: Any) -> AgentConfig:
    data: dict[str, Any] = {
        "device": {"id": "gate-01", "site": "westlake", "role": "gate", "metadata": {"model": "t1"}},
        "store": {"path": str(tmp_path / "outbox.db")},
        "mqtt": {"url": broker.url, "keepalive_s": 5},
        "sync": {"ack_timeout_s": 2, "backoff_min_s": 0.2, "backoff_max_s": 1, "backlog_rate": 0},
        "commands": {"hub_key": HUB_PUB},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return AgentConfig.model_validate(data)


@pytest.fixture
def hub(tmp_path: Path, broker: Broker) -> Iterator[HubWorker]:
    with hub_worker(tmp_path / "hub.db", broker, "hub-test") as w:
        yield w


def test_records_reach_hub_and_are_purged_only_after_ack(tmp_path: Path, broker: Broker, hub: HubWorker) -> None:
    agent = Agent(make_cfg(tmp_path, broker))
    agent.start()
    try:
        for i in range(50):
            agent.outbox.put("transaction", "gate.pass", {"i": i})
        agent.outbox.put("state", "occupancy", {"inside": 3}, key="occ")
        wait_for(lambda: agent.outbox.depth() == 0, 20, "the outbox to be acked empty")
        devices = wait_for(lambda: hub.backend.devices(), 10, "device row")
    finally:
        agent.stop()
    assert hub.backend.count() == 51
    d = devices[0]
    assert d["device"] == "gate-01" and d["online"] and d["boot"] == 1 and d["meta"]["role"] == "gate"
    assert d["meta"]["model"] == "t1" and d["gaps"] == []


def test_no_hub_means_no_purge(tmp_path: Path, broker: Broker) -> None:
    """PUBACK from the broker is not enough: without the hub's ack the rows stay."""
    agent = Agent(make_cfg(tmp_path, broker))
    for i in range(20):  # queued before the uplink starts: one batch, not up to 20 (the window holds few)
        agent.outbox.put("transaction", "gate.pass", {"i": i})
    agent.start()
    try:
        wait_for(lambda: agent.uplink and agent.uplink.stats.records_sent >= 20, 10, "records sent")
        # the broker PUBACKed that batch long ago when the uplink, not acked by a hub, sends it again
        wait_for(lambda: agent.uplink is not None and agent.uplink.stats.resends >= 1, 10, "a re-send")
        assert agent.outbox.depth() == 20
    finally:
        agent.stop()


def test_birth_and_last_will(tmp_path: Path, broker: Broker, hub: HubWorker) -> None:
    listener = Listener(broker, "venue/v1/westlake/+/state")
    cfg = agent_config(tmp_path, broker.url, rate=None)
    cfg.write_text(cfg.read_text().replace("[mqtt]", "[mqtt]\nkeepalive_s = 5"))
    proc = agent_proc(cfg, tmp_path)
    try:
        wait_for(lambda: [m for m in listener.messages if b'"online"' in m[1]], 20, "birth message")
        birth = json.loads(next(m[1] for m in listener.messages if b'"online"' in m[1]))
        assert birth["boot"] == 1 and birth["device"] == "gate-01" and birth["epoch"] > 0
        proc.kill9()  # no clean goodbye: the broker publishes the will after 1.5 x keepalive
        wait_for(lambda: [m for m in listener.messages if b'"offline"' in m[1]], 20, "last will")
        wait_for(lambda: [d for d in hub.backend.devices() if not d["online"]], 10, "hub sees offline")
        proc.start()
        wait_for(lambda: [d for d in hub.backend.devices() if d["online"] and d["boot"] == 2], 20, "boot 2 online")
    finally:
        proc.terminate()
        listener.close()


def test_refused_connection_is_never_reported_connected(tmp_path: Path, make_broker: Any) -> None:
    locked = make_broker("allow_anonymous false")
    agent = Agent(make_cfg(tmp_path, locked))
    states: list[Link] = []
    agent.start()
    try:
        wait_for(lambda: agent.uplink and agent.uplink.stats.refusals >= 2, 20, "two refusals")
        # the state, sampled through two more refusals and the backoff between them
        wait_for(lambda: (states.append(agent.uplink.state), agent.uplink.stats.refusals >= 4)[1],  # type: ignore[union-attr]
                 20, "two more refusals", every=0.02)
        assert agent.uplink is not None and "authori" in (agent.uplink.refusal or "").lower()
        assert agent.uplink.stats.connects == 0
        assert Link.CONNECTED not in states
        assert agent.status()["broker"] != "connected"
    finally:
        agent.stop()


def test_mqtt_311_works(tmp_path: Path, broker: Broker, hub: HubWorker) -> None:
    agent = Agent(make_cfg(tmp_path, broker, mqtt={"protocol": "3.1.1"}))
    agent.start()
    try:
        agent.outbox.put("transaction", "gate.pass", {"i": 1})
        wait_for(lambda: agent.outbox.depth() == 0, 20, "ack over MQTT 3.1.1")
    finally:
        agent.stop()


def test_live_records_overtake_a_paced_backlog(tmp_path: Path, broker: Broker, hub: HubWorker) -> None:
    cfg = make_cfg(tmp_path, broker, sync={"backlog_rate": 2000, "batch_max_records": 500})
    agent = Agent(cfg)
    ob = agent.outbox
    ob.put_many([ob.make_record("measurement", "old", {"i": i}) for i in range(30_000)])
    agent.start()
    try:
        wait_for(lambda: agent.uplink and agent.uplink.state is Link.CONNECTED, 10, "connected")
        wait_for(lambda: agent.uplink and agent.uplink.stats.records_acked >= 1000, 10, "the backlog draining")
        t0 = time.monotonic()
        live = ob.put("transaction", "gate.pass", {"live": True}).seq
        wait_for(lambda: not ob.fetch(DataClass.TRANSACTION, 0).seq, 10, "live record acked")
        took = time.monotonic() - t0
        backlog_left = len(ob.fetch(DataClass.MEASUREMENT, 0, limit=100_000, max_bytes=1 << 30))
    finally:
        agent.stop()
    assert live is not None and took < 2.0
    assert backlog_left > 15_000, "the backlog is paced at 2000/s, it cannot be nearly done"


def test_downlink_commands_and_remote_config(tmp_path: Path, broker: Broker, hub: HubWorker) -> None:
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text("")
    agent = Agent(make_cfg(tmp_path, broker), config_path=cfg_file)
    results = Listener(broker, "venue/v1/westlake/gate-01/result")
    agent.start()
    base = "venue/v1/westlake/gate-01/cmd/"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        wait_for(lambda: agent.uplink and agent.uplink.state is Link.CONNECTED, 10, "connected")

        def answers(cid: str | None) -> list[dict[str, Any]]:
            return [doc for doc in (json.loads(m[1]) for m in list(results.messages)) if doc.get("id") == cid]

        def ask(name: str, doc: Any, raw: bytes | None = None) -> dict[str, Any]:
            cid = doc["id"] if doc else None
            results.publish(base + name, raw if raw is not None else signed("westlake", "gate-01", name,
                                                                            doc.get("args"), cid))
            return wait_for(lambda: answers(cid), 10, f"result of {name}")[0]  # type: ignore[no-any-return]

        # a command sent before the agent's subscription is in place is lost (QoS 1 to no subscriber): ping
        # until one is answered
        wait_for(lambda: results.publish(base + "ping", signed("westlake", "gate-01", "ping", {}, "p0"))
                 or answers("p0"), 10,
                 "the agent to answer a ping", every=0.3)
        assert ask("ping", {"id": "p1"})["ok"]
        ok = ask("config", {"id": "c1", "args": {"patch": {"sync": {"backlog_rate": 123}}}})
        assert ok["ok"] and agent.cfg.sync.backlog_rate == 123
        assert json.loads(overlay_path(cfg_file).read_text()) == {"sync": {"backlog_rate": 123}}
        bad = ask("config", {"id": "c2", "args": {"patch": {"sync": {"window": 0}}}})
        assert not bad["ok"] and "sync.window" in bad["error"] and agent.cfg.sync.window == 8
        port = busy.getsockname()[1]
        rolled = ask("config", {"id": "c3", "args": {"patch": {"metrics": {"enabled": True, "port": port}}}})
        assert not rolled["ok"] and "rolled back" in rolled["error"]
        assert agent.cfg.metrics.enabled is False and "metrics" not in json.loads(overlay_path(cfg_file).read_text())
        ident = ask("config", {"id": "c4", "args": {"patch": {"device": {"id": "evil"}}}})
        assert not ident["ok"] and "provisioning" in ident["error"] and "device" in ident["error"]
        junk = ask("config", None, raw=b"\xff\xfe not json")
        assert not junk["ok"] and "not JSON" in junk["error"]
        # after all that the agent still syncs
        agent.outbox.put("transaction", "gate.pass", {"after": True})
        wait_for(lambda: agent.outbox.depth() == 0, 20, "sync after commands")
        assert agent.supervisor.healthy()
    finally:
        busy.close()
        results.close()
        agent.stop()


def test_metrics_endpoint(tmp_path: Path, broker: Broker) -> None:
    port = free_port()
    agent = Agent(make_cfg(tmp_path, broker, metrics={"enabled": True, "port": port}))
    agent.start()
    try:
        agent.outbox.put("transaction", "gate.pass", {})
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        agent.stop()
    assert 'venue_outbox_depth{class="transaction"} 1.0' in text
    assert "venue_broker_connected" in text and "venue_agent_boot 1.0" in text


def test_systemd_ready_and_watchdog(tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    sock_path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(sock_path)
    srv.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", sock_path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    agent = Agent(make_cfg(tmp_path, broker))
    agent.start()
    stop = threading.Event()
    t = threading.Thread(target=agent.run, kwargs={"stop": stop})
    t.start()
    got: list[str] = []
    try:
        while len([m for m in got if m == "WATCHDOG=1"]) < 3:
            got.append(srv.recv(1024).decode())
    finally:
        stop.set()
        t.join()
        agent.stop()
        srv.close()
    assert got[0] == "READY=1" and any(m.startswith("STATUS=") for m in got)


def test_secrets_never_reach_the_logs(tmp_path: Path, make_broker: Any, caplog: pytest.LogCaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agent.runtime.logs import REDACTOR

    monkeypatch.setenv("VENUE_MQTT_PASSWORD", "s3cr3t-Pa55")
    locked = make_broker("allow_anonymous false")
    caplog.handler.addFilter(REDACTOR)
    cfg = make_cfg(tmp_path, locked, mqtt={"username": "gate", "password_env": "VENUE_MQTT_PASSWORD"})
    agent = Agent(cfg)
    with caplog.at_level(logging.DEBUG):
        agent.start()
        try:
            wait_for(lambda: agent.uplink and agent.uplink.stats.refusals >= 1, 20, "refusal")
            logging.getLogger("edge_agent.test").warning("connecting with password=s3cr3t-Pa55 to %s",
                                                         "mqtts://gate:s3cr3t-Pa55@hub")
        finally:
            agent.stop()
    text = caplog.text
    assert "s3cr3t-Pa55" not in text and "password=***" in text


def test_puback_failure_reason_codes_are_checked(tmp_path: Path, make_broker: Any) -> None:
    """A broker that refuses the publish (ACL) answers PUBACK 0x87: nothing is purged, it is re-sent."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite venue/v1/westlake/gate-01/state\n"
                   "topic read venue/v1/westlake/gate-01/ack\n"
                   "topic read venue/v1/westlake/gate-01/cmd/+\n")
    strict = make_broker(f"acl_file {acl}")
    agent = Agent(make_cfg(tmp_path, strict, sync={"ack_timeout_s": 0.5}))
    agent.start()
    try:
        for i in range(10):
            agent.outbox.put("transaction", "gate.pass", {"i": i})
        wait_for(lambda: agent.uplink and agent.uplink.stats.puback_failures >= 2, 15, "refused PUBACKs")
        assert agent.outbox.depth() == 10
        assert agent.uplink is not None and agent.uplink.stats.records_acked == 0
        assert agent.uplink.stats.resends >= 1 and agent.supervisor.healthy()
    finally:
        agent.stop()

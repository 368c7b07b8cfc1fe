"""Ticket gate: ID numbers, signed tickets, rules, parsers (fuzzed), the pty serial path end to end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import serial
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.core import idnumber
from edge_agent.core.clock import ManualClock
from edge_agent.drivers import FrameError, idreader, turnstile
from edge_agent.drivers.serialio import LineReader
from edge_agent.drivers.turnstile import TurnstileDriver
from edge_agent.gate.passback import UsedTickets
from edge_agent.gate.site import Site
from edge_agent.gate.tickets import Capacity, Ticket, Validator, parse, sign
from edge_agent.sim import idreader as id_sim
from edge_agent.sim.turnstile import TurnstileSim
from tests.helpers import GateLane, wait_for

KEY = Ed25519PrivateKey.generate()
NOW = dt.datetime(2026, 11, 22, 10, 30)


def ticket(tid: str = "T1", venue: str = "westlake", date: str = "2026-11-22", slot: str = "10:00-11:00",
           party: int = 1, expires: float | None = None) -> str:
    return sign(Ticket(tid, venue, date, slot, party, expires or NOW.timestamp() + 3600), KEY)


def test_id_number_checksum() -> None:
    assert idnumber.validate("11010519491231002X") is None
    assert idnumber.validate("11010519491231002x") is None
    assert "check digit" in (idnumber.validate("110105194912310021") or "")
    assert "birth date" in (idnumber.validate("110105194913310020") or "")
    assert "17 digits" in (idnumber.validate("1101051949") or "")
    assert idnumber.check_digit("11010519491231002") == "X"
    assert idnumber.mask("11010519491231002X") == "110***********002X"


def test_ticket_rules(tmp_path: Path) -> None:
    used = UsedTickets(tmp_path / "g.db")
    site = Site("site", Capacity(3), "2026-11-22")
    v = Validator("westlake", KEY.public_key(), used, site, lambda: NOW)
    assert v.decide(ticket("A")).reason == "ok"
    assert v.decide(ticket("A")).reason == "already_used"  # pending: opened, not yet through
    assert v.decide(ticket("B", venue="lingyin")).reason == "wrong_venue"
    assert v.decide(ticket("C", date="2026-11-23")).reason == "wrong_date"
    assert v.decide(ticket("D", slot="14:00-15:00")).reason == "wrong_slot"
    assert v.decide(ticket("E", expires=NOW.timestamp() - 1)).reason == "expired"
    forged = ticket("F")[:-6] + "AAAAAA"
    assert v.decide(forged).reason == "bad_signature"
    other = sign(Ticket("G", "westlake", "2026-11-22", "10:00-11:00", 1, 2e9), Ed25519PrivateKey.generate())
    assert v.decide(other).reason == "bad_signature"
    assert v.decide("hello").reason == "bad_format"
    assert v.decide(ticket("H", party=3)).reason == "capacity"  # A (1 person) is let in but not through yet
    site.capacity.inside = 2
    assert v.decide(ticket("I", party=2)).reason == "capacity"
    used.mark("J", "g1")
    used.close()
    again = UsedTickets(tmp_path / "g.db")  # anti-passback survives a reboot
    assert Validator("westlake", KEY.public_key(), again, Site("s", Capacity(10), "2026-11-22"),
                     lambda: NOW).decide(ticket("J")).reason == "already_used"


def test_capacity_thresholds_alert_once() -> None:
    c = Capacity(10)
    alerts = [c.passed(1, "in") for _ in range(10)]
    assert [a for a in alerts if a] == [[0.8], [0.9], [1.0]]
    assert not c.allows(1)
    c.passed(3, "out")  # down to 70%: well below 80
    assert c.allows(1) and c.passed(1, "in") == [0.8], "a genuine new rise alerts again"
    h = Capacity(100)
    assert h.passed(80, "in") == [0.8]
    h.passed(2, "out")  # 78%: within the hysteresis band
    assert h.passed(2, "in") == [], "hovering at the threshold does not flap"


def test_turnstile_frames_round_trip_and_crc() -> None:
    f = turnstile.open_cmd(7, turnstile.IN, 2)
    raw = f.encode()
    p = turnstile.StreamParser()
    assert p.feed(b"\x00\x13" + raw[:4]) == [] and p.feed(raw[4:] + b"\xff") == [f]
    bad = bytearray(raw)
    bad[-1] ^= 0xFF
    assert p.feed(bytes(bad)) == [] and p.bad == 1
    assert turnstile.crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value


def test_id_reader_frames_and_card() -> None:
    card = id_sim.Card("张三", "1", "01", "19491231", "北京市东城区", "11010519491231002X", "公安局", "20200101",
                       "20400101")
    raw = id_sim.read_answer(card)  # what the simulator sends, from its own encoder
    p = idreader.StreamParser()
    got = p.feed(b"noise" + raw[:20]) + p.feed(raw[20:])
    assert len(got) == 1 and got[0].ok and idreader.parse_card(got[0].data).id_number == card.id_number
    with pytest.raises(FrameError):
        idreader.parse_card(b"\x01\x00\x00")


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_fuzz_stream_parsers(data: bytes) -> None:
    for p in (idreader.StreamParser(), turnstile.StreamParser(), LineReader(64)):
        for i in range(0, len(data), 7):
            p.feed(data[i:i + 7])
    from edge_agent.drivers import display

    for line in data.split(b"\n"):
        try:
            cmd = display.parse(line.rstrip(b"\r"))
        except FrameError:
            continue
        assert cmd.op in ("T", "C", "B", "A", "N")


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_ticket_and_id_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text, KEY.public_key())
    idnumber.validate(text)


def test_scanner_lines() -> None:
    r = LineReader(max_len=10)
    assert r.feed(b"ABC\r\nDEF") == ["ABC"] and r.feed(b"\n") == ["DEF"]
    assert r.feed(b"\xff\xfe\n") == [] and r.bad == 1
    assert r.feed(b"X" * 30 + b"\nOK\n") == ["OK"] and r.bad == 2, "an over-long line is dropped whole"


def test_gate_over_a_pty_counts_only_confirmed_passes(tmp_path: Path) -> None:
    sim = TurnstileSim(pass_delay=0.01)
    clock = ManualClock()
    lane = GateLane(tmp_path / "g.db", KEY.public_key(), lambda: NOW, limit=100, pass_timeout_s=5,
                    mono=clock.monotonic)
    port = serial.Serial(sim.path, 115200, timeout=0.05)
    drv = TurnstileDriver(port, 1, lane.gate.on_turnstile).start()
    lane.gate.attach(drv)
    try:
        assert lane.gate.on_scan(ticket("P", party=2)).ok
        assert not lane.gate.on_scan(ticket("P", party=2)).ok
        wait_for(lambda: lane.kinds().count("gate.pass") == 2, 5, "two confirmed passes")
        assert lane.used.used("P") and lane.site.capacity.inside == 2
        sim.walk_through = False  # the visitor does not go through
        assert lane.gate.on_scan(ticket("Q")).ok
        lane.gate.expire()
        assert not lane.gate.on_scan(ticket("Q")).ok, "still opened for Q: not released before its timeout"
        clock.advance(5.1)
        lane.gate.expire()
        assert not lane.used.used("Q") and lane.gate.on_scan(ticket("Q")).ok, "an unused opening releases the ticket"
        sim.alarm(2)
        wait_for(lambda: "gate.alarm" in lane.kinds(), 5, "alarm record")
    finally:
        drv.close()
        port.close()
        sim.close()
    kinds = lane.kinds()
    assert kinds.count("gate.decision") == 5 and kinds.count("gate.pass") == 2 and kinds.count("gate.not_passed") == 1
    assert UsedTickets(tmp_path / "g.db").load_inside(NOW.date().isoformat()) == 2, "the count is persisted"

"""Smart-toilet role against a simulated RS-485 bus of Modbus RTU slaves (pymodbus on a real pty)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_agent.core.ports import Context
from edge_agent.records import DataClass
from edge_agent.sim.display import DisplaySim
from edge_agent.sim.modbus import ModbusSim
from edge_agent.sim.scanner import ScannerSim
from edge_agent.store import Outbox
from edge_agent.toilet import profiles
from edge_agent.toilet.config import ToiletRoleConfig
from edge_agent.toilet.role import ToiletRole
from edge_agent.toilet.rules import M_NH3, Limits, Rules, ppm_to_mg_m3
from tests.helpers import outbox_records, wait_for


def test_profiles_decode_scale_sign_and_32_bit() -> None:
    p = profiles.builtin()
    t = p["xy-md02"].registers[0]
    assert profiles.decode(t, [0xFFCC]) == -5.2 and profiles.decode(t, [251]) == 25.1
    total = p["generic-counter"].registers[0]
    assert profiles.decode(total, [1, 2]) == 65538
    extra = profiles.load({"my-nh3": {"registers": [{"name": "nh3_ppm", "function": 4, "address": 0, "scale": 0.1}]}})
    assert extra["my-nh3"].registers[0].scale == 0.1 and "xy-md02" in extra
    with pytest.raises(ValueError):
        profiles.load({"bad": {"registers": [{"name": "x", "function": 6, "address": 0}]}})


def test_rules_odour_debounce_stall_leak_consumables_and_cleaning() -> None:
    r = Rules(Limits(nh3_mg_m3=1.0, debounce_s=60, stall_max_s=600))
    limit_ppm = 1.0 * 24.45 / M_NH3
    assert abs(ppm_to_mg_m3(limit_ppm, M_NH3) - 1.0) < 1e-9
    assert r.evaluate(0, {"nh3_ppm": limit_ppm * 1.5}, {}, {}, {}) == []  # not yet: debounce
    assert r.evaluate(30, {"nh3_ppm": limit_ppm * 0.5}, {}, {}, {}) == []  # back under: restart
    assert r.evaluate(40, {"nh3_ppm": limit_ppm * 1.5}, {}, {}, {}) == []
    assert [k for _, k, _ in r.evaluate(101, {"nh3_ppm": limit_ppm * 1.5}, {}, {}, {})] == ["odour:nh3"]
    assert r.evaluate(200, {"nh3_ppm": limit_ppm * 1.5}, {}, {}, {}) == []  # raised once
    got = r.evaluate(300, {}, {"s1": True}, {"floor": True}, {"paper": True})
    assert sorted(k for _, k, _ in got) == ["consumable_low:paper", "leak:floor"]
    assert [k for _, k, _ in r.evaluate(901, {}, {"s1": True}, {}, {})] == ["stall_long:s1"]
    assert r.cleaned() == ["consumable_low:paper", "leak:floor", "odour:nh3", "stall_long:s1"]
    assert r.active == {}


def _bus() -> ModbusSim:
    sim = ModbusSim(echo=True)  # a 2-wire adapter that echoes every request
    sim.set(1, 4, 1, 231)  # 23.1 °C
    sim.set(1, 4, 2, 612)  # 61.2 %RH
    sim.set(2, 3, 6, 40)  # NH3 0.40 ppm (0.28 mg/m³: fine)
    for i in range(8):
        sim.set(10, 2, i, 0)
    sim.set(20, 3, 0, 0)
    sim.set(20, 3, 1, 100)
    return sim


def test_toilet_role_polls_alerts_cleans_and_shows_free_stalls(tmp_path: Path) -> None:
    sim, disp, tags = _bus(), DisplaySim(), ScannerSim()
    cfg = ToiletRoleConfig.model_validate({
        "type": "toilet", "port": sim.path, "echo": True, "poll_s": 0.1, "air_interval_s": 0.5, "timeout_s": 0.2,
        "fail_after": 2, "limits": {"debounce_s": 0, "stall_max_s": 1},
        "sensors": [{"name": "th", "profile": "xy-md02"}, {"name": "nh3", "profile": "generic-nh3"},
                    {"name": "h2s", "profile": "generic-h2s", "address": 33},  # not on the bus
                    {"name": "di", "profile": "generic-di8"}, {"name": "flow", "profile": "generic-counter"}],
        "stalls": {"s1": {"sensor": "di", "point": "di0"}, "s2": {"sensor": "di", "point": "di1"}},
        "leaks": {"floor": {"sensor": "di", "point": "di6"}},
        "consumables": {"paper": {"sensor": "di", "point": "di7", "invert": True}},
        "flow": {"sensor": "flow", "point": "visitors_total"},
        "staff_reader": tags.path, "display": {"port": disp.path}})
    sim.set(10, 2, 7, 1)  # paper level switch: 1 = enough (active-low "low" input)
    stop = threading.Event()
    ob = Outbox(tmp_path / "o.db")
    role = ToiletRole(cfg, Context(ob))
    t = threading.Thread(target=role.run, args=(stop,))
    t.start()

    def records(cls: DataClass, kind: str) -> list[dict[str, Any]]:
        return outbox_records(ob, cls, kind)

    try:
        wait_for(lambda: "空位 2/2" in disp.text(), 10, "display: both stalls free")
        sim.set(10, 2, 0, 1)  # someone enters stall 1 …
        wait_for(lambda: "空位 1/2" in disp.text(), 10, "display: one free")
        wait_for(lambda: any(a["alert"] == "stall_long:s1" for a in records(DataClass.TRANSACTION, "toilet.alert")),
                 10, "stall occupied too long")
        sim.set(2, 3, 6, 400)  # NH3 4 ppm = 2.8 mg/m³
        sim.set(10, 2, 6, 1)  # water on the floor
        sim.set(10, 2, 7, 0)  # paper low
        sim.set(20, 3, 1, 137)  # 37 visitors counted
        wait_for(lambda: {"odour:nh3", "leak:floor", "consumable_low:paper"}
                 <= {a["alert"] for a in records(DataClass.TRANSACTION, "toilet.alert")}, 10, "alerts")
        wait_for(lambda: any(f["visitors"] == 37 for f in records(DataClass.MEASUREMENT, "toilet.flow")), 10, "flow")
        for fix in ((2, 3, 6, 40), (10, 2, 6, 0), (10, 2, 7, 1), (10, 2, 0, 0)):
            sim.set(*fix)
        tags.scan("STAFF:cleaner-07")  # the cleaner taps their tag
        wait_for(lambda: records(DataClass.TRANSACTION, "toilet.cleaned"), 10, "cleaning recorded")
    finally:
        stop.set()
        t.join(10)
        for s in (sim, disp, tags):
            s.close()
    cleaned = records(DataClass.TRANSACTION, "toilet.cleaned")[0]
    assert cleaned["staff"] == "cleaner-07"
    assert {"odour:nh3", "leak:floor", "consumable_low:paper", "stall_long:s1"} <= set(cleaned["cleared"])
    events = [(a["event"], a["alert"]) for a in records(DataClass.TRANSACTION, "toilet.alert")]
    assert events.count(("raised", "leak:floor")) == 1 and ("cleared", "leak:floor") in events
    air = records(DataClass.MEASUREMENT, "toilet.air")[0]
    assert air["temperature_c"] == 23.1 and air["humidity_pct"] == 61.2 and air["nh3_ppm"] == 0.4
    sensors = {s["sensor"]: s["available"] for s in records(DataClass.STATE, "toilet.sensor")}
    assert sensors["h2s"] is False and sensors["th"] is True  # the absent one is reported, not fatal
    ob.close()


def test_unknown_profile_or_register_is_a_clear_error(tmp_path: Path) -> None:
    base = {"type": "toilet", "port": "loop://", "sensors": [{"name": "th", "profile": "xy-md02"}]}
    with Outbox(tmp_path / "o.db") as ob:
        with pytest.raises(ValueError, match="unknown profile"):
            ToiletRole(ToiletRoleConfig.model_validate({**base, "sensors": [{"name": "x", "profile": "nope"}]}),
                       Context(ob))
        with pytest.raises(ValueError, match="no register"):
            ToiletRole(ToiletRoleConfig.model_validate({**base, "stalls": {"s1": {"sensor": "th", "point": "di0"}}}),
                       Context(ob))


@given(st.binary(max_size=200))
@example(b"\x9b]")  # found by hypothesis: with the request's first 6 bytes it forms a CRC-valid frame
@settings(max_examples=200, deadline=None)
def test_fuzz_modbus_simulator_frame_sync(data: bytes) -> None:
    """Noise on the bus: the slave only ever answers CRC-valid frames, and a master's retry after noise is
    answered. (RTU has no sync byte: noise ending in a CRC-valid 8-byte window can swallow the first try, as
    on a real bus, where the master times out and repeats.)"""
    from edge_agent.drivers.turnstile import crc16
    from edge_agent.sim.modbus import with_crc

    sim = ModbusSim.__new__(ModbusSim)
    sim.buf, sim.requests, sim.echo, sim.delay, sim.devices = bytearray(), 0, False, 0.0, {}
    answered: list[bytes] = []
    sim._answer = answered.append  # type: ignore[method-assign]
    request = with_crc(bytes([1, 3, 0, 0, 0, 1]))
    sim.on_bytes(data + request)
    sim.on_bytes(request)  # the retry
    assert all(crc16(a[:6]) == int.from_bytes(a[6:8], "little") for a in answered)
    assert answered and answered[-1] == request

"""Device checks a technician runs at install time (`--hw PROFILE`), and CI runs against simulators."""

from __future__ import annotations

from typing import Any

import pytest
import serial

from edge_agent.drivers import DeviceTimeout, display, idreader
from edge_agent.drivers import turnstile as ts
from edge_agent.drivers.turnstile import TurnstileDriver
from tests.helpers import Heard


def _port(settings: dict[str, Any], baud: int) -> serial.Serial:
    return serial.serial_for_url(settings["port"], baudrate=settings.get("baud", baud), timeout=0.05)


@pytest.mark.turnstile
def test_turnstile_answers_status_and_open(device: tuple[dict[str, Any], Any]) -> None:
    settings, sim = device
    events = Heard()
    drv = TurnstileDriver(_port(settings, 9600), settings.get("addr", 1), events).start()
    try:
        drv.port.write(ts.Frame(drv.addr, ts.STATUS, b"").encode())
        assert events.wait(lambda e: e.cmd == ts.STATUS_REPORT, 2), "no STATUS_REPORT within 2 s"
        drv.open(ts.IN, 1, timeout=2)  # ACK required; a real gate opens once for one person
        if sim is not None:
            assert sim.opens[-1][1:] == (ts.IN, 1)
    finally:
        drv.close()


@pytest.mark.display
def test_display_accepts_occupancy_text(device: tuple[dict[str, Any], Any]) -> None:
    settings, sim = device
    d = display.Display(_port(settings, 9600), expect_ack=settings.get("ack", True), timeout_s=1)
    assert d.show(display.occupancy_rows(123, 500, False)) == 2
    if sim is not None:
        assert sim.rows[0][0] == "在园 123/500"


@pytest.mark.idreader
def test_id_reader_answers_find(device: tuple[dict[str, Any], Any]) -> None:
    settings, sim = device
    reader = idreader.Reader(_port(settings, 115200), timeout_s=1)
    try:
        card = reader.poll()  # no card placed: None, but the reader must answer
    except DeviceTimeout:
        pytest.fail("ID reader did not answer FIND within 1 s (wiring, baud rate, power?)")
    assert card is None or len(card.id_number) == 18


@pytest.mark.modbus
def test_modbus_sensor_reads(device: tuple[dict[str, Any], Any]) -> None:
    from edge_agent.toilet.modbus import Bus, Sensor
    from edge_agent.toilet.profiles import load

    settings, sim = device
    want = settings.get("sensor", {"profile": "xy-md02", "address": 1})
    profile = load()[want["profile"]]
    if sim is not None:
        for r in profile.registers:
            for w in range(r.words):
                sim.set(want["address"], r.function, r.address + w, 1)
    bus = Bus(settings["port"], settings.get("baud", profile.baud), profile.parity, timeout_s=0.5,
              echo=settings.get("echo", False))
    try:
        s = Sensor("hil", profile, want["address"])
        bus.poll(s, fail_after=1)
        assert s.available, f"sensor did not answer: {s.last_error}"
        assert set(s.values) == {r.name for r in profile.registers}
    finally:
        bus.close()


@pytest.mark.contact
def test_contact_turnstile_pulses_the_relay_and_sees_the_pass(device: tuple[dict[str, Any], Any]) -> None:
    from edge_agent.drivers.gpio import open_line
    from edge_agent.drivers.turnstile import DryContactTurnstile

    settings, sim = device
    passed = Heard()
    relay = open_line(settings["relay"], True, settings.get("relay_active_low", False))
    sensor = open_line(settings["sensor"], False, settings.get("sensor_active_low", True))
    gate = DryContactTurnstile(relay, sensor, passed, pulse_s=settings.get("pulse_s", 0.2)).start()
    try:
        gate.open(ts.IN, 1)
        assert passed.wait(lambda f: True, 5), "no pass-sensor edge within 5 s of the relay pulse"
        assert [f.cmd for f in passed.items] == [ts.PASSED]
        if sim is not None:
            assert sim.relay.pulses == 1 and sim.relay.value is False
    finally:
        gate.close()


@pytest.mark.node
def test_sensor_node_reads_its_doors_and_air(device: tuple[dict[str, Any], Any], tmp_path: Any) -> None:
    """A flashed ESP32 node (profile [node] port = ...; needs mpremote) or, by default, the firmware under
    the MicroPython unix port with its fake hardware."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    settings, sim = device
    check = Path(__file__).resolve().parents[1] / "firmware" / "tests" / "check_board.py"
    if sim is None:
        mpremote = shutil.which("mpremote")
        if mpremote is None:
            pytest.skip("mpremote not installed: cannot reach the node on the bench")
        argv = [mpremote, "connect", settings["port"], "run", str(check)]
    else:
        argv = [sim["micropython"], str(check)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env=None if sim is None else sim["env"])
    line = next((x for x in r.stdout.splitlines() if x.startswith("BOARD ")), None)
    assert r.returncode == 0 and line, r.stdout + r.stderr
    got = json.loads(line[6:])
    assert got["doors"] == settings.get("doors", got["doors"]) and len(got["doors"]) >= 1
    for key in settings.get("air", ["t_c", "rh", "nh3_ppm"]):  # what this node has wired
        assert key in got["air"], f"{key} missing from {got['air']}"

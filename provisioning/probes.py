"""One question per serial device, asked with the project's own drivers: does it answer?

Each probe returns (PASS|FAIL, detail) and raises only for a port that cannot be opened (the self-test
turns that into a FAIL naming the port).
"""

from __future__ import annotations

import time
from typing import Any

from edge_agent.drivers import DeviceTimeout, FrameError
from edge_agent.drivers import turnstile as ts
from edge_agent.drivers.serialio import open_port, read_available
from edge_agent.toilet.config import ToiletRoleConfig


def _closing(port: Any) -> Any:
    from contextlib import closing

    return closing(port)


def turnstile(url: str, baud: int, addr: int, timeout_s: float) -> tuple[str, str]:
    """STATUS → STATUS_REPORT from the controller at `addr` (docs/turnstile-protocol.md)."""
    with _closing(open_port(url, baud)) as port:
        parser = ts.StreamParser()
        port.write(ts.Frame(addr, ts.STATUS, b"").encode())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for f in parser.feed(read_available(port)):
                if f.addr == addr and f.cmd == ts.STATUS_REPORT and len(f.payload) >= 2:
                    state, alarm = f.payload[0], f.payload[1]
                    return ("PASS" if not alarm else "FAIL"), f"{url}: state {state}, alarm {alarm}"
    return "FAIL", f"{url}: no STATUS_REPORT from controller {addr} in {timeout_s:.0f} s (wiring, address, baud?)"


def idreader(url: str, baud: int, timeout_s: float) -> tuple[str, str]:
    """Ask for a card: 'no card' is a good answer."""
    from edge_agent.drivers.idreader import Reader

    with _closing(open_port(url, baud)) as port:
        try:
            card = Reader(port, timeout_s).poll()
        except DeviceTimeout:
            return "FAIL", f"{url}: the ID reader did not answer (power, wiring, baud?)"
        except FrameError as err:
            return "PASS", f"{url}: answered (the card on it is unreadable: {err})"
    return "PASS", f"{url}: answered ({'a card is on the reader' if card else 'no card'})"


def display(url: str, baud: int, ack: bool, timeout_s: float) -> tuple[str, str]:
    """Clear the board; a board that acknowledges must say $A."""
    from edge_agent.drivers.display import Display

    with _closing(open_port(url, baud)) as port:
        try:
            Display(port, expect_ack=ack, timeout_s=timeout_s).clear()
        except (DeviceTimeout, FrameError) as err:
            return "FAIL", f"{url}: {err}"
    return "PASS", f"{url}: {'acknowledged' if ack else 'written (write-only board)'}"


def opens(url: str, baud: int) -> tuple[str, str]:
    """Push-only devices (QR scanners, tag readers) say nothing until used: the port must at least open."""
    with _closing(open_port(url, baud)):
        pass
    return "PASS", f"{url}: opens (push-only device: scan a code to see it in the agent's log)"


def modbus(cfg: ToiletRoleConfig) -> tuple[str, str]:
    """Read every configured sensor once."""
    from edge_agent.toilet import profiles
    from edge_agent.toilet.modbus import Bus, Sensor

    known = profiles.load(cfg.profiles)
    sensors = [Sensor(s.name, known[s.profile], s.address or known[s.profile].default_address) for s in cfg.sensors]
    first = sensors[0].profile
    bus = Bus(cfg.port or "", cfg.baud or first.baud, cfg.parity or first.parity, cfg.timeout_s, cfg.retries,
              cfg.echo)
    try:
        for s in sensors:
            bus.poll(s, fail_after=1)
    finally:
        bus.close()
    dead = [f"{s.name} ({s.last_error})" for s in sensors if not s.available]
    if dead:
        return "FAIL", f"{cfg.port}: no answer from {', '.join(dead)}"
    return "PASS", f"{cfg.port}: {len(sensors)} sensor(s) answered"

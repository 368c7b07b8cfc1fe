"""Turnstile controller protocol (RS-485), defined by this project — see docs/turnstile-protocol.md (its worked
example is pinned in tests/test_protocols.py).

Frame: 0x55 0xAA | ADDR | CMD | LEN | PAYLOAD (LEN bytes) | CRC16/MODBUS of ADDR..PAYLOAD, little-endian.
Host → controller: OPEN (dir, persons), STATUS, RESET_ALARM. Controller → host: ACK (echoes the command
with a result), STATUS_REPORT, PASSED (dir, remaining), ALARM (code). A pass counts only on PASSED.

Two drivers give the gate the same events (Frame) through `on_event`: TurnstileDriver on a serial port it did not
open, and DryContactTurnstile on two GPIO lines (relay, pass sensor). Neither starts a thread before `start()`;
`open()` raises DeviceTimeout when the controller does not acknowledge, ValueError for bad arguments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.drivers import DeviceTimeout, resync
from edge_agent.drivers.gpio import GpioLine
from edge_agent.drivers.serialio import read_available

logger = logging.getLogger(__name__)

SYNC = b"\x55\xaa"
OPEN, STATUS, RESET_ALARM = 0x01, 0x02, 0x03
ACK, STATUS_REPORT, PASSED, ALARM = 0x81, 0x82, 0x83, 0x84
IN, OUT = 0, 1
MAX_PAYLOAD = 32
ALARMS = {1: "forced entry", 2: "tailgating", 3: "reverse passage", 4: "motor fault", 5: "emergency open"}


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@dataclass(frozen=True)
class Frame:
    addr: int
    cmd: int
    payload: bytes

    def encode(self) -> bytes:
        if not 0 <= self.addr <= 255 or not 0 <= self.cmd <= 255 or len(self.payload) > MAX_PAYLOAD:
            raise ValueError("address/command must be bytes and the payload at most 32 bytes")
        body = bytes([self.addr, self.cmd, len(self.payload)]) + self.payload
        return SYNC + body + crc16(body).to_bytes(2, "little")


def open_cmd(addr: int, direction: int, persons: int = 1) -> Frame:
    if direction not in (IN, OUT) or not 1 <= persons <= 10:
        raise ValueError("direction IN/OUT and 1..10 persons")
    return Frame(addr, OPEN, bytes([direction, persons]))


class StreamParser:
    """Bytes in, frames out; resynchronises on noise, counts CRC and length failures."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        self.buf += chunk
        out: list[Frame] = []
        while True:
            if not resync(self.buf, SYNC) or len(self.buf) < 5:
                return out
            n = self.buf[4]
            if n > MAX_PAYLOAD:
                self.bad += 1
                del self.buf[:1]
                continue
            if len(self.buf) < 7 + n:
                return out
            body = bytes(self.buf[2:5 + n])
            crc = int.from_bytes(self.buf[5 + n:7 + n], "little")
            if crc16(body) != crc:
                self.bad += 1
                del self.buf[:1]
                continue
            del self.buf[:7 + n]
            out.append(Frame(body[0], body[1], body[3:]))


class TurnstileDriver:
    """An RS-485 turnstile controller at `addr` on a serial-like port; a reader thread after start()."""

    def __init__(self, port: Any, addr: int = 1, on_event: Callable[[Frame], None] | None = None) -> None:
        self.port, self.addr, self.on_event = port, addr, on_event
        self.parser = StreamParser()
        self._acks: dict[int, threading.Event] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="turnstile-rx", daemon=True)

    def start(self) -> TurnstileDriver:
        self._thread.start()
        return self

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = read_available(self.port)
            except Exception as err:  # unplugged adapter: report and retry, do not die
                logger.error("turnstile port error: %s", err)
                self._stop.wait(1)
                continue
            for f in self.parser.feed(chunk):
                if f.addr != self.addr:
                    continue
                if f.cmd == ACK and f.payload[:1]:
                    ev = self._acks.get(f.payload[0])
                    if ev:
                        ev.set()
                elif self.on_event:
                    self.on_event(f)

    def open(self, direction: int, persons: int, timeout: float = 0.5) -> None:
        ev = self._acks[OPEN] = threading.Event()
        self.port.write(open_cmd(self.addr, direction, persons).encode())
        if not ev.wait(timeout):
            raise DeviceTimeout("turnstile did not acknowledge OPEN")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1)


class DryContactTurnstile:
    """Fallback for turnstiles with only a relay input and a pass-sensor contact: pulse the relay once
    per person, and count a pass on each rising edge of the sensor. Same events as the serial driver."""

    def __init__(self, relay: GpioLine, sensor: GpioLine, on_event: Callable[[Frame], None] | None = None,
                 pulse_s: float = 0.2) -> None:
        self.relay, self.sensor, self.on_event, self.pulse_s = relay, sensor, on_event, pulse_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="contact-rx", daemon=True)

    def start(self) -> DryContactTurnstile:
        self._thread.start()
        return self

    def open(self, direction: int, persons: int, timeout: float = 0.5) -> None:
        if direction != IN:
            raise ValueError("a dry-contact turnstile opens for entry only")
        for _ in range(persons):
            self.relay.set(True)
            self._stop.wait(self.pulse_s)
            self.relay.set(False)

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self.sensor.wait_edge(0.1) and self.on_event:
                self.on_event(Frame(0, PASSED, bytes([IN, 0])))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1)
        self.relay.set(False)
        for line in (self.relay, self.sensor):
            release = getattr(line, "close", None)  # libgpiod requests are released; simulators have none
            if release is not None:
                release()

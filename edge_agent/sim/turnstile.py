"""Turnstile controller simulator speaking docs/turnstile-protocol.md on the master side of a pty.

Frame: 55 AA | ADDR | CMD | LEN | PAYLOAD | CRC-16/MODBUS of ADDR..PAYLOAD (low byte first). It answers OPEN with
ACK and, when someone walks through, one PASSED per person; STATUS with STATUS_REPORT; a frame with a bad CRC or
another address is ignored, as on a shared RS-485 bus.
"""

from __future__ import annotations

import threading
import time

from edge_agent.sim.base import PtyDevice
from edge_agent.sim.codec import crc16_modbus

SYNC = b"\x55\xaa"
OPEN, STATUS = 0x01, 0x02
ACK, STATUS_REPORT, PASSED, ALARM = 0x81, 0x82, 0x83, 0x84


def frame(addr: int, cmd: int, payload: bytes) -> bytes:
    body = bytes([addr, cmd, len(payload)]) + payload
    return SYNC + body + crc16_modbus(body)


class TurnstileSim(PtyDevice):
    def __init__(self, addr: int = 1, pass_delay: float = 0.0, walk_through: bool = True) -> None:
        self.addr, self.pass_delay, self.walk_through = addr, pass_delay, walk_through
        self.buf = bytearray()
        self.opens: list[tuple[float, int, int]] = []  # (time received, dir, persons)
        super().__init__()

    def _send(self, cmd: int, payload: bytes) -> None:
        self.pty.write(frame(self.addr, cmd, payload))

    def on_bytes(self, chunk: bytes) -> None:
        self.buf += chunk
        while (i := self.buf.find(SYNC)) >= 0 and len(self.buf) >= i + 5:
            del self.buf[:i]
            n = self.buf[4]
            if len(self.buf) < 7 + n:
                return
            body, crc = bytes(self.buf[2:5 + n]), bytes(self.buf[5 + n:7 + n])
            if crc != crc16_modbus(body):
                del self.buf[:1]  # noise that looked like a start: look for the next one
                continue
            del self.buf[:7 + n]
            self._handle(body[0], body[1], body[3:])

    def _handle(self, addr: int, cmd: int, payload: bytes) -> None:
        if addr != self.addr:
            return  # another controller on the RS-485 bus
        if cmd == OPEN and len(payload) == 2:
            self.opens.append((time.perf_counter(), payload[0], payload[1]))
            self._send(ACK, bytes([OPEN, 0]))
            if self.walk_through:
                threading.Thread(target=self._walk, args=(payload[0], payload[1]), daemon=True).start()
        elif cmd == STATUS:
            self._send(STATUS_REPORT, bytes([0, 0]))

    def _walk(self, direction: int, persons: int) -> None:
        for left in range(persons - 1, -1, -1):
            if self._stop.wait(self.pass_delay):
                return  # switched off while people were walking through
            self._send(PASSED, bytes([direction, left]))

    def alarm(self, code: int) -> None:
        self._send(ALARM, bytes([code]))

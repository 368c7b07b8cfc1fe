"""Turnstile controller protocol (RS-485), defined by this project — see docs/turnstile-protocol.md.

Frame: 0x55 0xAA | ADDR | CMD | LEN | PAYLOAD (LEN bytes) | CRC16/MODBUS of ADDR..PAYLOAD, little-endian.
Host → controller: OPEN (dir, persons), STATUS, RESET_ALARM. Controller → host: ACK (echoes the command
with a result), STATUS_REPORT, PASSED (dir, remaining), ALARM (code). A pass counts only on PASSED.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.drivers import resync

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

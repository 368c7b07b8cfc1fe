"""Key-card dispenser/encoder of the CRT-591 family (Creator CRT-591, QUIO QU-TK-F3x) over RS-232.

Frames (QU-TK-F3 Series Communication Protocol v1.03, 2019-01-10, §3):
    host → unit   F2 ADDR LENH LENL 'C' CM PM DATA… 03 BCC
    unit → host   F2 ADDR LENH LENL 'P' CM PM st0 st1 st2 DATA… 03 BCC     (done)
                  F2 ADDR LENH LENL 'N' CM PM e1 e0 DATA… 03 BCC           (refused / failed)
LEN counts the text ('C'/'P'/'N' … last data byte); BCC is the XOR of every byte from STX to ETX.
Procedure (§5): the unit answers a good command with ACK (06) at once, a bad one with NAK (15); it sends
the response when the motion is done and the host confirms it with ACK. No ACK within 300 ms: send again.

Status (§9.2): st0 card channel ('0' empty, '1' card held at the gate, '2' card at the RF/IC position),
st1 stacker ('0' empty, '1' few cards, '2' enough), st2 error-card bin ('0' not full, '1' full).

Raised: DeviceUnavailable (no answer, port gone), DeviceFault(code) with code one of card_jam,
hopper_empty, bin_full, no_card, rf_error, write_failed, dispenser_error (other e1e0 codes).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from edge_agent.drivers import resync, xor
from edge_agent.drivers.serialio import read_available
from edge_agent.kiosk import DeviceFault, DeviceUnavailable

logger = logging.getLogger(__name__)

STX, ETX, ACK, NAK, EOT = 0xF2, 0x03, 0x06, 0x15, 0x04
MAX_TEXT = 1024
# Commands (CM) and parameters (PM)
RESET, STATUS, MOVE, INSERT, RF = 0x30, 0x31, 0x32, 0x33, 0x60
KEEP_CARD = 0x33  # reset without moving a card that is in the channel
TO_GATE, TO_RF, TO_BIN, EJECT = 0x30, 0x32, 0x33, 0x39
RF_ACTIVATE, RF_DEACTIVATE, RF_MIFARE = 0x30, 0x31, 0x33
MF_VERIFY_KEY, MF_READ, MF_WRITE = 0x20, 0xB0, 0xD1
SW_OK = b"\x90\x00"
# e1e0 (ASCII) → the names the kiosk uses; the rest map to dispenser_error
ERRORS = {b"10": "card_jam", b"A0": "hopper_empty", b"A1": "bin_full", b"50": "bin_full"}


def frame(cm: int, pm: int, data: bytes = b"", addr: int = 0, head: bytes = b"C") -> bytes:
    """A command (head 'C') or response ('P'/'N') frame with its length and BCC."""
    text = head + bytes([cm, pm]) + data
    if len(text) > MAX_TEXT:
        raise ValueError(f"frame text of {len(text)} bytes is over {MAX_TEXT}")
    body = bytes([STX, addr]) + len(text).to_bytes(2, "big") + text + bytes([ETX])
    return body + bytes([xor(body)])


@dataclass(frozen=True)
class Packet:
    head: str  # 'C', 'P' or 'N'
    cm: int
    pm: int
    data: bytes  # after CM PM: st0 st1 st2 + data ('P'), e1 e0 + data ('N'), data ('C')

    @property
    def status(self) -> Status:
        return Status.parse(self.data[:3])

    @property
    def error(self) -> bytes:
        return self.data[:2]


@dataclass(frozen=True)
class Status:
    channel: str  # 'empty', 'gate', 'rf'
    stacker: str  # 'empty', 'low', 'ok'
    bin_full: bool

    @staticmethod
    def parse(st: bytes) -> Status:
        if len(st) < 3:
            raise DeviceFault("dispenser_error", "status bytes missing")
        channel = {0x30: "empty", 0x31: "gate", 0x32: "rf"}.get(st[0], "unknown")
        stacker = {0x30: "empty", 0x31: "low", 0x32: "ok"}.get(st[1], "unknown")
        return Status(channel, stacker, st[2] == 0x31)


class Parser:
    """Bytes in, control bytes (ACK/NAK/EOT as ints) and packets out; noise and bad BCCs are skipped
    and counted in `bad`."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad = 0

    def feed(self, chunk: bytes) -> list[int | Packet]:
        self.buf += chunk
        out: list[int | Packet] = []
        while self.buf:
            if self.buf[0] in (ACK, NAK, EOT):
                out.append(self.buf.pop(0))
                continue
            if self.buf[0] != STX:
                self._skip_noise()
                continue
            if len(self.buf) < 4:
                return out
            n = int.from_bytes(self.buf[2:4], "big")
            if not 3 <= n <= MAX_TEXT:
                self.bad += 1
                del self.buf[:1]
                continue
            if len(self.buf) < n + 6:
                return out
            raw = bytes(self.buf[: n + 6])
            if raw[-2] != ETX or xor(raw[:-1]) != raw[-1] or chr(raw[4]) not in "CPN":
                self.bad += 1
                del self.buf[:1]
                continue
            del self.buf[: n + 6]
            out.append(Packet(chr(raw[4]), raw[5], raw[6], raw[7:-2]))
        return out

    def _skip_noise(self) -> None:
        self.bad += 1
        i = min((j for j in (self.buf.find(bytes([c])) for c in (STX, ACK, NAK, EOT)) if j >= 0), default=-1)
        if i < 0:
            self.buf.clear()
        else:
            resync(self.buf, bytes(self.buf[i:i + 1]))


class Crt591:
    """Host side on a serial-like port it did not open; one command at a time."""

    def __init__(self, port: Any, addr: int = 0, ack_timeout_s: float = 0.3, tries: int = 3) -> None:
        self.port, self.addr = port, addr
        self.ack_timeout, self.tries = ack_timeout_s, tries
        self.parser = Parser()
        self.pending: deque[int | Packet] = deque()

    def command(self, cm: int, pm: int, data: bytes = b"", timeout_s: float = 5.0) -> Packet:
        """Send, wait for ACK (resending up to `tries` times), then the response; confirm it with ACK.
        A negative response raises DeviceFault."""
        raw = frame(cm, pm, data, self.addr)
        self.pending.clear()  # a late answer to an earlier command must not be taken for this one's
        try:
            for _ in range(self.tries):
                self.port.write(raw)
                got = self._next(self.ack_timeout)
                if got == ACK:
                    break
            else:
                raise DeviceUnavailable(f"dispenser did not acknowledge command {cm:02X} {pm:02X}")
            reply = self._next(timeout_s)
            if not isinstance(reply, Packet):
                raise DeviceUnavailable(f"dispenser sent no response to {cm:02X} {pm:02X}")
            self.port.write(bytes([ACK]))
        except OSError as err:
            raise DeviceUnavailable(f"dispenser port: {err}") from err
        if reply.head == "N":
            code = ERRORS.get(reply.error, "dispenser_error")
            raise DeviceFault(code, f"e1e0={reply.error.decode('ascii', 'replace')} on {cm:02X} {pm:02X}")
        return reply

    def _next(self, timeout: float) -> int | Packet | None:
        deadline = time.monotonic() + timeout
        while not self.pending and time.monotonic() < deadline:
            self.pending.extend(self.parser.feed(read_available(self.port)))
        return self.pending.popleft() if self.pending else None

    # ------------------------------------------------------------------ commands

    def reset(self) -> Status:
        return self.command(RESET, KEEP_CARD).status

    def status(self) -> Status:
        return self.command(STATUS, 0x30).status

    def move(self, where: int) -> Status:
        return self.command(MOVE, where, timeout_s=8.0).status

    def allow_insert(self, allow: bool) -> None:
        self.command(INSERT, 0x30 if allow else 0x31)

    def activate(self) -> bytes:
        """Power the RF field and select the card: its UID (Mifare: Rtype ATQA UID_len UID SAK)."""
        data = self.command(RF, RF_ACTIVATE, b"\x41\x42").data[3:]
        if len(data) < 4 or len(data) < 4 + data[3]:
            raise DeviceFault("rf_error", "short activation answer")
        return data[4:4 + data[3]]

    def deactivate(self) -> None:
        self.command(RF, RF_DEACTIVATE)

    def mifare(self, apdu: bytes) -> bytes:
        """One Mifare operation (§9.10.4); its answer data without the status word (DeviceFault on sw≠9000)."""
        data = self.command(RF, RF_MIFARE, apdu).data[3:]
        if data[-2:] != SW_OK:
            raise DeviceFault("write_failed" if apdu[1] == MF_WRITE else "rf_error", f"sw={data[-2:].hex()}")
        return data[:-2]

    def verify_key(self, sector: int, key: bytes, key_b: bool = False) -> None:
        self.mifare(bytes([0x00, MF_VERIFY_KEY, 0x01 if key_b else 0x00, sector, len(key)]) + key)

    def read_blocks(self, sector: int, block: int, count: int) -> bytes:
        return self.mifare(bytes([0x00, MF_READ, sector, block, count]))

    def write_blocks(self, sector: int, block: int, data: bytes) -> None:
        if len(data) % 16:
            raise ValueError("Mifare blocks are 16 bytes")
        self.mifare(bytes([0x00, MF_WRITE, sector, block, len(data) // 16]) + data)

"""Chinese 2nd-generation ID card reader (the SAM module protocol of GA 467-style readers) over serial.

As the vendors document it ("身份证阅读器模块SAM通讯协议", pinned in tests/test_protocols.py):
    host → reader: AA AA AA 96 69 | LEN (2, big-endian) | CMD | PARA | data | CHK
    reader → host: AA AA AA 96 69 | LEN (2, big-endian) | SW1 SW2 SW3 | data | CHK
LEN counts every byte after it, CHK included; CHK is the XOR of LEN through the last data byte. A card is read
in three steps: FIND (20 01; SW3 9F = found, 80 = no card), SELECT (20 02; 90 = selected, 81 = not), READ
(30 01; 90 = success) which returns [text len 2][photo len 2][text (UCS-2 LE)][photo (WLT from the chip; some
readers deliver JPEG/BMP)]. The photo is handed over in memory (IdCard.photo) and never written anywhere by this
module. Raises DeviceTimeout (no answer) and FrameError (a status the step does not expect, a card block that
does not decode).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge_agent.drivers import DeviceTimeout, FrameError, resync, xor
from edge_agent.drivers.serialio import read_available

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
OK = b"\x00\x00\x90"
FOUND, NO_CARD, NOT_SELECTED = 0x9F, 0x80, 0x81  # SW3 of FIND and SELECT
MAX_LEN = 4096
CMD_FIND, CMD_SELECT, CMD_READ = b"\x20\x01", b"\x20\x02", b"\x30\x01"  # CMD, PARA
# Text block layout in bytes (UCS-2 LE): name, sex, nation, birth, address, id, issuer, valid from/to.
FIELDS = (("name", 30), ("sex", 2), ("nation", 4), ("birth", 16), ("address", 70), ("id_number", 36),
          ("issuer", 30), ("valid_from", 16), ("valid_to", 16))


def command(cmd_para: bytes, data: bytes = b"") -> bytes:
    """Host → reader: AA AA AA 96 69 | LEN | CMD PARA | data | CHK (FIND is AA AA AA 96 69 00 03 20 01 22)."""
    body = (len(cmd_para) + len(data) + 1).to_bytes(2, "big") + cmd_para + data
    return PREAMBLE + body + bytes([xor(body)])


@dataclass(frozen=True)
class Response:
    status: bytes
    data: bytes

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def sw3(self) -> int:
        return self.status[2]


class StreamParser:
    """Feed bytes as they arrive; complete frames come out, noise and bad frames are skipped and counted."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad = 0

    def feed(self, chunk: bytes) -> list[Response]:
        self.buf += chunk
        out: list[Response] = []
        while True:
            if not resync(self.buf, PREAMBLE) or len(self.buf) < 7:
                return out
            n = int.from_bytes(self.buf[5:7], "big")
            if n < 4 or n > MAX_LEN:
                self.bad += 1
                del self.buf[:1]
                continue
            if len(self.buf) < 7 + n:
                return out
            frame = bytes(self.buf[: 7 + n])
            if xor(frame[5:-1]) != frame[-1]:
                self.bad += 1
                del self.buf[:1]
                continue
            del self.buf[: 7 + n]
            out.append(Response(frame[7:10], frame[10:-1]))


@dataclass(frozen=True)
class IdCard:
    name: str
    sex: str
    nation: str
    birth: str
    address: str
    id_number: str
    issuer: str
    valid_from: str
    valid_to: str
    photo: bytes = field(default=b"", repr=False, compare=False)


def parse_card(data: bytes) -> IdCard:
    """Decode the text block of a READ response (FrameError when short or not UCS-2)."""
    if len(data) < 4:
        raise FrameError("card data too short")
    text_len = int.from_bytes(data[0:2], "big")
    photo_len = int.from_bytes(data[2:4], "big")
    if text_len < 236 or 4 + text_len + photo_len > len(data):
        raise FrameError(f"card data lengths {text_len}+{photo_len} do not fit {len(data)} bytes")
    text = data[4:4 + text_len]
    values, pos = {}, 0
    for name, size in FIELDS:
        try:
            values[name] = text[pos:pos + size].decode("utf-16-le").rstrip(" \x00")
        except UnicodeDecodeError as err:
            raise FrameError(f"{name} is not UCS-2") from err
        pos += size
    return IdCard(**values, photo=data[4 + text_len:4 + text_len + photo_len])


class Reader:
    """Host side: poll for a card (FIND → SELECT → READ) on a serial transport; one request at a time."""

    def __init__(self, port: Any, timeout_s: float = 1.0) -> None:
        self.port, self.timeout = port, timeout_s
        self.parser = StreamParser()

    def _request(self, cmd: bytes) -> Response:
        self.port.write(command(cmd))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for r in self.parser.feed(read_available(self.port)):
                return r
        raise DeviceTimeout(f"ID reader did not answer command {cmd.hex()}")

    def poll(self) -> IdCard | None:
        """The card on the reader, or None when there is none (or it was taken away between the steps).
        FrameError for any other status (a command the reader refused) or an unreadable card."""
        found = self._request(CMD_FIND)
        if found.sw3 == NO_CARD:
            return None
        self._expect(found, FOUND, "FIND")
        selected = self._request(CMD_SELECT)
        if selected.sw3 == NOT_SELECTED:
            return None
        self._expect(selected, OK[2], "SELECT")
        r = self._request(CMD_READ)
        self._expect(r, OK[2], "READ")
        return parse_card(r.data)

    @staticmethod
    def _expect(r: Response, sw3: int, step: str) -> None:
        if r.status != bytes([0, 0, sw3]):
            raise FrameError(f"ID reader answered {step} with status {r.status.hex()}")

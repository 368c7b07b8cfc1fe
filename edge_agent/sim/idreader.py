"""2nd-generation ID card reader (SAM module protocol, as the vendors' "身份证阅读器模块SAM通讯协议" documents it):
answers FIND (20 01), SELECT (20 02) and READ (30 01) for a card placed on it.

Host → reader: AA AA AA 96 69 | LEN (2, big-endian: CMD + PARA + data + CHK) | CMD | PARA | data | CHK
Reader → host: AA AA AA 96 69 | LEN (SW1 + SW2 + SW3 + data + CHK) | SW1 SW2 SW3 | data | CHK
CHK is the XOR of every byte after the preamble. SW3: 9F card found (data: 4 bytes), 90 success, 80 no card to
find, 81 select failed, 10 checksum error, 21 unknown command. READ answers [text length 2][photo length 2]
[text: 256 bytes UCS-2 LE][photo: 1024 bytes WLT].
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from edge_agent.sim.base import PtyDevice
from edge_agent.sim.codec import xor8

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
FIND, SELECT, READ = b"\x20\x01", b"\x20\x02", b"\x30\x01"
FOUND, SUCCESS, NOT_FOUND, NOT_SELECTED, BAD_CHECKSUM, BAD_COMMAND = 0x9F, 0x90, 0x80, 0x81, 0x10, 0x21
# text block, in bytes (UCS-2 LE, space padded): name, sex code, nation code, birth, address, ID number, issuing
# authority, valid from, valid to; 36 reserved to 256
LAYOUT = (("name", 30), ("sex", 2), ("nation", 4), ("birth", 16), ("address", 70), ("id_number", 36),
          ("issuer", 30), ("valid_from", 16), ("valid_to", 16))


@dataclass(frozen=True)
class Card:
    name: str
    sex: str
    nation: str
    birth: str
    address: str
    id_number: str
    issuer: str
    valid_from: str
    valid_to: str
    photo: bytes = field(default=b"", repr=False)  # as the chip holds it (WLT; some readers deliver JPEG)

    def text(self) -> bytes:
        out = b"".join(getattr(self, f).ljust(n // 2)[: n // 2].encode("utf-16-le") for f, n in LAYOUT)
        return out + " ".encode("utf-16-le") * ((256 - len(out)) // 2)


def answer(sw3: int, data: bytes = b"") -> bytes:
    body = (len(data) + 4).to_bytes(2, "big") + bytes([0, 0, sw3]) + data  # LEN: SW1 SW2 SW3, data, CHK
    return PREAMBLE + body + bytes([xor8(body)])


def read_answer(card: Card) -> bytes:
    text, photo = card.text(), card.photo or b"\x00" * 1024
    return answer(SUCCESS, len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big") + text + photo)


class IdReaderSim(PtyDevice):
    def __init__(self) -> None:
        self.cards: deque[Card] = deque()
        self.buf = bytearray()
        self.reads = 0
        self.requests: list[bytes] = []  # every command frame received, as sent
        super().__init__()

    def place(self, card: Card) -> None:
        self.cards.append(card)

    def on_bytes(self, chunk: bytes) -> None:
        self.buf += chunk
        while True:
            i = self.buf.find(PREAMBLE)
            if i < 0:
                del self.buf[:max(0, len(self.buf) - len(PREAMBLE) + 1)]  # a preamble may be arriving
                return
            del self.buf[:i]
            if len(self.buf) < 7:
                return
            n = int.from_bytes(self.buf[5:7], "big")
            if n > 64:  # no host command is that long: noise that looked like a preamble
                del self.buf[:1]
                continue
            if len(self.buf) < 7 + n:
                return
            frame = bytes(self.buf[:7 + n])
            del self.buf[:7 + n]
            self.requests.append(frame)
            self.pty.write(self._respond(frame))

    def _respond(self, frame: bytes) -> bytes:
        if len(frame) < 10 or xor8(frame[5:-1]) != frame[-1]:
            return answer(BAD_CHECKSUM)
        cmd = frame[7:9]
        if cmd == FIND:
            return answer(FOUND, b"\x00" * 4) if self.cards else answer(NOT_FOUND)
        if cmd == SELECT:
            return answer(SUCCESS, b"\x00" * 8) if self.cards else answer(NOT_SELECTED)
        if cmd == READ:
            if not self.cards:
                return answer(NOT_FOUND)
            self.reads += 1
            return read_answer(self.cards.popleft())
        return answer(BAD_COMMAND)

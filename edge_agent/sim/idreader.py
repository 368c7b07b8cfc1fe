"""2nd-generation ID card reader: answers FIND / SELECT / READ for a card placed on it (see
edge_agent/drivers/idreader.py for the frame format)."""

from __future__ import annotations

from collections import deque

from edge_agent.drivers import idreader
from edge_agent.sim.base import PtyDevice

NO_CARD = b"\x00\x00\x80"


class IdReaderSim(PtyDevice):
    def __init__(self) -> None:
        self.cards: deque[idreader.IdCard] = deque()
        self.buf = bytearray()
        self.reads = 0
        super().__init__()

    def place(self, card: idreader.IdCard) -> None:
        self.cards.append(card)

    def on_bytes(self, chunk: bytes) -> None:
        self.buf += chunk
        while True:
            i = self.buf.find(idreader.PREAMBLE)
            if i < 0 or len(self.buf) < i + 11:
                if i < 0:
                    self.buf.clear()
                return
            frame = bytes(self.buf[i:i + 11])
            del self.buf[:i + 11]
            if frame != idreader.command(frame[7:9], frame[9]):
                self.pty.write(idreader.build(b"\x00\x00\x10"))  # checksum error status
                continue
            cmd = frame[7:9]
            if cmd == idreader.CMD_FIND or cmd == idreader.CMD_SELECT:
                self.pty.write(idreader.build(idreader.OK if self.cards else NO_CARD))
            elif cmd == idreader.CMD_READ:
                if not self.cards:
                    self.pty.write(idreader.build(NO_CARD))
                    continue
                card = self.cards.popleft()
                self.reads += 1
                self.pty.write(idreader.build(idreader.OK, idreader.encode_card(card)))

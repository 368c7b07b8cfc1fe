"""LED occupancy board: parses the display protocol (edge_agent/drivers/display.py), keeps what it shows,
acknowledges each frame ($A) or rejects a bad one ($N)."""

from __future__ import annotations

from edge_agent.drivers import FrameError, display
from edge_agent.sim.base import PtyDevice


class DisplaySim(PtyDevice):
    def __init__(self, encoding: str = "gb2312", ack: bool = True) -> None:
        self.encoding, self.ack = encoding, ack
        self.rows: dict[int, tuple[str, str]] = {}
        self.frames = 0
        self.rejected = 0
        self.buf = bytearray()
        super().__init__()

    def on_bytes(self, chunk: bytes) -> None:
        self.buf += chunk
        while (i := self.buf.find(b"\n")) >= 0:
            line = bytes(self.buf[:i]).rstrip(b"\r")
            del self.buf[:i + 1]
            try:
                cmd = display.parse(line)
            except FrameError:
                self.rejected += 1
                if self.ack:
                    self.pty.write(display.frame(b"N"))
                continue
            self.frames += 1
            if cmd.op == "T":
                self.rows[int(cmd.args[0])] = (cmd.args[2].decode(self.encoding, errors="replace"),
                                               cmd.args[1].decode())
            elif cmd.op == "C":
                self.rows.clear()
            if self.ack:
                self.pty.write(display.frame(b"A"))

    def text(self) -> str:
        return " | ".join(self.rows[k][0] for k in sorted(self.rows))

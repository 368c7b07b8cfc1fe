"""LED occupancy board speaking docs/display-protocol.md: keeps what it shows, acknowledges each frame ($A) or
rejects a bad one ($N). Lines are `$<body>*<XOR of body, 2 hex digits>` ended by CR LF."""

from __future__ import annotations

from edge_agent.sim.base import PtyDevice
from edge_agent.sim.codec import xor8


def reply(body: bytes) -> bytes:
    return b"$" + body + b"*" + b"%02X" % xor8(body) + b"\r\n"


def command(line: bytes) -> tuple[bytes, list[bytes]] | None:
    """(op, args) of a well-formed frame, None for anything else."""
    if not (line.startswith(b"$") and len(line) >= 4 and line[-3:-2] == b"*"):
        return None
    body, cs = line[1:-3], line[-2:]
    if not all(c in b"0123456789ABCDEFabcdef" for c in cs) or int(cs, 16) != xor8(body):
        return None
    op, *args = body.split(b",", 3)
    digit = len(args) >= 1 and len(args[0]) == 1 and args[0].isdigit()
    if op == b"T" and len(args) == 3 and digit and args[1] in (b"R", b"G", b"Y"):
        return op, args
    if op == b"B" and len(args) == 1 and digit:
        return op, args
    if op == b"C" and not args:
        return op, args
    return None


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
            cmd = command(line)
            if cmd is None:
                self.rejected += 1
                if self.ack:
                    self.pty.write(reply(b"N"))
                continue
            self.frames += 1
            op, args = cmd
            if op == b"T":
                self.rows[int(args[0])] = (args[2].decode(self.encoding, errors="replace"), args[1].decode())
            elif op == b"C":
                self.rows.clear()
            if self.ack:
                self.pty.write(reply(b"A"))

    def text(self) -> str:
        return " | ".join(self.rows[k][0] for k in sorted(self.rows))

"""LED/LCD occupancy display over serial: a line-based text protocol defined by this project
(docs/display-protocol.md, with a worked example pinned in tests/test_protocols.py).

Frame (ASCII framing, text in the board's encoding, GB2312 by default as on common Chinese LED boards):
    $T,<row>,<colour>,<text>*<XOR checksum, 2 hex digits>\r\n   show text on row 0..9 (colour R/G/Y)
    $C*<cs>\r\n                                                  clear
    $B,<level 0-9>*<cs>\r\n                                      brightness
The checksum is the XOR of every byte between `$` and `*`. Boards answer `$A*<cs>` (ok) or `$N*<cs>`
(rejected) on the same line protocol; write-only boards (no answer) are supported by `expect_ack=False`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from edge_agent.drivers import DeviceTimeout, FrameError, xor
from edge_agent.drivers.serialio import LineReader, Transport, open_port, read_available

logger = logging.getLogger(__name__)

COLOURS = ("R", "G", "Y")
MAX_TEXT = 64  # bytes of encoded text per row


def frame(body: bytes) -> bytes:
    return b"$" + body + b"*" + b"%02X" % xor(body) + b"\r\n"


def text_cmd(row: int, text: str, colour: str = "G", encoding: str = "gb2312") -> bytes:
    if not 0 <= row <= 9 or colour not in COLOURS:
        raise ValueError("row 0..9 and colour R/G/Y")
    data = text.encode(encoding, errors="replace")
    if b"*" in data or b"$" in data or b"\r" in data or b"\n" in data:
        raise ValueError("display text may not contain $ * CR LF")
    if len(data) > MAX_TEXT:
        raise ValueError(f"display text longer than {MAX_TEXT} bytes")
    return frame(b"T,%d,%s," % (row, colour.encode()) + data)


@dataclass(frozen=True)
class Command:
    op: str  # "T", "C", "B", "A", "N"
    args: tuple[bytes, ...]


def parse(line: bytes) -> Command:
    """One frame without its CR LF; FrameError when it is not one."""
    if len(line) < 4 or line[:1] != b"$" or line[-3:-2] != b"*":
        raise FrameError("not a display frame")
    body, cs = line[1:-3], line[-2:]
    try:
        want = int(cs, 16)
    except ValueError as err:
        raise FrameError("bad checksum digits") from err
    if xor(body) != want:
        raise FrameError("checksum mismatch")
    op, *rest = body.split(b",", 3)
    if op == b"T" and len(rest) == 3 and rest[0].isdigit() and len(rest[0]) == 1 and rest[1] in (b"R", b"G", b"Y"):
        return Command("T", tuple(rest))
    if op == b"B" and len(rest) == 1 and rest[0].isdigit() and len(rest[0]) == 1:
        return Command("B", tuple(rest))
    if op in (b"C", b"A", b"N") and not rest:
        return Command(op.decode(), ())
    raise FrameError("unknown display command")


class Display:
    """Host side. `show()` writes only rows that changed (boards flicker on rewrite)."""

    def __init__(self, port: Transport, encoding: str = "gb2312", expect_ack: bool = True,
                 timeout_s: float = 0.5) -> None:
        self.port, self.encoding, self.expect_ack, self.timeout = port, encoding, expect_ack, timeout_s
        self.rows: dict[int, tuple[str, str]] = {}
        self.reader = LineReader(256)

    def _send(self, data: bytes) -> None:
        self.port.write(data)
        if not self.expect_ack:
            return
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for line in self.reader.feed(read_available(self.port)):
                try:
                    cmd = parse(line.encode("ascii"))
                except FrameError:
                    continue
                if cmd.op == "A":
                    return
                if cmd.op == "N":
                    raise FrameError("display rejected the frame")
        raise DeviceTimeout("display did not acknowledge")

    def show(self, rows: list[tuple[str, str]]) -> int:
        """rows: (text, colour) per row from 0. Returns how many rows were written."""
        n = 0
        for i, (text, colour) in enumerate(rows):
            if self.rows.get(i) != (text, colour):
                self._send(text_cmd(i, text, colour, self.encoding))
                self.rows[i] = (text, colour)
                n += 1
        return n

    def clear(self) -> None:
        self._send(frame(b"C"))
        self.rows.clear()


class Board:
    """A display a role writes to now and then: opened on first use; a board that fails is logged once,
    reported (False) and never fatal to the role. After a failure the port is closed and, no sooner than
    `retry_s` later, opened again and every row rewritten: an adapter unplugged and plugged back, or a board
    that rebooted and lost its text, comes back by itself."""

    def __init__(self, port: str, baud: int = 9600, encoding: str = "gb2312", ack: bool = True,
                 retry_s: float = 2.0) -> None:
        self.port, self.baud, self.encoding, self.ack, self.retry_s = port, baud, encoding, ack, retry_s
        self.display: Display | None = None
        self.failed = False
        self._retry_at = 0.0

    def show(self, rows: list[tuple[str, str]]) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            if self.display is None:
                self.display = Display(open_port(self.port, self.baud), self.encoding, self.ack)
            self.display.show(rows)
        except (DeviceTimeout, FrameError, OSError) as err:
            if not self.failed:
                logger.warning("display %s: %s (retrying every %g s)", self.port, err, self.retry_s)
            self.failed = True
            self._retry_at = now + self.retry_s
            self.close()
            return False
        if self.failed:
            logger.info("display %s: working again", self.port)
            self.failed = False
        return True

    def close(self) -> None:
        if self.display is not None:
            close = getattr(self.display.port, "close", None)
            if close is not None:
                try:
                    close()
                except OSError:
                    pass
            self.display = None


def occupancy_rows(inside: int, limit: int, full: bool) -> list[tuple[str, str]]:
    """What a gate shows: live occupancy, and 已满 / FULL in red at the limit."""
    if full:
        return [(f"在园 {inside}/{limit}", "R"), ("已满 暂停入园 FULL", "R")]
    ratio = inside / limit if limit else 1.0
    return [(f"在园 {inside}/{limit}", "Y" if ratio >= 0.8 else "G"), ("欢迎入园 WELCOME", "G")]

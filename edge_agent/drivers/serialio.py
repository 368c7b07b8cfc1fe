"""Line and frame readers on a serial-like transport (pyserial Serial, or anything with read/write)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class Transport(Protocol):
    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...


class LineReader:
    """Barcode/QR scanners send ASCII lines ended by CR and/or LF. Over-long or non-ASCII lines are
    dropped and counted (a noisy line must not become a ticket)."""

    def __init__(self, max_len: int = 1024) -> None:
        self.buf = bytearray()
        self.max_len = max_len
        self.bad = 0
        self.discarding = False

    def feed(self, chunk: bytes) -> list[str]:
        out = []
        for b in chunk:
            if b in (10, 13):
                if self.buf and not self.discarding:
                    line = bytes(self.buf)
                    if all(32 <= c < 127 for c in line):
                        out.append(line.decode("ascii"))
                    else:
                        self.bad += 1
                self.buf.clear()
                self.discarding = False
                continue
            if self.discarding:
                continue
            if len(self.buf) >= self.max_len:
                self.bad += 1  # the whole over-long line is dropped, up to its terminator
                self.buf.clear()
                self.discarding = True
                continue
            self.buf.append(b)
        return out


def read_available(port: Transport, block_s: float | None = None) -> bytes:
    """Wait for the first byte (up to the port's timeout), then take whatever else has arrived.

    read(n) with a timeout waits the full timeout unless n bytes come: that adds the timeout to every
    frame's latency. This returns as soon as anything is there.
    """
    first = port.read(1)
    if not first:
        return b""
    waiting = getattr(port, "in_waiting", 0)
    return first + (port.read(waiting) if waiting else b"")


def open_port(url: str, baud: int, timeout: float = 0.05) -> Any:
    """A device path or pyserial URL (loop://, rfc2217://) as a serial port with a short read timeout."""
    import serial

    return serial.serial_for_url(url, baudrate=baud, timeout=timeout)


def read_lines(url: str, baud: int, on_line: Callable[[str], Any], stop: threading.Event,
               max_len: int = 1024) -> None:
    """Line-based readers (QR scanners, staff tag readers): call on_line for every good line until stop;
    an unplugged port is logged and reopened every second."""
    reader = LineReader(max_len)
    port = None
    while not stop.is_set():
        try:
            port = port or open_port(url, baud)
            for line in reader.feed(read_available(port)):
                on_line(line)
        except OSError as err:
            logger.error("serial reader %s: %s; retrying", url, err)
            port = None
            stop.wait(1)

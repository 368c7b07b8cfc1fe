"""Turnstile controller simulator speaking docs/turnstile-protocol.md on the master side of a pty."""

from __future__ import annotations

import threading
import time

from edge_agent.drivers import turnstile as ts
from edge_agent.sim.base import PtyDevice


class TurnstileSim(PtyDevice):
    def __init__(self, addr: int = 1, pass_delay: float = 0.0, walk_through: bool = True) -> None:
        self.addr, self.pass_delay, self.walk_through = addr, pass_delay, walk_through
        self.parser = ts.StreamParser()
        self.opens: list[tuple[float, int, int]] = []  # (time received, dir, persons)
        super().__init__()

    def _send(self, cmd: int, payload: bytes) -> None:
        self.pty.write(ts.Frame(self.addr, cmd, payload).encode())

    def on_bytes(self, chunk: bytes) -> None:
        for f in self.parser.feed(chunk):
            if f.addr != self.addr:
                continue  # another controller on the RS-485 bus
            if f.cmd == ts.OPEN and len(f.payload) == 2:
                self.opens.append((time.perf_counter(), f.payload[0], f.payload[1]))
                self._send(ts.ACK, bytes([ts.OPEN, 0]))
                if self.walk_through:
                    threading.Thread(target=self._walk, args=(f.payload[0], f.payload[1]), daemon=True).start()
            elif f.cmd == ts.STATUS:
                self._send(ts.STATUS_REPORT, bytes([0, 0]))

    def _walk(self, direction: int, persons: int) -> None:
        for left in range(persons - 1, -1, -1):
            time.sleep(self.pass_delay)
            self._send(ts.PASSED, bytes([direction, left]))

    def alarm(self, code: int) -> None:
        self._send(ts.ALARM, bytes([code]))

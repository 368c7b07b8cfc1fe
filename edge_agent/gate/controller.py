"""Gate role I/O: scanner lines → decision (durable transaction) → turnstile OPEN → confirmed PASSED.

The turnstile driver owns one serial port (a pty in tests) and a reader thread; a pass counts only
when the controller reports PASSED. A gate whose pass is not confirmed within `pass_timeout_s`
releases the ticket (it can be scanned again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_agent.drivers import DeviceTimeout
from edge_agent.drivers import turnstile as ts
from edge_agent.drivers.serialio import read_available
from edge_agent.gate.passback import UsedTickets
from edge_agent.gate.tickets import Decision, Validator

logger = logging.getLogger(__name__)


class TurnstileDriver:
    def __init__(self, port: Any, addr: int = 1, on_event: Callable[[ts.Frame], None] | None = None) -> None:
        self.port, self.addr, self.on_event = port, addr, on_event
        self.parser = ts.StreamParser()
        self._acks: dict[int, threading.Event] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="turnstile-rx", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = read_available(self.port)
            except Exception as err:  # unplugged adapter: report and retry, do not die
                logger.error("turnstile port error: %s", err)
                self._stop.wait(1)
                continue
            for f in self.parser.feed(chunk):
                if f.addr != self.addr:
                    continue
                if f.cmd == ts.ACK and f.payload[:1]:
                    ev = self._acks.get(f.payload[0])
                    if ev:
                        ev.set()
                elif self.on_event:
                    self.on_event(f)

    def open(self, direction: int, persons: int, timeout: float = 0.5) -> None:
        ev = self._acks[ts.OPEN] = threading.Event()
        self.port.write(ts.open_cmd(self.addr, direction, persons).encode())
        if not ev.wait(timeout):
            raise DeviceTimeout("turnstile did not acknowledge OPEN")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


class GateController:
    def __init__(self, name: str, validator: Validator, used: UsedTickets,
                 record: Callable[[str, dict[str, Any]], Any], pass_timeout_s: float = 10.0) -> None:
        self.name, self.validator, self.used, self.record = name, validator, used, record
        self.pass_timeout_s = pass_timeout_s
        self.turnstile: TurnstileDriver | None = None
        self._waiting: list[tuple[str, int, float]] = []  # ticket, persons left, deadline
        self._lock = threading.Lock()

    def attach(self, port: Any, addr: int = 1) -> None:
        self.turnstile = TurnstileDriver(port, addr, self.on_turnstile)

    def on_scan(self, qr: str) -> Decision:
        d = self.validator.decide(qr)
        # The decision is durable before the gate moves (record() returns after fsync).
        self.record("gate.decision", {"gate": self.name, "ticket": d.ticket, "ok": d.ok, "reason": d.reason,
                                      "persons": d.persons})
        if d.ok and d.ticket and self.turnstile:
            try:
                self.turnstile.open(ts.IN, d.persons)
            except DeviceTimeout:
                self.validator.pending.pop(d.ticket, None)
                self.record("gate.fault", {"gate": self.name, "fault": "turnstile_timeout"})
                return Decision(False, "turnstile_timeout", d.ticket)
            with self._lock:
                self._waiting.append((d.ticket, d.persons, time.monotonic() + self.pass_timeout_s))
        return d

    def on_turnstile(self, f: ts.Frame) -> None:
        if f.cmd == ts.PASSED and len(f.payload) == 2:
            with self._lock:
                if not self._waiting:
                    self.record("gate.alarm", {"gate": self.name, "alarm": "unexpected pass"})
                    return
                ticket, left, deadline = self._waiting[0]
                left -= 1
                if left <= 0:
                    self._waiting.pop(0)
                else:
                    self._waiting[0] = (ticket, left, deadline)
            pend = self.validator.pending
            if left <= 0:
                self.used.mark(ticket, self.name)
                pend.pop(ticket, None)
            elif ticket in pend:
                pend[ticket] = left  # one of the party is through: the rest still pending
            for t in self.validator.capacity.passed(1, "in" if f.payload[0] == ts.IN else "out"):
                self.record("gate.capacity_alert", {"gate": self.name, "level": t,
                                                    "inside": self.validator.capacity.inside})
            self.record("gate.pass", {"gate": self.name, "ticket": ticket, "dir": "in" if f.payload[0] == 0 else "out"})
        elif f.cmd == ts.ALARM and f.payload:
            self.record("gate.alarm", {"gate": self.name, "alarm": ts.ALARMS.get(f.payload[0], f"code {f.payload[0]}")})

    def expire(self) -> None:
        """Release tickets whose pass was never confirmed."""
        now = time.monotonic()
        with self._lock:
            gone = [w for w in self._waiting if w[2] < now]
            self._waiting = [w for w in self._waiting if w[2] >= now]
        for ticket, _, _ in gone:
            self.validator.pending.pop(ticket, None)
            self.record("gate.not_passed", {"gate": self.name, "ticket": ticket})

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
from edge_agent.drivers.gpio import GpioLine
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


class DryContactTurnstile:
    """Fallback for turnstiles with only a relay input and a pass-sensor contact: pulse the relay once
    per person, and count a pass on each rising edge of the sensor. Same events as the serial driver."""

    def __init__(self, relay: GpioLine, sensor: GpioLine, on_event: Callable[[ts.Frame], None] | None = None,
                 pulse_s: float = 0.2) -> None:
        self.relay, self.sensor, self.on_event, self.pulse_s = relay, sensor, on_event, pulse_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="contact-rx", daemon=True)
        self._thread.start()

    def open(self, direction: int, persons: int, timeout: float = 0.5) -> None:
        if direction != ts.IN:
            raise ValueError("a dry-contact turnstile opens for entry only")
        for _ in range(persons):
            self.relay.set(True)
            self._stop.wait(self.pulse_s)
            self.relay.set(False)

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self.sensor.wait_edge(0.1) and self.on_event:
                self.on_event(ts.Frame(0, ts.PASSED, bytes([ts.IN, 0])))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.relay.set(False)
        for line in (self.relay, self.sensor):
            release = getattr(line, "close", None)  # libgpiod requests are released; simulators have none
            if release is not None:
                release()


class GateController:
    def __init__(self, name: str, validator: Validator, used: UsedTickets,
                 record: Callable[[str, dict[str, Any]], Any], pass_timeout_s: float = 10.0) -> None:
        self.name, self.validator, self.used, self.record = name, validator, used, record
        self.pass_timeout_s = pass_timeout_s
        self.turnstile: TurnstileDriver | DryContactTurnstile | None = None
        self.on_change: Callable[[], None] | None = None  # occupancy changed (display, state record)
        self._waiting: list[tuple[str, int, float]] = []  # ticket, persons left, deadline
        self._lock = threading.Lock()

    def attach(self, port: Any, addr: int = 1) -> None:
        self.turnstile = TurnstileDriver(port, addr, self.on_turnstile)

    def attach_contacts(self, relay: GpioLine, sensor: GpioLine, pulse_s: float = 0.2) -> None:
        self.turnstile = DryContactTurnstile(relay, sensor, self.on_turnstile, pulse_s)

    def on_scan(self, qr: str) -> Decision:
        return self._act(self.validator.decide(qr), "qr")

    def on_id_card(self, id_number: str) -> Decision:
        return self._act(self.validator.decide_id(id_number), "id")

    def _act(self, d: Decision, via: str) -> Decision:
        # The decision is durable before the gate moves (record() returns after fsync).
        self.record("gate.decision", {"gate": self.name, "ticket": d.ticket, "ok": d.ok, "reason": d.reason,
                                      "persons": d.persons, "via": via})
        if d.ok and d.ticket and self.turnstile:
            # Wait for the pass *before* opening: a fast turnstile reports PASSED right after its ACK.
            entry = (d.ticket, d.persons, time.monotonic() + self.pass_timeout_s)
            with self._lock:
                self._waiting.append(entry)
            try:
                self.turnstile.open(ts.IN, d.persons)
            except DeviceTimeout:
                with self._lock:
                    if entry in self._waiting:
                        self._waiting.remove(entry)
                self.validator.release(d.ticket)
                self.record("gate.fault", {"gate": self.name, "fault": "turnstile_timeout"})
                return Decision(False, "turnstile_timeout", d.ticket)
        return d

    def on_turnstile(self, f: ts.Frame) -> None:
        if f.cmd == ts.PASSED and len(f.payload) == 2 and f.payload[0] == ts.OUT:
            self.validator.passed("out")  # a visitor leaving (free exit): occupancy only
            self.record("gate.exit", {"gate": self.name})
            if self.on_change:
                self.on_change()
        elif f.cmd == ts.PASSED and len(f.payload) == 2:
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

            def settle() -> None:
                if left <= 0:
                    self.used.mark(ticket, self.name)
                    pend.pop(ticket, None)
                elif ticket in pend:
                    pend[ticket] = left  # one of the party is through: the rest still pending

            alerts, inside = self.validator.passed("in", settle)
            for t in alerts:
                self.record("gate.capacity_alert", {"gate": self.name, "level": t, "inside": inside})
            if self.on_change:
                self.on_change()
            self.record("gate.pass", {"gate": self.name, "ticket": ticket, "dir": "in"})
        elif f.cmd == ts.ALARM and f.payload:
            self.record("gate.alarm", {"gate": self.name, "alarm": ts.ALARMS.get(f.payload[0], f"code {f.payload[0]}")})

    def expire(self) -> None:
        """Release tickets whose pass was never confirmed."""
        now = time.monotonic()
        with self._lock:
            gone = [w for w in self._waiting if w[2] < now]
            self._waiting = [w for w in self._waiting if w[2] >= now]
        for ticket, _, _ in gone:
            self.validator.release(ticket)
            self.record("gate.not_passed", {"gate": self.name, "ticket": ticket})

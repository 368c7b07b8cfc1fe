"""One gate lane: a scan or ID card → decision (durable transaction) → turnstile OPEN → confirmed PASSED.

The lane counts no one itself: each confirmed PASSED goes to the site (gate/site.py) as a `Passed`, through
`on_pass`, with the ticket the lane opened for. A pass counts only when the controller reports PASSED; an opening
not confirmed within `pass_timeout_s` releases the ticket (it can be scanned again). The turnstile driver
(drivers/turnstile.py) is built by the role and attached; its events come back to `on_turnstile`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from edge_agent.drivers import DeviceTimeout
from edge_agent.drivers import turnstile as ts
from edge_agent.gate.site import IN, OUT, Passed
from edge_agent.gate.tickets import Decision, Validator

logger = logging.getLogger(__name__)


class Turnstile(Protocol):
    def open(self, direction: int, persons: int, timeout: float = 0.5) -> None: ...
    def close(self) -> None: ...


class GateController:
    def __init__(self, name: str, validator: Validator, record: Callable[[str, dict[str, Any]], Any],
                 on_pass: Callable[[Passed], Any], pass_timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.validator, self.record, self.on_pass = name, validator, record, on_pass
        self.pass_timeout_s, self.clock = pass_timeout_s, clock
        self.turnstile: Turnstile | None = None
        self._waiting: list[tuple[str, int, float]] = []  # ticket, persons left, deadline
        self._lock = threading.Lock()

    def attach(self, turnstile: Turnstile) -> None:
        self.turnstile = turnstile

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
            entry = (d.ticket, d.persons, self.clock() + self.pass_timeout_s)
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
            self.on_pass(Passed(self.name, OUT))  # a visitor leaving (free exit): occupancy only
            self.record("gate.exit", {"gate": self.name})
        elif f.cmd == ts.PASSED and len(f.payload) == 2:
            ticket = self._through()
            if ticket is None:
                self.record("gate.alarm", {"gate": self.name, "alarm": "unexpected pass"})
                return
            self.on_pass(Passed(self.name, IN, ticket))
            self.record("gate.pass", {"gate": self.name, "ticket": ticket, "dir": "in"})
        elif f.cmd == ts.ALARM and f.payload:
            self.record("gate.alarm", {"gate": self.name, "alarm": ts.ALARMS.get(f.payload[0], f"code {f.payload[0]}")})

    def _through(self) -> str | None:
        """The ticket of the one who just walked through (the oldest opening still waiting), or None."""
        with self._lock:
            if not self._waiting:
                return None
            ticket, left, deadline = self._waiting[0]
            if left > 1:
                self._waiting[0] = (ticket, left - 1, deadline)
            else:
                self._waiting.pop(0)
            return ticket

    def expire(self) -> None:
        """Release tickets whose pass was never confirmed."""
        now = self.clock()
        with self._lock:
            gone = [w for w in self._waiting if w[2] < now]
            self._waiting = [w for w in self._waiting if w[2] >= now]
        for ticket, _, _ in gone:
            self.validator.release(ticket)
            self.record("gate.not_passed", {"gate": self.name, "ticket": ticket})

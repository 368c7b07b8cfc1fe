"""The site's occupancy as a pure state machine: people let in, people through, capacity alerts, the venue day.

    site = Site("gate", Capacity(500), day="2026-11-22")
    site.room_for(2); site.reserve("T1", 2)        # the ticket rules, deciding (under the gate's lock)
    events = site.tick(now, [Passed("lane-a", "in", "T1")])

`tick(now, inputs)` takes the venue-local time and what happened since the last tick, and returns what must be
written: Used (the last of a party is through: mark the ticket), Save (persist the day's count), Alert/DayStart
(transaction records) and Occupancy (the state record and the display; only when it changed). No I/O, no clock,
no threads: the gate role is the shell that locks, persists and writes (edge_agent/gate/role.py). Raises
ValueError for an unknown direction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.gate.tickets import Capacity

IN, OUT = "in", "out"


@dataclass(frozen=True)
class Passed:
    """One person through a turnstile (with the ticket the lane opened for, if any) or a camera-counted door."""

    gate: str
    direction: str
    ticket: str | None = None


@dataclass(frozen=True)
class Used:
    ticket: str
    gate: str


@dataclass(frozen=True)
class Save:
    day: str
    inside: int


@dataclass(frozen=True)
class Alert:
    gate: str
    level: float
    inside: int


@dataclass(frozen=True)
class DayStart:
    day: str
    inside_at_close: int


@dataclass(frozen=True)
class Occupancy:
    inside: int
    limit: int
    full: bool


Event = Used | Save | Alert | DayStart | Occupancy


class Site:
    def __init__(self, name: str, capacity: Capacity, day: str) -> None:
        self.name, self.capacity, self.day = name, capacity, day
        self.pending: dict[str, int] = {}  # tickets let in, persons not yet through
        self._closed: dict[str, int] = {}  # count at the close of days left (a clock set back resumes them)
        self._shown: tuple[int, bool] | None = None

    # ------------------------------------------------------------- the ticket rules ask and reserve

    def room_for(self, persons: int) -> bool:
        """People let in but not yet through count against the limit too."""
        return self.capacity.allows(persons + sum(self.pending.values()))

    def holds(self, ticket: str) -> bool:
        return ticket in self.pending

    def reserve(self, ticket: str, persons: int) -> None:
        self.pending[ticket] = persons

    def release(self, ticket: str) -> bool:
        """An opened ticket nobody walked through: it may be used again. False if it was not pending."""
        return self.pending.pop(ticket, None) is not None

    # ------------------------------------------------------------- the state machine

    def tick(self, now: dt.datetime, inputs: Iterable[Passed] = ()) -> list[Event]:
        events: list[Event] = []
        today = now.date().isoformat()
        if today != self.day:
            events += self._roll(today)
        moved = False
        for p in inputs:
            if p.direction not in (IN, OUT):
                raise ValueError(f"direction must be 'in' or 'out', not {p.direction!r}")
            if p.direction == IN and p.ticket is not None and self._through(p.ticket):
                events.append(Used(p.ticket, p.gate))
            levels = self.capacity.passed(1, p.direction)
            events += [Alert(p.gate, level, self.capacity.inside) for level in levels]
            moved = True
        if moved:
            events.append(Save(self.day, self.capacity.inside))
        shown = (self.capacity.inside, not self.capacity.allows(1))
        if shown != self._shown:
            self._shown = shown
            events.append(Occupancy(shown[0], self.capacity.limit, shown[1]))
        return events

    def _through(self, ticket: str) -> bool:
        """One of the party is through; True when it was the last one (the ticket is used up)."""
        left = self.pending.get(ticket, 1) - 1
        if left > 0:
            self.pending[ticket] = left
            return False
        self.pending.pop(ticket, None)
        return True

    def _roll(self, today: str) -> list[Event]:
        """Midnight (venue time): the count starts again from the new day's (0 unless the clock went back to a
        day already counted). People still counted inside at the close were never counted out: the hub sees
        the drift in `inside_at_close`."""
        closing = self.capacity.inside
        self._closed[self.day] = closing
        out: list[Event] = [Save(self.day, closing)]
        self.day = today
        self.capacity.inside = self._closed.pop(today, 0)
        return out + [DayStart(today, closing), Save(today, self.capacity.inside)]

"""Clocks, injected so that rules with time in them are tested without sleeping.

`time()` is wall-clock seconds since the epoch (what records carry, dates and time slots are cut from);
`monotonic()` never goes back (timeouts, intervals). ManualClock is the fake the project ships: it moves only
when told to.
"""

from __future__ import annotations

import threading
import time as _time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()


SYSTEM = SystemClock()


class ManualClock:
    """A clock for tests and replays: starts at `start` (wall) and moves only by `advance()` or `set()`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall, self._mono = float(start), 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back; use set() for a wall-clock jump")
        with self._lock:
            self._wall += seconds
            self._mono += seconds

    def set(self, wall: float) -> None:
        """Jump the wall clock (an NTP correction, a test at midnight); monotonic time does not move."""
        with self._lock:
            self._wall = float(wall)

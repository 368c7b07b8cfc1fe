"""The camera jobs besides line counting, as pure cores: no cv2, no I/O, time passed in.

Each job takes `tick(now, points)` — `now` in epoch seconds, `points` the anchor points (box bottom-
centre, image pixels) of the confirmed tracks on this frame — and returns the events it decided on:
- `IntrusionZone`: someone inside a restricted polygon for ≥ `min_s` while the site is closed → Alarm;
  the zone empty for `clear_s` → Cleared. Presence is per zone, not per track id, so an ID switch or a
  few missed detections do not restart the timer (gaps shorter than `gap_s` are bridged).
- `DensityZone`: people per polygon against its capacity, with the gate's levels (0.8/0.9/1.0 by
  default); a level is entered after `hold_s` at or above it and left only `hysteresis` below it.
- `CarPark`: free spaces = capacity − vehicles inside (ins − outs over the entrance line).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from edge_agent.vision.counting import point_in_polygon

Point = tuple[float, float]


def parse_span(text: str) -> tuple[dt.time, dt.time]:
    """'08:00-17:30' → (08:00, 17:30). An end before the start runs past midnight. Raises ValueError."""
    try:
        a, b = text.split("-")
        start, end = dt.time.fromisoformat(a.strip()), dt.time.fromisoformat(b.strip())
    except ValueError:
        raise ValueError(f"opening hours are 'HH:MM-HH:MM', got {text!r}") from None
    if start == end:
        raise ValueError(f"opening hours {text!r} are empty")
    return start, end


class Schedule:
    """Daily opening hours in the venue's time zone; `is_open(now)` for an epoch time."""

    def __init__(self, spans: list[str], timezone: str = "Asia/Shanghai") -> None:
        self.spans = [parse_span(s) for s in spans]
        self.tz = ZoneInfo(timezone)

    def is_open(self, now: float) -> bool:
        t = dt.datetime.fromtimestamp(now, self.tz).time()
        return any((start <= t < end) if start < end else (t >= start or t < end) for start, end in self.spans)


@dataclass(frozen=True)
class Alarm:
    zone: str
    since: float  # when the zone became occupied
    at: float
    people: int


@dataclass(frozen=True)
class Cleared:
    zone: str
    at: float
    alarm_s: float  # how long the alarm stood


@dataclass
class IntrusionZone:
    name: str
    polygon: list[Point]
    schedule: Schedule
    min_s: float = 5.0
    clear_s: float = 5.0
    gap_s: float = 2.0
    since: float | None = None  # start of the current presence
    last_seen: float | None = None
    alarm_at: float | None = None

    def watching(self, now: float, points: list[Point]) -> bool:
        """Guarded now and someone (even a track not yet confirmed) inside: worth a detection every frame."""
        return not self.schedule.is_open(now) and any(point_in_polygon(x, y, self.polygon) for x, y in points)

    def tick(self, now: float, points: list[Point]) -> list[Alarm | Cleared]:
        people = sum(point_in_polygon(x, y, self.polygon) for x, y in points)
        if people:
            if self.since is None or self.last_seen is None or now - self.last_seen > self.gap_s:
                self.since = now if self.alarm_at is None else self.since
            self.last_seen = now
        out: list[Alarm | Cleared] = []
        if self.alarm_at is None:
            if (people and self.since is not None and now - self.since >= self.min_s
                    and not self.schedule.is_open(now)):
                self.alarm_at = now
                out.append(Alarm(self.name, self.since, now, people))
            elif not people and self.last_seen is not None and now - self.last_seen > self.gap_s:
                self.since = None
        elif not people and self.last_seen is not None and now - self.last_seen >= self.clear_s:
            out.append(Cleared(self.name, now, now - self.alarm_at))
            self.alarm_at = self.since = None
        return out


@dataclass(frozen=True)
class Level:
    zone: str
    level: float  # 0.0 = below every threshold
    previous: float
    people: int
    at: float


@dataclass
class Levels:
    """Threshold levels with hysteresis in value (`hysteresis` below a level to leave it) and in time (a
    new level must hold for `hold_s`). Pure; shared by crowd density and the car park."""

    thresholds: tuple[float, ...] = (0.8, 0.9, 1.0)
    hysteresis: float = 0.05
    hold_s: float = 3.0
    level: float = 0.0
    _candidate: float | None = None
    _candidate_since: float = 0.0

    def target(self, ratio: float) -> float:
        held = [t for t in self.thresholds if ratio >= t or (t <= self.level and ratio >= t - self.hysteresis)]
        return max(held) if held else 0.0

    def update(self, ratio: float, now: float) -> float | None:
        """The new level if it changes now, else None."""
        want = self.target(ratio)
        if want == self.level:
            self._candidate = None
            return None
        if self._candidate != want:
            self._candidate, self._candidate_since = want, now
        if now - self._candidate_since < self.hold_s:
            return None
        self.level, self._candidate = want, None
        return want


@dataclass
class DensityZone:
    name: str
    polygon: list[Point]
    capacity: int
    levels: Levels = field(default_factory=Levels)
    people: int = 0
    peak: int = 0

    def tick(self, now: float, points: list[Point]) -> list[Level]:
        self.people = sum(point_in_polygon(x, y, self.polygon) for x, y in points)
        self.peak = max(self.peak, self.people)
        before = self.levels.level
        new = self.levels.update(self.people / self.capacity, now)
        return [] if new is None else [Level(self.name, new, before, self.people, now)]

    def take_peak(self) -> int:
        """The peak since the last call (per reporting interval)."""
        peak, self.peak = self.peak, self.people
        return peak


@dataclass
class CarPark:
    """Free spaces from the vehicles counted in and out over the entrance line(s)."""

    capacity: int
    ins: int = 0
    outs: int = 0
    correction: int = 0

    def passed(self, direction: str) -> None:
        if direction == "in":
            self.ins += 1
        else:
            self.outs += 1

    @property
    def inside(self) -> int:
        return max(0, self.ins - self.outs + self.correction)

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.inside)

    def correct_to(self, inside: int) -> None:
        """A staff count (or the barrier's own counter) resets the drift of camera counting."""
        self.correction = inside - (self.ins - self.outs)


def carpark_rows(free: int, capacity: int) -> list[tuple[str, str]]:
    """What the car park's LED board shows: free spaces, 车位已满 / FULL in red when none."""
    if free <= 0:
        return [("空位 0", "R"), ("车位已满 FULL", "R")]
    return [(f"空位 {free}/{capacity}", "Y" if free <= capacity * 0.1 else "G"), ("欢迎停车 PARKING", "G")]

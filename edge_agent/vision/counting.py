"""Line and zone counting on track anchor points (box bottom-centre). Pure: no cv2, no I/O.

Side of a point P for the line A→B: s = (Bx−Ax)(Py−Ay) − (By−Ay)(Px−Ax). A crossing from s > 0 to
s < 0 is "in", the reverse "out". Rules that stop the usual over-counting:
- hysteresis: a change of side only counts once the point is `margin` pixels beyond the line (or
  `margin_rel` × the box height when that is smaller: 8 px is a fifth of a small, distant person), so
  jitter on the line never flips it (a track's first sighting takes the side it is on);
- segment: the path must cross the line between A and B (extended lines do not count);
- no teleports: a foot point that moves more than `max_step_rel` × the box height per frame is an id the
  tracker swapped onto someone else (a person behind, at another depth): the path starts afresh there;
- hold: a side change is a candidate until the track is seen beyond the margin on the new side on
  `hold` observations; going back first cancels it (an excursion over the line is no crossing, so a
  person dithering on the line never counts). A track may cross any number of times (a walker who goes
  in, out and in again is three crossings: the old "once per direction" cap missed those);
- confirmation: crossings of a tentative track are held and counted only if it gets confirmed;
- ID switches: a new track born next to where a track vanished moments ago inherits its state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Crossing:
    line: str
    track: int
    direction: str  # "in" | "out"
    frame: int
    x: float
    y: float


@dataclass
class _TrackState:
    side: int = 0  # last stable side: +1, -1, 0 unknown
    last: tuple[float, float] | None = None
    cross_pt: tuple[float, float] | None = None  # where the path last crossed the infinite line
    candidate: Crossing | None = None  # a side change not yet held for `hold` observations
    held: int = 0  # observations beyond the margin on the candidate's side
    confirmed: bool = False
    pending: list[Crossing] = field(default_factory=list)
    last_frame: int = 0
    cross_frame: int = 0  # first observed frame on the far side of the line (the crossing's frame)


class LineCounter:
    def __init__(self, name: str, a: tuple[float, float], b: tuple[float, float], margin: float = 8.0,
                 inherit_radius: float = 40.0, inherit_frames: int = 15, hold: int = 2,
                 margin_rel: float = 0.1, max_step_rel: float = 0.3) -> None:
        if a == b:
            raise ValueError(f"line {name!r}: the two end points are the same")
        self.name, self.a, self.b, self.margin = name, a, b, margin
        self.length = math.dist(a, b)
        self.inherit_radius, self.inherit_frames, self.hold = inherit_radius, inherit_frames, hold
        self.margin_rel, self.max_step_rel = margin_rel, max_step_rel
        self.states: dict[int, _TrackState] = {}
        self.ended: list[tuple[int, tuple[float, float], _TrackState]] = []
        self.counts = {"in": 0, "out": 0}

    def side_value(self, x: float, y: float) -> float:
        (ax, ay), (bx, by) = self.a, self.b
        return (bx - ax) * (y - ay) - (by - ay) * (x - ax)

    def _within_segment(self, p: tuple[float, float]) -> bool:
        (ax, ay), (bx, by) = self.a, self.b
        t = ((p[0] - ax) * (bx - ax) + (p[1] - ay) * (by - ay)) / (self.length ** 2)
        return 0.0 <= t <= 1.0

    def _crossing_point(self, p0: tuple[float, float], p1: tuple[float, float]) -> tuple[float, float]:
        s0, s1 = self.side_value(*p0), self.side_value(*p1)
        t = s0 / (s0 - s1) if s0 != s1 else 0.5
        return (p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1]))

    def _state_for(self, track: int, p: tuple[float, float], frame: int) -> _TrackState:
        st = self.states.get(track)
        if st is not None:
            return st
        st = self._inherit(p, frame) or _TrackState()
        self.states[track] = st
        return st

    def _inherit(self, p: tuple[float, float], frame: int) -> _TrackState | None:
        """An ID switch: a new track next to where another was last seen moments ago takes over its state
        (side, held crossing), whether the tracker still keeps the old one as lost or has dropped it. The
        old track, should it come back, starts afresh: one history never counts twice."""
        best: tuple[float, int | None, int] | None = None  # (distance, live track id or None, ended index)
        for tid, old in self.states.items():
            if old.last is not None and 0 < frame - old.last_frame <= self.inherit_frames:
                d = math.dist(old.last, p)
                if d <= self.inherit_radius and (best is None or d < best[0]):
                    best = (d, tid, -1)
        for i, (end_frame, where, _) in enumerate(self.ended):
            d = math.dist(where, p)
            if frame - end_frame <= self.inherit_frames and d <= self.inherit_radius and (best is None or d < best[0]):
                best = (d, None, i)
        if best is None:
            return None
        if best[1] is not None:
            st = self.states[best[1]]
            self.states[best[1]] = _TrackState()
            return st
        return self.ended.pop(best[2])[2]

    def update(self, track: int, x: float, y: float, frame: int, confirmed: bool,
               height: float | None = None) -> Crossing | None:
        """Feed one anchor point (and the box height, if known); returns the crossing counted now, if any."""
        p = (x, y)
        st = self._state_for(track, p, frame)
        if (st.last is not None and height is not None and self.max_step_rel > 0
                and math.dist(st.last, p) > self.max_step_rel * height * max(1, frame - st.last_frame)):
            # The foot point jumped further than a walker can: the tracker swapped this id onto someone
            # else (a person behind, at another depth). Not a path: start it afresh where it is now.
            st.last, st.cross_pt, st.candidate, st.side = None, None, None, 0
        st.last_frame = frame
        st.confirmed = st.confirmed or confirmed
        if st.last is not None and (self.side_value(*st.last) > 0) != (self.side_value(*p) > 0):
            st.cross_pt = self._crossing_point(st.last, p)
            st.cross_frame = frame
        st.last = p
        d = self.side_value(x, y) / self.length  # signed distance in pixels
        result = None
        if not st.side and st.cross_pt is None and abs(d) >= 1.0:
            st.side = 1 if d > 0 else -1  # first sighting: the side it is on, however close
        elif abs(d) >= (self.margin if height is None else min(self.margin, self.margin_rel * height)):
            side = 1 if d > 0 else -1
            if st.candidate is not None and side != st.side:
                st.candidate = None  # back before the change held: an excursion, not a crossing
            elif st.candidate is not None:
                st.held += 1
            elif st.side and side != st.side and st.cross_pt and self._within_segment(st.cross_pt):
                direction = "in" if st.side > 0 else "out"
                st.candidate = Crossing(self.name, track, direction, st.cross_frame or frame, *st.cross_pt)
                st.held = 1
            st.side = side
            if st.candidate is not None and st.held >= self.hold:
                st.pending.append(st.candidate)
                st.candidate = None
        if confirmed and st.pending:
            for c in st.pending:
                self.counts[c.direction] += 1
            result = st.pending[-1]
            st.pending.clear()
        return result

    def finish(self, track: int, frame: int) -> list[Crossing]:
        """The tracker dropped this track: a side change it held to its end counts (if the track was
        confirmed); its state is remembered briefly for ID-switch inheritance. Returns what it counted."""
        st = self.states.pop(track, None)
        out: list[Crossing] = []
        if st is not None and st.candidate is not None and st.confirmed:
            out.append(st.candidate)
            self.counts[st.candidate.direction] += 1
            st.candidate = None
        if st is not None and st.last is not None and not st.pending:
            self.ended.append((st.last_frame, st.last, st))
        self.ended = [e for e in self.ended if frame - e[0] <= self.inherit_frames]
        return out


def point_in_polygon(x: float, y: float, poly: list[tuple[float, float]]) -> bool:
    """Ray casting; points on an edge may fall either way."""
    inside = False
    n = len(poly)
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


class Zone:
    """Polygon zone: who is inside now and how long they stayed."""

    def __init__(self, name: str, polygon: list[tuple[float, float]]) -> None:
        if len(polygon) < 3:
            raise ValueError(f"zone {name!r} needs at least 3 points")
        self.name, self.polygon = name, polygon
        self.entered: dict[int, float] = {}
        self.dwells: list[float] = []

    def update(self, track: int, x: float, y: float, t: float) -> None:
        inside = point_in_polygon(x, y, self.polygon)
        if inside and track not in self.entered:
            self.entered[track] = t
        elif not inside and track in self.entered:
            self.dwells.append(t - self.entered.pop(track))

    def finish(self, track: int, t: float) -> None:
        if track in self.entered:
            self.dwells.append(t - self.entered.pop(track))

    @property
    def occupancy(self) -> int:
        return len(self.entered)


@dataclass
class Occupancy:
    """Site occupancy = ins − outs + correction (a head count from staff or gates resets drift)."""

    ins: int = 0
    outs: int = 0
    correction: int = 0

    @property
    def value(self) -> int:
        return max(0, self.ins - self.outs + self.correction)

    def correct_to(self, actual: int) -> None:
        """Drift correction hook: set the correction so the occupancy equals a trusted count."""
        self.correction = actual - (self.ins - self.outs)

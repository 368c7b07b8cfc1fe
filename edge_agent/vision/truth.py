"""The referee: true line crossings from ground-truth tracks alone. Pure: no cv2, no I/O.

It shares nothing with the counting rules it judges (no hysteresis margin, no inheritance, no
confirmation). The one rule, for every GT track and every line:

- the anchor is the box's bottom-centre, one point per annotated frame, in frame order;
- its side is the sign of (Bx−Ax)(Py−Ay) − (By−Ay)(Px−Ax); a point exactly on the line keeps the side
  it had (so touching the line is no change);
- a change of side is a crossing when the new side then holds for at least `MIN_FRAMES` (N = 3)
  annotated frames of that track, or until the track ends (someone who crosses and leaves the picture
  at once has crossed); shorter excursions are ignored, and a crossing is always measured from the
  last *held* side, so an excursion never produces an in/out pair;
- the step that changes side must pass between A and B (the line is a segment, not an infinite line);
- from side > 0 to side < 0 is "in", the reverse "out" (the same orientation as `LineCounter`).

A track may cross the same line any number of times (in, out, in…): the referee does not cap them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MIN_FRAMES = 3  # N: a side change must hold this many annotated frames (or to the track's end)

Point = tuple[float, float]


@dataclass(frozen=True)
class TrueCrossing:
    track: int
    direction: str  # "in" | "out"
    frame: int  # first annotated frame on the new side


def _side(a: Point, b: Point, p: Point) -> float:
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def _passes_segment(a: Point, b: Point, p0: Point, p1: Point) -> bool:
    """Where the step p0→p1 meets the infinite line through A, B lies between A and B."""
    s0, s1 = _side(a, b, p0), _side(a, b, p1)
    t = s0 / (s0 - s1) if s0 != s1 else 0.5
    x, y = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
    dx, dy = b[0] - a[0], b[1] - a[1]
    u = ((x - a[0]) * dx + (y - a[1]) * dy) / (dx * dx + dy * dy)
    return 0.0 <= u <= 1.0


def track_crossings(track: int, path: list[tuple[int, Point]], a: Point, b: Point,
                    min_frames: int = MIN_FRAMES) -> list[TrueCrossing]:
    """Crossings of one track; `path` is (frame, bottom-centre) in frame order."""
    if a == b:
        raise ValueError("line end points are the same")
    sides: list[int] = []
    for _, p in path:
        s = _side(a, b, p)
        sides.append((1 if s > 0 else -1) if s != 0 else (sides[-1] if sides else 0))
    # Runs of the same side: (side, first index, length); leading on-the-line points join the first side.
    runs: list[tuple[int, int, int]] = []
    for i, s in enumerate(sides):
        if runs and (s == runs[-1][0] or s == 0):
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((s, i, 1))
    out: list[TrueCrossing] = []
    held: tuple[int, int] | None = None  # (side, index of its last point)
    for k, (side, start, length) in enumerate(runs):
        last = start + length - 1
        holds = length >= min_frames or k == len(runs) - 1
        if held is None:
            if side:
                held = (side, last)  # the first side is where the track starts, however briefly
            continue
        if side == held[0]:
            held = (side, last)
        elif holds and side:
            p0, p1 = path[start - 1][1], path[start][1]
            if _passes_segment(a, b, p0, p1):
                out.append(TrueCrossing(track, "in" if held[0] > 0 else "out", path[start][0]))
            held = (side, last)
    return out


def true_crossings(boxes: Mapping[int, Mapping[int, Iterable[float]]], a: Point, b: Point,
                   min_frames: int = MIN_FRAMES) -> list[TrueCrossing]:
    """All crossings of GT boxes {frame: {track id: (x1, y1, x2, y2)}} over the segment A→B."""
    paths: dict[int, list[tuple[int, Point]]] = {}
    for f in sorted(boxes):
        for tid, box in boxes[f].items():
            x1, _, x2, y2 = (float(v) for v in list(box)[:4])
            paths.setdefault(tid, []).append((f, ((x1 + x2) / 2, y2)))
    out = [c for tid, path in paths.items() for c in track_crossings(tid, path, a, b, min_frames)]
    return sorted(out, key=lambda c: (c.frame, c.track))


def tally(crossings: Iterable[TrueCrossing]) -> dict[str, int]:
    counts = {"in": 0, "out": 0}
    for c in crossings:
        counts[c.direction] += 1
    return counts

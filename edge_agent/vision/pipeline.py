"""Detector + tracker + counters + gating, frame by frame; per-interval aggregates for the outbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_agent.vision.counting import Crossing, LineCounter, Occupancy, Zone
from edge_agent.vision.detector import Detector
from edge_agent.vision.gating import Gate, GateConfig, MotionDetector
from edge_agent.vision.tracker import ByteTracker, Track, TrackerConfig


@dataclass
class FrameResult:
    index: int
    detected: bool
    tracks: list[Track]
    crossings: list[Crossing]


@dataclass
class Stats:
    frames: int = 0
    detections: int = 0
    seconds: float = 0.0
    by_line: dict[str, dict[str, int]] = field(default_factory=dict)


def line_roi(lines: list[LineCounter], w: int, h: int, pad: int) -> tuple[int, int, int, int]:
    xs = [p[0] for ln in lines for p in (ln.a, ln.b)]
    ys = [p[1] for ln in lines for p in (ln.a, ln.b)]
    return (max(0, int(min(xs)) - pad), max(0, int(min(ys)) - pad), min(w, int(max(xs)) + pad),
            min(h, int(max(ys)) + pad))


class Pipeline:
    def __init__(self, detector: Detector, lines: list[LineCounter], zones: list[Zone] | None = None,
                 gate: GateConfig | None = None, tracker: TrackerConfig | None = None,
                 must_detect: Callable[[list[Track]], bool] | None = None) -> None:
        self.detector = detector
        self.must_detect = must_detect  # a job's own reason to detect now (a guarded e-fence zone occupied)
        self.lines = lines
        self.zones = zones or []
        self.tracker = ByteTracker(tracker)
        self.gate = Gate(gate) if gate else None
        self.motion: MotionDetector | None = None
        self.occupancy = Occupancy()
        self.stats = Stats()
        self._alive: set[int] = set()

    def _motion(self, image: np.ndarray) -> float:
        assert self.gate is not None
        if self.motion is None:
            h, w = image.shape[:2]
            roi = line_roi(self.lines, w, h, int(max(self.gate.cfg.near_line_px * 3, 48))) if self.lines else None
            self.motion = MotionDetector(roi)
        return self.motion(image)

    def _near_line(self, tracks: list[Track]) -> bool:
        assert self.gate is not None
        px = self.gate.cfg.near_line_px
        for t in tracks:
            b = t.box
            x, y = float((b[0] + b[2]) / 2), float(b[3])
            k = self.gate.stride * self.gate.cfg.lookahead  # where it may be by the next detection
            vx = float(t.mean[4]) * k
            for ln in self.lines:
                d = ln.side_value(x, y) / ln.length
                d2 = ln.side_value(x + vx, y + float(t.mean[5]) * k) / ln.length
                # Predicted to cross before the next detection (always), or closer than near_line_px.
                if (d > 0) != (d2 > 0) or abs(d) < px or abs(d2) < px:
                    return True
        return False

    def process(self, image: np.ndarray | Callable[[], np.ndarray], index: int, t: float | None = None) -> FrameResult:
        """One frame. `image` may be a callable that decodes it: frames that are neither examined for
        motion nor detected are then never converted to pixels."""
        start = time.perf_counter()
        t = float(index) if t is None else t
        get = image if callable(image) else (lambda: image)
        detect = True
        if self.gate is not None:
            live = [tr for tr in self.tracker.tracks if not tr.lost]
            # Motion only decides anything when nothing is tracked: skip computing it otherwise.
            motion = self._motion(get()) if not live else 0.0
            if live and self.motion is not None:
                self.motion.prev = None  # a stale reference frame would fake motion later
            urgent = self._near_line(live) or (self.must_detect is not None and self.must_detect(live))
            detect = self.gate.should_detect(motion, len(live), urgent)
        dets = self.detector.detect(get()) if detect else None
        tracks = self.tracker.step(dets)
        crossings = self._count(tracks, index, t)
        elapsed = time.perf_counter() - start
        if self.gate is not None:
            self.gate.observe_load(elapsed)
        self.stats.frames += 1
        self.stats.detections += int(detect)
        self.stats.seconds += elapsed
        return FrameResult(index, detect, tracks, crossings)

    def _count(self, tracks: list[Track], index: int, t: float) -> list[Crossing]:
        crossings = []
        now = {tr.id for tr in self.tracker.tracks}
        for gone in self._alive - now:
            for ln in self.lines:
                crossings += ln.finish(gone, index)  # a crossing held until the track ended
            for z in self.zones:
                z.finish(gone, t)
        self._alive = now
        for tr in tracks:
            b = tr.box
            x, y = float((b[0] + b[2]) / 2), float(b[3])
            # Lines count observed positions only: a Kalman prediction between detections can carry a
            # person over a line they never crossed (stopped, turned back). The gate forces a detection
            # when a crossing is predicted, so observations near a line stay dense.
            for ln in self.lines if tr.age == 0 else ():
                c = ln.update(tr.id, x, y, index, tr.confirmed, float(b[3] - b[1]))
                if c is not None:
                    crossings.append(c)
            if tr.confirmed:
                for z in self.zones:
                    z.update(tr.id, x, y, t)
        for c in crossings:
            if c.direction == "in":
                self.occupancy.ins += 1
            else:
                self.occupancy.outs += 1
        return crossings

    def close(self, index: int) -> list[Crossing]:
        """End of the source: every track ends here, so side changes held to the end count."""
        crossings = [c for tid in sorted(self._alive) for ln in self.lines for c in ln.finish(tid, index)]
        self._alive = set()
        for c in crossings:
            if c.direction == "in":
                self.occupancy.ins += 1
            else:
                self.occupancy.outs += 1
        return crossings

    def counts(self) -> dict[str, dict[str, int]]:
        return {ln.name: dict(ln.counts) for ln in self.lines}


class Aggregator:
    """Per-interval counts for the outbox (one `measurement` per line and interval)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval = interval_s
        self.window_start: float | None = None
        self.current: dict[str, dict[str, int]] = {}

    def add(self, crossings: list[Crossing], t: float) -> list[dict[str, Any]]:
        """Record crossings at time t; returns the finished intervals, if t closed one."""
        out = []
        if self.window_start is None:
            self.window_start = t - (t % self.interval)
        while t >= self.window_start + self.interval:
            out.append({"from": self.window_start, "to": self.window_start + self.interval,
                        "lines": self.current})
            self.current = {}
            self.window_start += self.interval
        for c in crossings:
            line = self.current.setdefault(c.line, {"in": 0, "out": 0})
            line[c.direction] += 1
        return out

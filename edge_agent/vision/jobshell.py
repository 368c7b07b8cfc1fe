"""The shell around vision/jobs.py for one camera: builds the jobs from its config, feeds them each frame's
confirmed tracks, writes their events as records and drives the car park's LED board."""

from __future__ import annotations

import logging
from typing import Any

from edge_agent.core.ports import Sink
from edge_agent.records import DataClass
from edge_agent.vision.config import VisionProducerConfig
from edge_agent.vision.counting import Crossing
from edge_agent.vision.jobs import (
    Alarm,
    CarPark,
    Cleared,
    DensityZone,
    IntrusionZone,
    Level,
    Levels,
    Schedule,
    carpark_rows,
)

logger = logging.getLogger(__name__)


def anchors(tracks: list[Any], confirmed: bool = True) -> list[tuple[float, float]]:
    """Box bottom-centre of each (confirmed) track: where a person stands, where a car touches the ground."""
    return [(float((t.box[0] + t.box[2]) / 2), float(t.box[3])) for t in tracks if t.confirmed or not confirmed]


class Jobs:
    def __init__(self, cfg: VisionProducerConfig, sink: Sink) -> None:
        self.cfg, self.sink = cfg, sink
        self.intrusion = [IntrusionZone(z.name, list(z.polygon), Schedule(z.open_hours, z.timezone), z.min_s,
                                        z.clear_s, z.gap_s) for z in cfg.intrusion]
        self.density = [DensityZone(z.name, list(z.polygon), z.capacity,
                                    Levels(tuple(sorted(z.thresholds)), z.hysteresis, z.hold_s)) for z in cfg.density]
        cp = cfg.carpark
        self.carpark = CarPark(cp.capacity) if cp else None
        self.board: Any = None
        if cp and cp.display:
            from edge_agent.drivers.display import Board

            d = cp.display
            self.board = Board(d.port, d.baud, d.encoding, d.ack)
        self._shown: list[tuple[str, str]] | None = None
        self.now: float | None = None
        self._carpark_sent: tuple[int, int] | None = None

    def must_detect(self, tracks: list[Any]) -> bool:
        """For the gated pipeline: detect on every frame while a guarded e-fence zone holds a track, so its
        track is confirmed and timed as on an every-frame camera (time of the previous frame)."""
        pts = anchors(tracks, confirmed=False)
        return self.now is not None and any(z.watching(self.now, pts) for z in self.intrusion)

    def tick(self, now: float, tracks: list[Any], crossings: list[Crossing]) -> None:
        self.now = now
        points = anchors(tracks) if self.intrusion or self.density else []
        for z in self.intrusion:
            for e in z.tick(now, points):
                self._intrusion(e)
        for d in self.density:
            for lv in d.tick(now, points):
                self._level(lv)
        self.crossed(crossings)

    def crossed(self, crossings: list[Crossing]) -> None:
        """Line crossings (also those a file's end releases): the car park's count."""
        if self.carpark is not None:
            self._carpark(crossings)

    def _intrusion(self, e: Alarm | Cleared) -> None:
        c = self.cfg.name
        if isinstance(e, Alarm):
            logger.warning("camera %s: intrusion in zone %s (%d people)", c, e.zone, e.people)
            body: dict[str, Any] = {"camera": c, "zone": e.zone, "state": "alarm", "since": e.since, "people": e.people}
        else:
            logger.info("camera %s: intrusion alarm in zone %s cleared", c, e.zone)
            body = {"camera": c, "zone": e.zone, "state": "cleared", "alarm_s": round(e.alarm_s, 1)}
        self.sink.put(DataClass.TRANSACTION, "vision.intrusion", body, ts=e.at)

    def _level(self, lv: Level) -> None:
        self.sink.put(DataClass.TRANSACTION, "vision.density_alert",
                      {"camera": self.cfg.name, "zone": lv.zone, "level": lv.level, "previous": lv.previous,
                       "people": lv.people}, ts=lv.at)

    def _carpark(self, crossings: list[Crossing]) -> None:
        cp, line = self.carpark, self.cfg.carpark.line  # type: ignore[union-attr]
        assert cp is not None
        for x in crossings:
            if x.line == line:
                cp.passed(x.direction)
        now = (cp.inside, cp.free)
        if now != self._carpark_sent:
            self.sink.put(DataClass.STATE, "vision.carpark",
                          {"camera": self.cfg.name, "capacity": cp.capacity, "inside": cp.inside, "free": cp.free},
                          key=f"carpark:{self.cfg.name}")
            self._carpark_sent = now
        rows = carpark_rows(cp.free, cp.capacity)
        if self.board is not None and rows != self._shown and self.board.show(rows):
            self._shown = rows  # a board that failed is tried again on a later frame

    def emit_interval(self) -> None:
        """Per reporting interval: people and peak per density zone."""
        if not self.density:
            return
        zones = {d.name: {"people": d.people, "peak": d.take_peak(), "capacity": d.capacity,
                          "level": d.levels.level} for d in self.density}
        self.sink.put(DataClass.STATE, "vision.density", {"camera": self.cfg.name, "zones": zones},
                      key=f"density:{self.cfg.name}")

    def close(self) -> None:
        if self.board is not None:
            self.board.close()

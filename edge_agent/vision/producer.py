"""Vision producer: counts from one camera into the outbox.

Records: `vision.count` (measurement, per interval and line), `vision.crossing` (measurement, one per
crossing, when enabled), `vision.occupancy` (state: ins − outs and zone occupancy), and
`vision.camera` (state: available / unavailable). The other jobs of the same pipeline (vision/jobs.py):
`vision.intrusion` (transaction: alarm / cleared), `vision.density_alert` (transaction: level change) and
`vision.density` (state, per interval), `vision.carpark` (state: free spaces, also on the LED board).
Cameras naming the same `detector` share one onnxruntime session (vision/session.py). No image ever leaves
the device; debug snapshots (an annotated JPEG per crossing) are written locally only when `snapshot_dir`
is set, and rotated.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from edge_agent.core.backoff import Backoff
from edge_agent.core.ports import Context, Handler, Sink
from edge_agent.records import DataClass
from edge_agent.vision.config import VisionProducerConfig

logger = logging.getLogger(__name__)


class VisionProducer:
    def __init__(self, cfg: VisionProducerConfig, ctx: Context) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name

    def commands(self) -> dict[str, Handler]:
        return {}

    def _pipeline(self, must_detect: Any = None) -> Any:
        from edge_agent.vision.counting import LineCounter, Zone
        from edge_agent.vision.detector import OnnxDetector, default_model_dir
        from edge_agent.vision.gating import GateConfig
        from edge_agent.vision.pipeline import Pipeline
        from edge_agent.vision.session import POOL, SessionSpec

        c = self.cfg
        spec = SessionSpec(Path(c.model) if c.model else default_model_dir(), tuple(c.providers), c.threads,
                           c.provider_fallback, c.trt_cache_dir, c.trt_fp16, c.spin)
        det = OnnxDetector(classes=c.class_ids(), session=POOL.get(c.detector, spec))
        lines = [LineCounter(ln.name, ln.points[:2], ln.points[2:], ln.margin_px) for ln in c.lines]
        zones = [Zone(z.name, list(z.polygon)) for z in c.zones]
        return Pipeline(det, lines, zones, gate=None if c.every_frame else GateConfig(stride=c.stride),
                        must_detect=must_detect)

    def run(self, stop: threading.Event) -> None:
        from edge_agent.vision.jobshell import Jobs

        jobs = Jobs(self.cfg, self.ctx.sink)
        pipe = self._pipeline(jobs.must_detect if self.cfg.intrusion else None)
        try:
            self._loop(stop, pipe, jobs)
        finally:
            jobs.close()  # the LED board's port

    def _loop(self, stop: threading.Event, pipe: Any, jobs: Any) -> None:
        from edge_agent.vision.pipeline import Aggregator
        from edge_agent.vision.sources import SourceUnavailable, open_source

        c, sink = self.cfg, self.ctx.sink
        agg = Aggregator(c.interval_s)
        backoff = Backoff(1, 60)
        available: bool | None = None
        t, last = 0.0, 0
        while not stop.is_set():
            t0: float | None = None  # a replayed file's frame times restart at 0: so does the jobs' offset
            try:
                for frame in open_source(c.source):
                    if stop.is_set():
                        break
                    if available is not True:
                        available = True
                        sink.put(DataClass.STATE, "vision.camera", {"camera": c.name, "available": True},
                                 key=f"camera:{c.name}")
                    if t0 is None:  # a file's frame times start at 0: the jobs' clock starts now
                        t0 = 0.0 if frame.t > 1e9 else self.ctx.clock.time()
                    t = frame.t
                    r = pipe.process(lambda f=frame: f.image, frame.index, frame.t)
                    jobs.tick(t0 + frame.t, r.tracks, r.crossings)
                    if r.crossings and c.snapshot_dir is not None:
                        self._snapshot(frame, r, pipe)
                    self._publish(sink, r.crossings, frame.t)
                    for interval in agg.add(r.crossings, frame.t):
                        self._emit(sink, pipe, interval)
                        jobs.emit_interval()
                    last = frame.index
                tail = pipe.close(last)  # end of a file: side changes held to the end count
                self._publish(sink, tail, t)
                jobs.crossed(tail)
                for interval in agg.add(tail, t):
                    self._emit(sink, pipe, interval)
                    jobs.emit_interval()
                for interval in agg.add([], t + c.interval_s):  # end of a file: flush the open interval
                    self._emit(sink, pipe, interval)
                    jobs.emit_interval()
                if not c.loop:
                    stop.wait()
                    return
            except SourceUnavailable as err:
                if available is not False:
                    available = False
                    logger.error("camera %s unavailable: %s", c.name, err)
                    sink.put(DataClass.STATE, "vision.camera", {"camera": c.name, "available": False,
                                                                "reason": str(err)[:200]}, key=f"camera:{c.name}")
                stop.wait(backoff.next())

    def _publish(self, sink: Sink, crossings: list[Any], t: float) -> None:
        c = self.cfg
        for x in crossings:  # e.g. a gate role adding camera-counted doors to its occupancy
            self.ctx.bus.publish(f"vision/{c.name}/{x.line}", x.direction)
        if c.emit_crossings:
            for x in crossings:
                sink.put(DataClass.MEASUREMENT, "vision.crossing",
                         {"camera": c.name, "line": x.line, "dir": x.direction, "track": x.track},
                         ts=t if t > 1e9 else None)

    def _snapshot(self, frame: Any, result: Any, pipe: Any) -> None:
        """Local, opt-in: the frame with boxes, ids and lines; keeps the newest `snapshot_keep`."""
        import cv2

        from edge_agent.vision.annotate import draw

        folder = Path(self.cfg.snapshot_dir)  # type: ignore[arg-type]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            name = folder / f"{self.cfg.name}-{frame.index:08d}-{result.crossings[0].line}.jpg"
            cv2.imwrite(str(name), draw(frame.image, result.tracks, pipe.lines))
            old = sorted(folder.glob(f"{self.cfg.name}-*.jpg"), key=lambda p: p.stat().st_mtime_ns)
            for p in old[: max(0, len(old) - self.cfg.snapshot_keep)]:
                p.unlink(missing_ok=True)
        except OSError as err:  # a full or read-only disk must not stop counting
            logger.warning("debug snapshot not written: %s", err)

    def _emit(self, sink: Sink, pipe: Any, interval: dict[str, Any]) -> None:
        c = self.cfg
        lines = {ln.name: interval["lines"].get(ln.name, {"in": 0, "out": 0}) for ln in c.lines}
        sink.put(DataClass.MEASUREMENT, "vision.count",
                 {"camera": c.name, "from": interval["from"], "to": interval["to"], "lines": lines})
        sink.put(DataClass.STATE, "vision.occupancy",
                 {"camera": c.name, "inside": pipe.occupancy.value,
                  "zones": {z.name: z.occupancy for z in pipe.zones}}, key=f"occupancy:{c.name}")

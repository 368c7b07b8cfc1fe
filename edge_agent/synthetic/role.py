"""Synthetic scenic-spot gate: passes (transaction), interval counts (measurement), occupancy (state).

Used by `edge-agent demo` until real gates and cameras are configured, and by the fault tests: with
`journal` set, the id of every pass confirmed durable is appended to a file, so a test can check that
everything the device promised reached the hub exactly once.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import IO

from edge_agent.core.ports import Context, Handler
from edge_agent.records import DataClass
from edge_agent.store import OutboxError
from edge_agent.synthetic.config import SyntheticProducerConfig

logger = logging.getLogger(__name__)


class SyntheticGate:
    def __init__(self, cfg: SyntheticProducerConfig, ctx: Context) -> None:
        self.cfg, self.ctx, self.boot, self.name = cfg, ctx, ctx.boot, cfg.name
        self.rng = random.Random(cfg.seed)  # nosec B311: synthetic test traffic, reproducible by seed
        self.passes = 0
        self.inside = 0

    def commands(self) -> dict[str, Handler]:
        return {}

    def run(self, stop: threading.Event) -> None:
        cfg, sink, clock = self.cfg, self.ctx.sink, self.ctx.clock
        journal: IO[str] | None = open(cfg.journal, "a", buffering=1) if cfg.journal else None  # noqa: SIM115
        period = 1.0 / cfg.rate_per_s
        next_at = clock.monotonic()
        window_start = clock.time()
        counts = {"in": 0, "out": 0}
        try:
            while not stop.is_set() and (cfg.limit is None or self.passes < cfg.limit):
                direction = "in" if self.inside == 0 or self.rng.random() < 0.55 else "out"
                pass_id = f"{self.boot}-{self.passes}"
                try:
                    res = sink.put(DataClass.TRANSACTION, "gate.pass",
                                   {"id": pass_id, "gate": cfg.name, "dir": direction})
                except OutboxError as err:
                    logger.error("pass %s not stored: %s", pass_id, err)
                    stop.wait(1)
                    continue
                if journal and res.ok:
                    journal.write(pass_id + "\n")
                self.passes += 1
                counts[direction] += 1
                self.inside += 1 if direction == "in" else -1
                now = clock.time()
                if now - window_start >= cfg.count_interval_s:
                    sink.put(DataClass.MEASUREMENT, "gate.count",
                             {"gate": cfg.name, "from": window_start, "to": now, **counts})
                    sink.put(DataClass.STATE, "site.occupancy", {"inside": self.inside}, key="occupancy")
                    counts = {"in": 0, "out": 0}
                    window_start = now
                next_at += period
                delay = next_at - clock.monotonic()
                if delay > 0:
                    stop.wait(delay)
                else:
                    next_at = clock.monotonic()  # fell behind (slow disk): do not burst to catch up
            if not stop.is_set():
                stop.wait()  # limit reached: stay idle instead of being restarted by the supervisor
        finally:
            if journal:
                journal.close()

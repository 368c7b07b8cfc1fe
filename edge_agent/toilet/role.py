"""The smart-toilet role as an agent producer.

Records: measurement `toilet.air` (latest T/RH/NH3/H2S every `air_interval_s`), measurement `toilet.flow`
(visitors per interval from the counter), state `toilet.stalls` (free/total/occupied, on change),
state `toilet.sensor` (available/unavailable per sensor, on change), transaction `toilet.alert`
(raised/cleared) and `toilet.cleaned` (staff tag or downlink `toilet.cleaned`). Free stalls go to the display.

This is the shell: it polls the wired bus, gathers node and staff events, and writes what the block's pure rules
(toilet/block.py) decide. A sensor that keeps failing becomes "unavailable"; nothing it does raises from run().
"""

from __future__ import annotations

import logging
import queue
import threading
from functools import partial
from typing import Any

from edge_agent.core.ports import CommandError, Context, Emit, Handler
from edge_agent.drivers.display import Board
from edge_agent.drivers.serialio import read_lines
from edge_agent.toilet import profiles
from edge_agent.toilet.block import Block, Cleaned, Input, NodeAir, NodeStall, Polled, Show
from edge_agent.toilet.config import ToiletInput, ToiletRoleConfig
from edge_agent.toilet.modbus import Bus, Sensor

logger = logging.getLogger(__name__)


class ToiletRole:
    def __init__(self, cfg: ToiletRoleConfig, ctx: Context) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        known = profiles.load(cfg.profiles)
        self.sensors = {}
        for s in cfg.sensors:
            if s.profile not in known:
                raise ValueError(f"sensor {s.name}: unknown profile {s.profile!r}; known: {sorted(known)}")
            p = known[s.profile]
            self.sensors[s.name] = Sensor(s.name, p, s.address or p.default_address)
        for role, inputs in (("stall", cfg.stalls), ("leak", cfg.leaks), ("consumable", cfg.consumables)):
            for key, inp in inputs.items():
                self._check_input(f"{role} {key}", inp)
        if cfg.flow:
            self._check_input("flow", cfg.flow)
        self._inputs: queue.SimpleQueue[Input] = queue.SimpleQueue()  # node events, cleaning: for the next tick
        d = cfg.display
        self.board = Board(d.port, d.baud, d.encoding, d.ack) if d else None

    def _check_input(self, what: str, inp: ToiletInput) -> None:
        s = self.sensors.get(inp.sensor)
        if s is None or inp.point not in {r.name for r in s.profile.registers}:
            raise ValueError(f"{what}: no register {inp.point!r} on sensor {inp.sensor!r}")

    def commands(self) -> dict[str, Handler]:
        def cleaned(args: dict[str, Any]) -> dict[str, Any]:
            staff = str(args.get("staff", ""))[:32]
            if not staff:
                raise CommandError("toilet.cleaned needs args.staff")
            self._inputs.put(Cleaned(staff))
            return {"queued": True}

        return {"toilet.cleaned": cleaned}

    def _on_node(self, node: str, kind: str, event: dict[str, Any]) -> None:
        """A node's stall or air reading (from the `nodes` role, on the agent's bus)."""
        if kind == "stall" and isinstance(event.get("stall"), int):
            self._inputs.put(NodeStall(node, event["stall"], bool(event.get("occupied"))))
        elif kind == "air":
            gases = {k: float(v) for k, v in event.items() if k.endswith("_ppm") and isinstance(v, int | float)}
            self._inputs.put(NodeAir(node, gases))

    def run(self, stop: threading.Event) -> None:
        c, sink, clock = self.cfg, self.ctx.sink, self.ctx.clock
        block = Block(c)
        bus: Bus | None = None
        if self.sensors:
            first = next(iter(self.sensors.values())).profile
            bus = Bus(c.port or "", c.baud or first.baud, c.parity or first.parity, c.timeout_s, c.retries, c.echo)
        unsubscribe = [self.ctx.bus.subscribe(f"node/{n}/{kind}", partial(self._on_node, n, kind))
                       for n in c.nodes for kind in ("stall", "air")]
        if c.staff_reader:
            threading.Thread(target=read_lines, args=(c.staff_reader, 9600, self._staff_line, stop, 64),
                             name="staff-reader", daemon=True).start()
        shown: Show | None = None
        try:
            while not stop.is_set():
                t0 = clock.monotonic()
                inputs: list[Input] = []
                for s in self.sensors.values():
                    if bus is not None:
                        bus.poll(s, c.fail_after)
                    inputs.append(Polled(s.name, s.available, dict(s.values), s.last_error))
                while not self._inputs.empty():
                    inputs.append(self._inputs.get())
                for e in block.tick(clock.time(), inputs):
                    if isinstance(e, Emit):
                        e.put(sink)
                    else:
                        shown = e
                if shown is not None and (self.board is None or self.board.show(list(shown.rows))):
                    shown = None  # on the board (a board that failed is tried again next round)
                stop.wait(max(0.0, c.poll_s - (clock.monotonic() - t0)))
        finally:
            for cancel in unsubscribe:
                cancel()
            if bus is not None:
                bus.close()
            if self.board is not None:
                self.board.close()

    def _staff_line(self, line: str) -> None:
        """A tag reader on serial types `STAFF:<id>` lines (RFID/NFC wedge readers do)."""
        if line.startswith("STAFF:") and 1 < len(line) <= 38:
            self._inputs.put(Cleaned(line[6:]))

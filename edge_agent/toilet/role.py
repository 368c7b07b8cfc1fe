"""The smart-toilet role as an agent producer.

Records: measurement `toilet.air` (latest T/RH/NH3/H2S every `air_interval_s`), measurement `toilet.flow`
(visitors per interval from the counter), state `toilet.stalls` (free/total/occupied, on change),
state `toilet.sensor` (available/unavailable per sensor, on change), transaction `toilet.alert`
(raised/cleared) and `toilet.cleaned` (staff tag or downlink `toilet.cleaned`). Free stalls go to the display.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from functools import partial
from typing import Any

from edge_agent.core.ports import CommandError, Context, Handler
from edge_agent.drivers.display import Board
from edge_agent.drivers.serialio import read_lines
from edge_agent.records import DataClass
from edge_agent.toilet import profiles
from edge_agent.toilet.config import ToiletInput, ToiletRoleConfig
from edge_agent.toilet.modbus import Bus, Sensor
from edge_agent.toilet.rules import Limits, Rules

logger = logging.getLogger(__name__)


def keep_worst(into: dict[str, float], values: dict[str, float]) -> None:
    """Merge readings, keeping the highest of each (the worst air anywhere in the block decides)."""
    for k, v in values.items():
        into[k] = max(v, into.get(k, v))


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
        self.rules = Rules(Limits(**cfg.limits.model_dump()))
        self._cleaned: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._node_stalls: dict[str, bool] = {}  # "<node>:<n>" -> occupied
        self._node_air: dict[str, tuple[float, dict[str, float]]] = {}  # node -> (monotonic time, values)
        self._node_lock = threading.Lock()
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
            self._cleaned.put(staff)
            return {"queued": True}

        return {"toilet.cleaned": cleaned}

    def _value(self, inp: ToiletInput) -> float | None:
        s = self.sensors[inp.sensor]
        v = s.values.get(inp.point) if s.available else None
        return None if v is None else float(not v if inp.invert else v)

    def _states(self, inputs: dict[str, ToiletInput]) -> dict[str, bool]:
        """On/off of each input whose sensor answered (inputs of an unavailable sensor are left out)."""
        return {k: bool(v) for k, inp in inputs.items() if (v := self._value(inp)) is not None}

    def _on_node(self, node: str, kind: str, event: dict[str, Any]) -> None:
        with self._node_lock:
            if kind == "stall" and isinstance(event.get("stall"), int):
                self._node_stalls[f"{node}:{event['stall']}"] = bool(event.get("occupied"))
            elif kind == "air":
                gases = {k: float(v) for k, v in event.items() if k.endswith("_ppm") and isinstance(v, int | float)}
                self._node_air[node] = (time.monotonic(), gases)

    def _node_view(self) -> tuple[dict[str, bool], dict[str, float]]:
        """Stalls and fresh air readings from the block's wireless nodes (worst value per gas)."""
        fresh = time.monotonic() - self.cfg.node_stale_s
        air: dict[str, float] = {}
        with self._node_lock:
            for at, values in self._node_air.values():
                if at >= fresh:
                    keep_worst(air, values)
            return dict(self._node_stalls), air

    def run(self, stop: threading.Event) -> None:
        c, sink = self.cfg, self.ctx.sink
        bus: Bus | None = None
        if self.sensors:
            first = next(iter(self.sensors.values())).profile
            bus = Bus(c.port or "", c.baud or first.baud, c.parity or first.parity, c.timeout_s, c.retries, c.echo)
        unsubscribe = [self.ctx.bus.subscribe(f"node/{n}/{kind}", partial(self._on_node, n, kind))
                       for n in c.nodes for kind in ("stall", "air")]
        if c.staff_reader:
            threading.Thread(target=read_lines, args=(c.staff_reader, 9600, self._staff_line, stop, 64),
                             name="staff-reader", daemon=True).start()
        last_stalls: Any = None
        next_air = next_flow = time.monotonic()
        flow_base: float | None = None
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                for s in self.sensors.values():
                    if bus is not None and bus.poll(s, c.fail_after):
                        sink.put(DataClass.STATE, "toilet.sensor",
                                 {"sensor": s.name, "available": s.available, "error": s.last_error or None},
                                 key=f"sensor:{s.name}")
                node_stalls, node_air = self._node_view()
                stalls = {**self._states(c.stalls), **node_stalls}
                occupied = sorted(k for k, v in stalls.items() if v)
                view = {"free": len(stalls) - len(occupied), "total": len(c.stalls) + len(node_stalls),
                        "occupied": occupied, "unknown": sorted(set(c.stalls) - set(stalls))}
                if view != last_stalls:
                    sink.put(DataClass.STATE, "toilet.stalls", view, key="stalls")
                    last_stalls = view
                    self._show(view)
                air = {k: v for s in self.sensors.values() if s.available for k, v in s.values.items()
                       if k.endswith(("_ppm", "_c", "_pct"))}
                keep_worst(air, node_air)
                if t0 >= next_air and air:
                    sink.put(DataClass.MEASUREMENT, "toilet.air", air)
                    next_air = t0 + c.air_interval_s
                if c.flow and t0 >= next_flow and (total := self._value(c.flow)) is not None:
                    if flow_base is not None:
                        sink.put(DataClass.MEASUREMENT, "toilet.flow",
                                 {"visitors": max(0, int(total - flow_base)), "interval_s": c.air_interval_s})
                    flow_base, next_flow = total, t0 + c.air_interval_s
                alerts = self.rules.evaluate(time.time(), air, stalls, self._states(c.leaks),
                                             self._states(c.consumables))
                for event, key, details in alerts:
                    sink.put(DataClass.TRANSACTION, "toilet.alert", {"event": event, "alert": key, **details})
                while not self._cleaned.empty():
                    staff = self._cleaned.get()
                    cleared = self.rules.cleaned()
                    sink.put(DataClass.TRANSACTION, "toilet.cleaned", {"staff": staff, "cleared": cleared})
                    for key in cleared:
                        sink.put(DataClass.TRANSACTION, "toilet.alert", {"event": "cleared", "alert": key,
                                                                         "staff": staff})
                stop.wait(max(0.0, c.poll_s - (time.monotonic() - t0)))
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
            self._cleaned.put(line[6:])

    def _show(self, view: dict[str, Any]) -> None:
        if self.board is None:
            return
        free = view["free"]
        self.board.show([(f"空位 {free}/{view['total']} FREE", "G" if free else "R"),
                         ("满 FULL" if free == 0 else " ".join(f"{k}:{'X' if k in view['occupied'] else 'O'}"
                                                               for k in sorted(self.cfg.stalls))[:60], "Y")])

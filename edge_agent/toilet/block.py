"""A toilet block's rules as a pure state machine: what the sensors and nodes say in, records out.

    block = Block(cfg)       # the role's config: which inputs are stalls, leaks, consumables, the flow counter
    events = block.tick(now, [Polled("di", True, {"di0": 1.0}), NodeStall("wc-n1", 1, True), Cleaned("c-07")])

Inputs: Polled (one wired sensor after a poll: available or not, and its last good values), NodeStall/NodeAir (a
wireless node's event), Cleaned (a staff tag or the downlink `toilet.cleaned`). Events: Emit (a record: stall
view, sensor availability, air and flow measurements, alerts raised and cleared, cleaning) and Show (the
free-stall board's rows). `now` is wall-clock seconds; the air and flow intervals start again if the clock goes
back. No I/O, clock or threads: ToiletRole.run is the shell that polls, feeds and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.core.ports import Emit
from edge_agent.records import DataClass
from edge_agent.toilet.config import ToiletInput, ToiletRoleConfig
from edge_agent.toilet.rules import Limits, Rules

AIR_KEYS = ("_ppm", "_c", "_pct")


@dataclass(frozen=True)
class Polled:
    sensor: str
    available: bool | None  # None: not polled yet
    values: Mapping[str, float]
    error: str = ""


@dataclass(frozen=True)
class NodeStall:
    node: str
    stall: int
    occupied: bool


@dataclass(frozen=True)
class NodeAir:
    node: str
    gases: Mapping[str, float]


@dataclass(frozen=True)
class Cleaned:
    staff: str


@dataclass(frozen=True)
class Show:
    rows: tuple[tuple[str, str], ...]


Input = Polled | NodeStall | NodeAir | Cleaned
Event = Emit | Show


def keep_worst(into: dict[str, float], values: Mapping[str, float]) -> None:
    """Merge readings, keeping the highest of each (the worst air anywhere in the block decides)."""
    for k, v in values.items():
        into[k] = max(v, into.get(k, v))


def stall_rows(view: Mapping[str, Any], stalls: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The free-stall board: free/total, then each wired stall X (occupied) or O, or 满 FULL."""
    free = view["free"]
    states = " ".join(f"{k}:{'X' if k in view['occupied'] else 'O'}" for k in sorted(stalls))[:60]
    return ((f"空位 {free}/{view['total']} FREE", "G" if free else "R"), ("满 FULL" if free == 0 else states, "Y"))


class Block:
    def __init__(self, cfg: ToiletRoleConfig) -> None:
        self.cfg = cfg
        self.rules = Rules(Limits(**cfg.limits.model_dump()))
        self._wired: dict[str, Polled] = {}
        self._reported: dict[str, bool] = {}  # availability last written per sensor
        self._node_stalls: dict[str, bool] = {}  # "<node>:<n>" -> occupied
        self._node_air: dict[str, tuple[float, dict[str, float]]] = {}  # node -> (when, gases)
        self._view: dict[str, Any] | None = None
        self._next_air = self._next_flow = float("-inf")
        self._flow_base: float | None = None
        self._last = float("-inf")

    def tick(self, now: float, inputs: Iterable[Input] = ()) -> list[Event]:
        if now < self._last:  # the clock went back (NTP at boot): start the intervals again
            self._next_air = self._next_flow = now
        self._last = now
        out: list[Event] = []
        cleaned: list[str] = []
        for i in inputs:
            if isinstance(i, Polled):
                out += self._polled(i)
            elif isinstance(i, NodeStall):
                self._node_stalls[f"{i.node}:{i.stall}"] = i.occupied
            elif isinstance(i, NodeAir):
                self._node_air[i.node] = (now, dict(i.gases))
            else:
                cleaned.append(i.staff)
        stalls = {**self._states(self.cfg.stalls), **self._node_stalls}
        out += self._stall_view(stalls)
        air = self._air(now)
        out += self._measure(now, air)
        c = self.cfg
        for event, key, details in self.rules.evaluate(now, air, stalls, self._states(c.leaks),
                                                       self._states(c.consumables)):
            out.append(Emit(DataClass.TRANSACTION, "toilet.alert", {"event": event, "alert": key, **details}))
        for staff in cleaned:
            gone = self.rules.cleaned()
            out.append(Emit(DataClass.TRANSACTION, "toilet.cleaned", {"staff": staff, "cleared": gone}))
            out += [Emit(DataClass.TRANSACTION, "toilet.alert", {"event": "cleared", "alert": key, "staff": staff})
                    for key in gone]
        return out

    def _polled(self, p: Polled) -> list[Event]:
        self._wired[p.sensor] = p
        if p.available is None or self._reported.get(p.sensor) == p.available:
            return []
        self._reported[p.sensor] = p.available
        return [Emit(DataClass.STATE, "toilet.sensor",
                     {"sensor": p.sensor, "available": p.available, "error": p.error or None},
                     key=f"sensor:{p.sensor}")]

    def _value(self, inp: ToiletInput) -> float | None:
        p = self._wired.get(inp.sensor)
        v = p.values.get(inp.point) if p is not None and p.available else None
        return None if v is None else float(not v if inp.invert else v)

    def _states(self, inputs: Mapping[str, ToiletInput]) -> dict[str, bool]:
        """On/off of each input whose sensor answered (inputs of an unavailable sensor are left out)."""
        return {k: bool(v) for k, inp in inputs.items() if (v := self._value(inp)) is not None}

    def _stall_view(self, stalls: dict[str, bool]) -> list[Event]:
        c = self.cfg
        occupied = sorted(k for k, v in stalls.items() if v)
        view = {"free": len(stalls) - len(occupied), "total": len(c.stalls) + len(self._node_stalls),
                "occupied": occupied, "unknown": sorted(set(c.stalls) - set(stalls))}
        if view == self._view:
            return []
        self._view = view
        return [Emit(DataClass.STATE, "toilet.stalls", view, key="stalls"), Show(stall_rows(view, c.stalls))]

    def _air(self, now: float) -> dict[str, float]:
        """Wired readings of available sensors, with fresh node readings merged in (the worst of each gas)."""
        air = {k: v for p in self._wired.values() if p.available for k, v in p.values.items() if k.endswith(AIR_KEYS)}
        for at, gases in self._node_air.values():
            if at >= now - self.cfg.node_stale_s:
                keep_worst(air, gases)
        return air

    def _measure(self, now: float, air: dict[str, float]) -> list[Event]:
        out: list[Event] = []
        c = self.cfg
        if now >= self._next_air and air:
            out.append(Emit(DataClass.MEASUREMENT, "toilet.air", air))
            self._next_air = now + c.air_interval_s
        if c.flow and now >= self._next_flow and (total := self._value(c.flow)) is not None:
            if self._flow_base is not None:
                out.append(Emit(DataClass.MEASUREMENT, "toilet.flow",
                                {"visitors": max(0, int(total - self._flow_base)), "interval_s": c.air_interval_s}))
            self._flow_base, self._next_flow = total, now + c.air_interval_s
        return out

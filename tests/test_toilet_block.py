"""A toilet block's rules as a pure state machine: tick(now, inputs) -> events with plain values for time and
readings; no bus, no threads, no sleeps (the role over a real pty is in test_toilet.py)."""

from __future__ import annotations

from typing import Any

from edge_agent.core.ports import Emit
from edge_agent.toilet.block import Block, Cleaned, Event, NodeAir, NodeStall, Polled, Show
from edge_agent.toilet.config import ToiletRoleConfig
from edge_agent.toilet.rules import M_NH3

CFG = ToiletRoleConfig.model_validate({
    "type": "toilet", "port": "loop://", "air_interval_s": 60, "node_stale_s": 300, "nodes": ["wc-n1"],
    "limits": {"debounce_s": 60, "stall_max_s": 600},
    "sensors": [{"name": "th", "profile": "xy-md02"}, {"name": "nh3", "profile": "generic-nh3"},
                {"name": "di", "profile": "generic-di8"}, {"name": "flow", "profile": "generic-counter"}],
    "stalls": {"s1": {"sensor": "di", "point": "di0"}, "s2": {"sensor": "di", "point": "di1"}},
    "leaks": {"floor": {"sensor": "di", "point": "di6"}},
    "consumables": {"paper": {"sensor": "di", "point": "di7", "invert": True}},
    "flow": {"sensor": "flow", "point": "visitors_total"}})
T0 = 1_790_000_000.0
NH3_LIMIT_PPM = 1.0 * 24.45 / M_NH3  # 1.0 mg/m³ in ppm


def bus(*, s1: int = 0, leak: int = 0, paper: int = 1, nh3: float = 0.4, total: float = 100) -> list[Polled]:
    return [Polled("th", True, {"temperature_c": 23.1, "humidity_pct": 61.2}), Polled("nh3", True, {"nh3_ppm": nh3}),
            Polled("di", True, {"di0": s1, "di1": 0, "di6": leak, "di7": paper}),
            Polled("flow", True, {"visitors_total": total})]


def records(events: list[Event], kind: str) -> list[dict[str, Any]]:
    return [e.body for e in events if isinstance(e, Emit) and e.kind == kind]


def alerts(events: list[Event]) -> list[tuple[str, str]]:
    return [(b["event"], b["alert"]) for b in records(events, "toilet.alert")]


def test_first_poll_writes_stalls_air_and_shows_the_board_then_only_changes() -> None:
    block = Block(CFG)
    first = block.tick(T0, bus())
    assert records(first, "toilet.stalls") == [{"free": 2, "total": 2, "occupied": [], "unknown": []}]
    assert records(first, "toilet.air") == [{"temperature_c": 23.1, "humidity_pct": 61.2, "nh3_ppm": 0.4}]
    assert [e.rows for e in first if isinstance(e, Show)] == [(("空位 2/2 FREE", "G"), ("s1:O s2:O", "Y"))]
    assert records(first, "toilet.flow") == [], "the counter's first reading is only the base"
    assert block.tick(T0 + 2, bus()) == [], "nothing changed, no interval due: nothing written"
    later = block.tick(T0 + 60, bus(s1=1, total=137))
    assert records(later, "toilet.stalls")[0]["occupied"] == ["s1"] and len(records(later, "toilet.air")) == 1
    assert records(later, "toilet.flow") == [{"visitors": 37, "interval_s": 60}]


def test_alerts_raise_once_after_their_debounce_and_cleaning_clears_them() -> None:
    block = Block(CFG)
    smelly = NH3_LIMIT_PPM * 2
    assert alerts(block.tick(T0, bus(s1=1, nh3=smelly))) == []
    assert alerts(block.tick(T0 + 30, bus(s1=1, nh3=NH3_LIMIT_PPM / 2))) == [], "back under the limit: restart"
    assert alerts(block.tick(T0 + 40, bus(s1=1, nh3=smelly))) == []
    assert alerts(block.tick(T0 + 100, bus(s1=1, nh3=smelly, leak=1, paper=0))) == [
        ("raised", "odour:nh3"), ("raised", "leak:floor"), ("raised", "consumable_low:paper")]
    assert alerts(block.tick(T0 + 601, bus(s1=1, nh3=smelly))) == [("raised", "stall_long:s1")]
    assert alerts(block.tick(T0 + 700, bus(s1=1, nh3=smelly))) == [], "raised once"
    done = block.tick(T0 + 701, [*bus(), Cleaned("cleaner-07")])
    assert records(done, "toilet.cleaned") == [{"staff": "cleaner-07", "cleared": [
        "consumable_low:paper", "leak:floor", "odour:nh3", "stall_long:s1"]}]
    assert alerts(done) == [("cleared", "consumable_low:paper"), ("cleared", "leak:floor"), ("cleared", "odour:nh3"),
                            ("cleared", "stall_long:s1")]


def test_a_sensor_going_away_is_reported_once_and_its_inputs_become_unknown() -> None:
    block = Block(CFG)
    block.tick(T0, bus())
    gone = [p if p.sensor != "di" else Polled("di", False, p.values, "no answer") for p in bus()]
    events = block.tick(T0 + 2, gone)
    assert records(events, "toilet.sensor") == [{"sensor": "di", "available": False, "error": "no answer"}]
    assert records(events, "toilet.stalls") == [{"free": 0, "total": 2, "occupied": [], "unknown": ["s1", "s2"]}]
    assert records(block.tick(T0 + 4, gone), "toilet.sensor") == []
    assert records(block.tick(T0 + 6, bus()), "toilet.sensor") == [{"sensor": "di", "available": True, "error": None}]


def test_node_stalls_join_the_view_and_stale_node_air_is_ignored() -> None:
    block = Block(CFG.model_copy(update={"sensors": [], "stalls": {}, "leaks": {}, "consumables": {}, "flow": None}))
    events = block.tick(T0, [NodeStall("wc-n1", 1, True), NodeStall("wc-n1", 2, False),
                             NodeAir("wc-n1", {"nh3_ppm": 0.7, "h2s_ppm": 0.001})])
    assert records(events, "toilet.stalls") == [{"free": 1, "total": 2, "occupied": ["wc-n1:1"], "unknown": []}]
    assert records(events, "toilet.air") == [{"nh3_ppm": 0.7, "h2s_ppm": 0.001}]
    assert records(block.tick(T0 + 61), "toilet.air") == [{"nh3_ppm": 0.7, "h2s_ppm": 0.001}]
    assert records(block.tick(T0 + 361), "toilet.air") == [], "a node silent for node_stale_s: its air is not used"


def test_a_clock_set_back_starts_the_intervals_again() -> None:
    block = Block(CFG)
    block.tick(T0, bus())
    assert records(block.tick(T0 + 30, bus()), "toilet.air") == []
    assert len(records(block.tick(T0 - 3600, bus()), "toilet.air")) == 1, "not an hour without air readings"

"""The site's occupancy, capacity and venue day as a pure state machine: tick(now, inputs) -> events, no threads,
no sleeps, no I/O (the Ledger test at the end uses a real SQLite file)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.gate.passback import UsedTickets
from edge_agent.gate.role import Ledger
from edge_agent.gate.site import Alert, DayStart, Event, Occupancy, Passed, Save, Site, Used
from edge_agent.gate.tickets import Capacity

TZ = ZoneInfo("Asia/Shanghai")
NOON = dt.datetime(2026, 11, 22, 12, 0, tzinfo=TZ)
DAY = "2026-11-22"


def test_a_party_counts_in_one_by_one_and_its_ticket_is_used_with_the_last() -> None:
    site = Site("g", Capacity(10), DAY)
    assert site.tick(NOON) == [Occupancy(0, 10, False)]
    site.reserve("T", 2)
    assert site.room_for(8) and not site.room_for(9), "people let in but not through count against the limit"
    assert site.tick(NOON, [Passed("a", "in", "T")]) == [Save(DAY, 1), Occupancy(1, 10, False)]
    assert site.holds("T") and site.room_for(8) and not site.room_for(9)
    assert site.tick(NOON, [Passed("a", "in", "T")]) == [Used("T", "a"), Save(DAY, 2), Occupancy(2, 10, False)]
    assert not site.holds("T") and site.tick(NOON) == [], "nothing changed: nothing to write"
    assert site.tick(NOON, [Passed("a", "out")]) == [Save(DAY, 1), Occupancy(1, 10, False)]
    site.reserve("U", 1)
    assert site.release("U") and not site.release("U") and site.room_for(9)


def test_capacity_alerts_carry_the_count_after_each_pass_and_full_is_shown() -> None:
    site = Site("g", Capacity(10), DAY)
    site.tick(NOON, [Passed("a", "in")] * 7)
    events = site.tick(NOON, [Passed("a", "in"), Passed("camera", "in"), Passed("b", "in")])
    assert [e for e in events if isinstance(e, Alert)] == [Alert("a", 0.8, 8), Alert("camera", 0.9, 9),
                                                           Alert("b", 1.0, 10)]
    assert events[-2:] == [Save(DAY, 10), Occupancy(10, 10, True)] and not site.room_for(1)
    assert site.tick(NOON, [Passed("a", "out")]) == [Save(DAY, 9), Occupancy(9, 10, False)]
    with pytest.raises(ValueError, match="direction"):
        site.tick(NOON, [Passed("camera", "sideways")])


def test_the_venue_day_rolls_at_midnight_and_a_clock_set_back_resumes_the_day() -> None:
    site = Site("g", Capacity(10), DAY)
    site.tick(NOON, [Passed("a", "in")] * 3)
    after_midnight = dt.datetime(2026, 11, 23, 0, 0, 5, tzinfo=TZ)
    assert site.tick(after_midnight) == [Save(DAY, 3), DayStart("2026-11-23", 3), Save("2026-11-23", 0),
                                         Occupancy(0, 10, False)]
    site.tick(after_midnight, [Passed("a", "in")])
    # an NTP correction takes the clock back across midnight: yesterday's count comes back, today's is kept
    assert site.tick(NOON) == [Save("2026-11-23", 1), DayStart(DAY, 1), Save(DAY, 3), Occupancy(3, 10, False)]
    assert site.tick(after_midnight)[2] == Save("2026-11-23", 1)


@given(st.lists(st.tuples(st.sampled_from(["scan", "pass", "exit", "timeout"]), st.integers(0, 5),
                          st.integers(1, 4)), max_size=120))
@settings(max_examples=300, deadline=None)
def test_ticketed_entries_never_exceed_capacity(ops: list[tuple[str, int, int]]) -> None:
    """Lanes deciding, people walking through, leaving and not coming: with entry by ticket only, the people
    inside plus those let in can never exceed the limit, and no ticket is used up before its last person."""
    site = Site("g", Capacity(7), DAY)
    walked: dict[str, int] = {}
    for op, n, party in ops:
        ticket = f"T{n}"
        if op == "scan" and not site.holds(ticket) and site.room_for(party):
            site.reserve(ticket, party)
            walked[ticket] = 0
        elif op == "pass" and site.holds(ticket):
            events = site.tick(NOON, [Passed("a", "in", ticket)])
            walked[ticket] += 1
            assert any(isinstance(e, Used) for e in events) == (not site.holds(ticket))
        elif op == "exit" and site.capacity.inside:
            site.tick(NOON, [Passed("a", "out")])
        elif op == "timeout":
            site.release(ticket)
        assert 0 <= site.capacity.inside + sum(site.pending.values()) <= 7


def test_the_ledger_stores_used_tickets_with_the_count_and_writes_the_rest(tmp_path: Path) -> None:
    written: list[Event] = []
    used = UsedTickets(tmp_path / "gate.db")
    site = Site("g", Capacity(10), DAY)
    ledger = Ledger(site, used, threading.RLock(), lambda: NOON, written.append)
    site.reserve("T", 1)
    ledger.feed([Passed("a", "in", "T")])
    assert [type(e) for e in written] == [Used, Save, Occupancy]  # persisted ones are passed on too
    used.close()
    again = UsedTickets(tmp_path / "gate.db")  # after a power cut: both or neither, here both
    assert again.used("T") and again.load_inside(DAY) == 1
    assert again.conn.execute("SELECT name FROM _migrations").fetchall() == [("0001_used_and_occupancy",)]
    again.close()

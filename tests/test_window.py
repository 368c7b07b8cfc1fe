"""The uplink's in-flight window, pure: no broker, no SQLite, time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.records import DataClass
from edge_agent.sync.envelope import Ack
from edge_agent.sync.window import Cursors, Flight, Window, count, intersect

TX, MEAS = DataClass.TRANSACTION, DataClass.MEASUREMENT
BIG = 2**63 - 1


def flight(ranges: list[list[int]], cls: DataClass = TX, skips: list[int] | None = None, at: float = 0.0) -> Flight:
    return Flight(cls, b"payload", skips or [], ranges, at)


def ack(bid: str, ranges: list[list[int]], cls: DataClass = TX, **kw: object) -> Ack:
    return Ack(bid, cls, ranges, kw.pop("skips", []), 0, 0, **kw)  # type: ignore[arg-type]


def window(size: int = 4, timeout: float = 10.0) -> Window:
    return Window(size, timeout, boot=3, nonce="abc")


def test_resend_after_timeout_backs_off_per_batch_and_caps() -> None:
    w = window(timeout=10)
    w.add("b1", flight([[1, 5]], at=0))
    assert w.due(9.9) == []
    assert [b for b, _ in w.due(10)] == ["b1"]  # 1st resend after 10 s
    assert w.due(29.9) == [] and len(w.due(30)) == 1  # then 20 s
    assert w.due(69.9) == [] and len(w.due(70)) == 1  # then 40 s
    assert w.due(109.9) == [] and len(w.due(110)) == 1  # capped at 4x
    assert w.stats.resends == 4


def test_window_full_and_room() -> None:
    w = window(size=2)
    w.add(w.next_id(), flight([[1, 1]]))
    assert w.room() == 1
    w.add(w.next_id(), flight([[2, 2]]))
    assert w.room() == 0
    with pytest.raises(ValueError, match="full"):
        w.add("b3", flight([[3, 3]]))
    with pytest.raises(ValueError):
        Window(0, 1)


def test_batch_ids_are_unique_across_generations_and_carry_boot_and_nonce() -> None:
    w = window()
    ids = [w.next_id()]
    w.new_generation()
    ids.append(w.next_id())
    assert len(set(ids)) == 2 and all(i.startswith("3.abc-") for i in ids)


def test_ack_of_unknown_batch_changes_nothing() -> None:
    w = window()
    w.add("b1", flight([[10, 20]]))
    assert w.ack(ack("forged", [[1, BIG]])) is None
    assert w.ack(ack("forged", [], error="seq_rewind", top=BIG)) is None  # no rebase either
    assert len(w) == 1 and w.stats.stale_acks == 2


def test_forged_full_range_ack_deletes_only_the_batch_seqs() -> None:
    w = window()
    w.add("b1", flight([[10, 20], [25, 30]], skips=[7]))
    w.add("b2", flight([[31, 40]]))
    plan = w.ack(ack("b1", [[1, BIG]], skips=[7, 8, 9], conflict=[[1, BIG]]))
    assert plan is not None
    assert plan.delete == [[10, 20], [25, 30]]
    assert plan.skips == [7] and plan.renumber == [[10, 20], [25, 30]]
    assert w.stats.clipped_acks == 1
    assert "b1" not in w and "b2" in w  # the other batch is still in flight


def test_partial_ack_deletes_what_it_names_and_no_more() -> None:
    w = window()
    w.add("b1", flight([[10, 20]]))
    plan = w.ack(ack("b1", [[12, 14], [19, 19]]))
    assert plan is not None and plan.delete == [[12, 14], [19, 19]] and w.stats.clipped_acks == 0
    assert w.ack(ack("b1", [[10, 20]])) is None, "a second ack of the same batch is stale"


def test_ack_of_another_class_is_ignored_and_keeps_the_batch() -> None:
    w = window()
    w.add("b1", flight([[1, 5]], cls=MEAS))
    assert w.ack(ack("b1", [[1, 5]], cls=TX)) is None
    assert "b1" in w and w.stats.foreign_acks == 1


def test_seq_rewind_only_for_a_batch_in_flight() -> None:
    w = window()
    w.add("b1", flight([[1, 5]]))
    plan = w.ack(ack("b1", [], error="seq_rewind", top=900))
    assert plan is not None and plan.rebase_top == 900 and plan.delete == []
    w.add("b2", flight([[6, 7]]))
    plan = w.ack(ack("b2", [[6, 7]], top=900))  # a top without the seq_rewind error means nothing
    assert plan is not None and plan.rebase_top is None


def test_new_generation_forgets_in_flight_and_old_acks_are_stale() -> None:
    w = window()
    w.add("b1", flight([[1, 5]]))
    w.sent("b1", 17)
    w.new_generation()
    assert len(w) == 0 and w.ack(ack("b1", [[1, 5]])) is None and w.refused(17) is None


def test_broker_refusal_and_queue_full_make_a_batch_due_at_once() -> None:
    w = window(timeout=10)
    w.add("b1", flight([[1, 5]], at=100))
    w.add("b2", flight([[6, 9]], at=100))
    w.sent("b1", 1)
    assert w.refused(1) == "b1" and w.refused(1) is None
    w.not_sent("b2")
    assert sorted(b for b, _ in w.due(100.5)) == ["b1", "b2"]


def test_hub_back_makes_everything_due_but_not_more_than_once_per_half_timeout() -> None:
    w = window(timeout=10)
    for i in range(3):
        w.add(f"b{i}", flight([[i, i]], at=50))
    assert w.hub_back(50) == 3 and len(w.due(50.1)) == 3
    assert w.hub_back(54.9) == 0 and w.due(55) == [] and w.stats.hub_back_limited == 1  # a flood re-sends nothing
    assert w.hub_back(55) == 3 and len(w.due(55)) == 3
    w.new_generation()  # reconnected: the next announcement counts at once, and an empty window uses up nothing
    assert w.hub_back(56) == 0
    w.add("b9", flight([[9, 9]], at=56))
    assert w.hub_back(56.1) == 1


def test_restore_after_a_failed_delete_only_in_the_same_generation() -> None:
    w = window(timeout=10)
    w.add("b1", flight([[1, 5]]))
    plan = w.ack(ack("b1", [[1, 5]]))
    assert plan is not None and "b1" not in w
    assert w.restore(plan, now=42) and "b1" in w
    assert w.due(51.9) == [] and len(w.due(52)) == 1  # due after the timeout, not at once
    plan = w.ack(ack("b1", [[1, 5]]))
    assert plan is not None
    w.new_generation()
    assert not w.restore(plan, now=60) and len(w) == 0


def test_skips_in_flight() -> None:
    w = window()
    w.add("b1", flight([], cls=DataClass.STATE, skips=[4, 5]))
    w.add("b2", flight([[1, 2]], skips=[6]))
    assert w.skips_in_flight() == {4, 5, 6}


def test_cursors_live_first_then_backlog() -> None:
    c = Cursors()
    c.reset(next_seq=101)
    assert c.live_after[TX] == 100 and c.backlog_after[TX] == 0 and c.backlog_left(TX)
    c.backlog_done(TX)
    assert not c.backlog_left(TX) and c.backlog_left(MEAS)


ranges_st = st.lists(st.tuples(st.integers(1, 200), st.integers(0, 30)).map(lambda t: [t[0], t[0] + t[1]]),
                     max_size=8)


@given(ranges_st, ranges_st)
def test_intersect_is_set_intersection(a: list[list[int]], b: list[list[int]]) -> None:
    def seqs(rs: list[list[int]]) -> set[int]:
        return {s for lo, hi in rs for s in range(lo, hi + 1)}

    got = intersect([r[:] for r in a], [r[:] for r in b])
    assert seqs(got) == seqs(a) & seqs(b)
    assert count(got) == len(seqs(got))  # disjoint, sorted output
    assert all(x[1] < y[0] for x, y in zip(got, got[1:], strict=False))


def test_intersect_of_a_huge_forged_list_is_fast() -> None:
    import time

    forged = [[i, i] for i in range(1, 200_001, 2)]
    t = time.perf_counter()
    got = intersect(forged, [[r, r + 3] for r in range(1, 20_001, 4)])
    assert time.perf_counter() - t < 2.0 and count(got) == 10_000


def test_the_window_is_pure() -> None:
    import subprocess
    import sys

    code = ("import sys, edge_agent.sync.window; "
            "print(sorted(m for m in ('paho', 'sqlite3', 'threading', 'edge_agent.store') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@given(st.lists(ranges_st, min_size=1, max_size=4),
       st.lists(st.tuples(st.integers(0, 5), ranges_st, st.lists(st.integers(0, 9), max_size=4), ranges_st),
                max_size=12))
def test_no_ack_reaches_outside_its_batch(batches: list[list[list[int]]],
                                          acks: list[tuple[int, list[list[int]], list[int], list[list[int]]]]) -> None:
    w = window(size=8)
    carried = {}
    for i, rs in enumerate(batches):
        f = flight(sorted(r[:] for r in rs), skips=[i, i + 4])
        w.add(f"b{i}", f)
        carried[f"b{i}"] = (f.ranges, set(f.skip_ids))
    for n, ranges, skips, conflict in acks:
        bid = f"b{n}"
        in_flight = bid in w
        plan = w.ack(ack(bid, ranges, skips=skips, conflict=conflict))
        assert (plan is not None) == in_flight
        if plan is not None:
            inside, ids = carried[bid]
            assert intersect(plan.delete, inside) == intersect(plan.delete, plan.delete)  # delete ⊆ batch
            assert intersect(plan.renumber, inside) == intersect(plan.renumber, plan.renumber)
            assert set(plan.skips) <= ids and bid not in w

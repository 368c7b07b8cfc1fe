"""The pure parts of seq safety and loss accounting: where a run starts and why, what the hub calls lost."""

from __future__ import annotations

from pathlib import Path

from edge_agent.store.seqguard import BLOCK, GuardState, SeqGuard, plan_start
from hub.gaps import classify, explain_gaps, subtract

NOW = 1_800_000_000_000_000  # µs


def test_a_new_database_starts_above_the_guard_and_the_clock() -> None:
    assert plan_start(None, GuardState(), "b", NOW).next_seq == NOW
    assert plan_start(None, GuardState(ceiling=NOW + 5), "b", NOW).next_seq == NOW + 5
    assert plan_start(None, GuardState(), "b", NOW).announce is None


def test_an_empty_database_the_guard_saw_a_run_in_announces_that_run() -> None:
    """A power cut took a first run whole (migrations and all): its numbers are possibly lost."""
    guard = GuardState(ceiling=NOW + BLOCK, boot_id="old", start=NOW)
    s = plan_start(None, guard, "new", NOW + 10)
    assert s.announce == (NOW, s.next_seq - 1, "power_loss") and not s.rewound
    same_boot = plan_start(None, guard, "old", NOW + 10)  # no reboot: the file was deleted or replaced
    assert same_boot.announce is not None and same_boot.announce[2] == "rewind" and same_boot.rewound


def test_every_start_continues_above_the_database_by_a_block_and_above_guard_and_clock() -> None:
    db_next = NOW + 1000
    for guard in (GuardState(), GuardState(ceiling=db_next + 50), GuardState(ceiling=NOW)):  # last: rolled back
        s = plan_start(db_next, guard, "b", NOW)
        assert s.next_seq >= max(guard.ceiling, db_next + BLOCK, NOW)
        assert s.announce is not None and s.announce[:2] == (db_next, s.next_seq - 1)
    assert plan_start(db_next, GuardState(), "b", NOW + 10 * BLOCK).next_seq == NOW + 10 * BLOCK


def test_the_reason_says_whether_the_skipped_numbers_can_hide_lost_records() -> None:
    db_next = NOW + 1000
    ceiling = db_next + BLOCK
    crash = plan_start(db_next, GuardState(ceiling, "boot-1"), "boot-1", NOW)  # page cache intact
    clean = plan_start(db_next, GuardState(ceiling, "boot-1", clean=db_next), "boot-2", NOW)
    cut = plan_start(db_next, GuardState(ceiling, "boot-1"), "boot-2", NOW)
    cut_after_clean_mark = plan_start(db_next - 7, GuardState(ceiling, "boot-1", clean=db_next), "boot-2", NOW)
    no_boot_id = plan_start(db_next, GuardState(ceiling, None), None, NOW)
    assert [s.announce[2] for s in (crash, clean, cut, cut_after_clean_mark, no_boot_id) if s.announce] == [
        "restart", "restart", "power_loss", "power_loss", "power_loss"]


def test_a_database_far_behind_the_guard_is_a_rewind() -> None:
    restored = plan_start(NOW, GuardState(NOW + 3 * BLOCK, "b"), "b", NOW)
    assert restored.rewound and restored.announce is not None and restored.announce[2] == "rewind"
    assert restored.next_seq >= NOW + 3 * BLOCK
    rebooted = plan_start(NOW, GuardState(NOW + 3 * BLOCK, "a"), "b", NOW)
    assert rebooted.rewound and rebooted.announce is not None and rebooted.announce[2] == "power_loss"


def test_guard_file_round_trip_torn_file_and_spare(tmp_path: Path) -> None:
    g = SeqGuard(tmp_path / "o.db.seq")
    assert g.state == GuardState()
    g.boot_id, g.run_start = "boot-1", 42
    g.write(1000)
    g.write(2000, clean=1500)
    assert g.spare.exists() and g.spare.stat().st_size == g.path.stat().st_size, "the next move needs no new block"
    assert SeqGuard(tmp_path / "o.db.seq").state == GuardState(2000, "boot-1", 1500, 42)
    g.path.write_bytes(b"\x00garbage")
    assert SeqGuard(g.path).state == GuardState(), "a torn guard loses protection, never data"
    g.path.write_text("777\n")  # the format before this version
    assert SeqGuard(g.path).state == GuardState(777)


def test_gap_accounting() -> None:
    assert subtract([[1, 10]], [(3, 4), (8, 12)]) == [[1, 2], [5, 7]]
    raw = [(5, 9), (20, 20), (31, 99)]
    # 5-9 dropped on purpose (budget), 31-99 is the jump to a new epoch starting at 100
    assert explain_gaps(raw, [(5, 9)], {1, 100}) == [[20, 20]]


def test_losses_below_the_last_received_seq_are_counted_above_it_unknown() -> None:
    # received 1..10, 15, 17, 300; the device announced 11..299 as possibly lost (power_loss)
    holes = [(11, 14), (16, 16), (18, 299)]
    acc = classify(holes, [(11, 299, "power_loss"), (13, 13, "coalesced")], set(), {(11, 299): 17}, (1, 300))
    assert acc["gaps"] == []
    assert acc["lost"] == [{"first": 11, "last": 12, "count": 2, "reason": "power_loss"},
                           {"first": 14, "last": 14, "count": 1, "reason": "power_loss"},
                           {"first": 16, "last": 16, "count": 1, "reason": "power_loss"}]
    assert acc["unknown"] == [{"first": 18, "last": 299, "reason": "power_loss"}]


def test_restart_ranges_explain_and_quarantined_ranges_are_exact() -> None:
    holes = [(11, 20), (31, 99)]
    skips = [(11, 20, "quarantined"), (31, 99, "restart")]
    acc = classify(holes, skips, set(), {}, (1, 100))
    assert acc["gaps"] == [] and acc["unknown"] == []
    assert acc["lost"] == [{"first": 11, "last": 20, "count": 10, "reason": "quarantined"}]


def test_loss_ranges_before_the_first_and_after_the_last_received_seq_are_reported() -> None:
    skips = [(1, 49, "power_loss"), (101, 500, "power_loss")]
    acc = classify([], skips, set(), {(1, 49): None, (101, 500): None}, (50, 100))
    assert acc["unknown"] == [{"first": 1, "last": 49, "reason": "power_loss"},
                              {"first": 101, "last": 500, "reason": "power_loss"}]
    assert classify([], [(101, 500, "restart")], set(), {}, (50, 100)) == {"gaps": [], "lost": [], "unknown": []}


def test_an_unreadable_quarantine_is_a_bound_shown_as_unknown_never_counted() -> None:
    acc = classify([(61, 70)], [(1, 500, "quarantine_unread")], set(), {(1, 500): 100}, (50, 100))
    assert acc["lost"] == [] and acc["gaps"] == []
    assert acc["unknown"] == [{"first": 61, "last": 70, "reason": "quarantine_unread"},
                              {"first": 101, "last": 500, "reason": "quarantine_unread"}]


def test_the_narrowest_announcement_wins_and_unannounced_holes_stay_gaps() -> None:
    holes = [(11, 20), (41, 49), (60, 60)]
    skips = [(11, 20, "quarantined"), (1, 99, "power_loss")]
    acc = classify(holes, skips, {50}, {(1, 99): 70}, (1, 100))
    assert acc["lost"][0] == {"first": 11, "last": 20, "count": 10, "reason": "quarantined"}
    assert {x["reason"] for x in acc["lost"][1:]} == {"power_loss"} and acc["unknown"] == []
    unannounced = classify(holes, [], {50}, {}, (1, 100))
    assert unannounced["gaps"] == [[11, 20], [60, 60]]
    assert unannounced["unknown"] == [{"first": 41, "last": 49, "reason": "new_epoch"}]

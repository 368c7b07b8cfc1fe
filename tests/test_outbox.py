"""Outbox on real SQLite files: durability classes, seq guarantees, budget, TTL, corruption, disk full."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.records import DataClass, Record
from edge_agent.store import Outbox, OutboxClosed, OutboxFull, StorePolicy
from edge_agent.store.seqguard import BLOCK
from tests.helpers import tmpfs


class Clock:
    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_put_is_durable_and_seq_strictly_increases_across_reopen(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with Outbox(db) as ob:
        seqs = [ob.put("transaction", "gate.pass", {"n": i}).seq for i in range(5)]
        mode = ob._r.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    with Outbox(db) as ob:
        later = ob.put("measurement", "count", {"in": 1}).seq
        rows = ob.fetch(DataClass.TRANSACTION, 0)
    assert later is not None and later > seqs[-1]
    assert rows.seq == seqs and rows.kind == ["gate.pass"] * 5


def test_record_survives_kill9_right_after_put_returns(tmp_path: Path) -> None:
    """A child process puts a transaction, prints its seq, and is killed -9 at once."""
    db = tmp_path / "o.db"
    code = (
        "import os, sys\n"
        "from edge_agent.store import Outbox\n"
        f"ob = Outbox({str(db)!r})\n"
        "r = ob.put('transaction', 'checkin', {'guest': 'x'})\n"
        "print(r.seq, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9
    seq = int(out.stdout.split()[0])
    with Outbox(db) as ob:
        assert ob.fetch(DataClass.TRANSACTION, 0).seq == [seq]


def test_seq_never_repeats_after_restoring_an_old_copy(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with Outbox(db) as ob:
        ob.put("transaction", "a", {})
    backup = tmp_path / "backup.db"
    shutil.copy(db, backup)
    with Outbox(db) as ob:
        used = [r.seq for r in ob.put_many([ob.make_record("measurement", "m", {}) for _ in range(BLOCK + 10)])]
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.copy(backup, db)  # the technician restores yesterday's image
    with Outbox(db) as ob:
        new = ob.put("transaction", "b", {}).seq
        alerts = [a["alert"] for a in ob.alerts]
    assert new is not None and new > max(used)
    assert "store.seq_rewind" in alerts


def test_seq_never_repeats_after_reflash_losing_everything(tmp_path: Path) -> None:
    clock = Clock()
    with Outbox(tmp_path / "a" / "o.db", clock=clock) as ob:
        first = [ob.put("transaction", "a", {}).seq for _ in range(100)]
    shutil.rmtree(tmp_path / "a")  # database and guard gone
    clock.t += 1.0  # a second later
    with Outbox(tmp_path / "a" / "o.db", clock=clock) as ob:
        again = ob.put("transaction", "a", {}).seq
        assert ob.epoch == again
    assert again is not None and again > max(s for s in first if s is not None)


def test_state_records_coalesce_to_the_latest_and_are_announced(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        olds = [ob.put("state", "stall", {"busy": i % 2 == 0}, key="stall-3").seq for i in range(5)]
        ob.put("state", "stall", {"busy": True}, key="stall-4")
        rows = ob.fetch(DataClass.STATE, 0)
        skips = ob.pending_skips()
        stats = ob.stats()
    assert rows.seq == [olds[-1], olds[-1] + 1]
    assert rows.body[0] == '{"busy":true}'
    skipped = {s for _, a, b, _r in skips for s in range(a, b + 1)}
    assert skipped == set(olds[:-1])
    assert stats["counters"]["dropped.state.coalesced"] == 4


def test_budget_drops_oldest_measurements_counted_and_keeps_transactions(tmp_path: Path) -> None:
    policy = StorePolicy(budget_bytes=60_000)
    with Outbox(tmp_path / "o.db", policy) as ob:
        tx = [ob.put("transaction", "pass", {"i": i, "pad": "x" * 100}).seq for i in range(100)]
        ms = [ob.put("measurement", "count", {"i": i, "pad": "y" * 100}).seq for i in range(1000)]
        kept_tx = ob.fetch(DataClass.TRANSACTION, 0, limit=10_000).seq
        kept_m = ob.fetch(DataClass.MEASUREMENT, 0, limit=10_000).seq
        stats = ob.stats()
        skips = ob.pending_skips(1000)
    assert kept_tx == tx, "transactions are never dropped"
    dropped = stats["counters"]["dropped.measurement.budget"]
    assert dropped == 1000 - len(kept_m) and dropped > 500
    assert kept_m == ms[-len(kept_m):], "the oldest measurements go first"
    assert stats["bytes"] <= 60_000
    assert sum(b - a + 1 for _, a, b, r in skips if r == "budget") == dropped


def test_ttl_expires_old_measurements_not_transactions(tmp_path: Path) -> None:
    clock = Clock()
    policy = StorePolicy(ttl_s={DataClass.TRANSACTION: None, DataClass.MEASUREMENT: 3600.0,
                                DataClass.STATE: 3600.0})
    with Outbox(tmp_path / "o.db", policy, clock=clock) as ob:
        ob.put("transaction", "pass", {})
        ob.put("measurement", "old", {})
        clock.t += 3000
        ob.put("measurement", "young", {})
        clock.t += 1000  # "old" is 4000 s old, "young" 1000 s
        assert ob.expire().result() == 1
        assert ob.fetch(DataClass.MEASUREMENT, 0).kind == ["young"]
        assert len(ob.fetch(DataClass.TRANSACTION, 0)) == 1
        assert ob.stats()["counters"]["dropped.measurement.ttl"] == 1


def test_ack_deletes_exactly_the_named_ranges_of_that_class(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        a = ob.put("transaction", "a", {}).seq
        m = ob.put("measurement", "m", {}).seq
        b = ob.put("transaction", "b", {}).seq
        assert a is not None and b is not None and m is not None
        assert ob.ack(DataClass.TRANSACTION, [[a, b]]).result() == 2
        assert len(ob.fetch(DataClass.MEASUREMENT, 0)) == 1, "a range of one class leaves others alone"
        assert ob.ack(DataClass.TRANSACTION, [[a, b]]).result() == 0, "a repeated ack is harmless"


def test_group_commit_shares_fsyncs_between_producers(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        before = ob.commits
        barrier = threading.Barrier(8)
        results: list[int | None] = []

        def producer(k: int) -> None:
            barrier.wait()
            for i in range(200):
                results.append(ob.put("transaction", "p", {"k": k, "i": i}).seq)

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        commits = ob.commits - before
    assert len(set(results)) == 1600 and None not in results
    assert commits < 1600, f"{commits} commits for 1600 records: no grouping happened"


def test_bad_input_is_refused_before_anything_is_queued(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        with pytest.raises(ValueError, match="JSON"):
            ob.put("transaction", "x", {"f": object()})
        with pytest.raises(ValueError):
            ob.put("nonsense", "x", {})
        with pytest.raises(ValueError, match="coalescing key"):
            ob.put("state", "x", {})
        with pytest.raises(ValueError, match="kind"):
            ob.put("measurement", "", {})
        with pytest.raises(ValueError):
            ob.put("measurement", "m", "not json{")
        assert ob.depth() == 0
    with pytest.raises(OutboxClosed):
        ob.submit(Record(DataClass.MEASUREMENT, "m", "{}", 0.0))


def test_corrupt_database_is_quarantined_and_alert_raised(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with Outbox(db) as ob:
        ob.put_many([ob.make_record("measurement", "m", {"i": i, "pad": "z" * 200}) for i in range(2000)])
        last = ob.put("transaction", "t", {}).seq
    with open(db, "r+b") as f:  # scribble over b-tree pages, keep the header
        f.seek(8192)
        f.write(os.urandom(16384))
    with Outbox(db) as ob:
        alerts = ob.fetch(DataClass.TRANSACTION, 0)
        stats = ob.stats()
        nxt = ob.put("transaction", "after", {}).seq
    assert [k for k in alerts.kind] == ["agent.alert"] and "store.quarantined" in alerts.body[0]
    assert len(stats["quarantined"]) == 1
    kept = tmp_path / stats["quarantined"][0]
    assert kept.exists() and kept.stat().st_size > 100_000, "the broken file is kept for upload, not deleted"
    assert nxt is not None and last is not None and nxt > last, "seq continues above the old database"


def test_file_that_is_not_a_database_is_quarantined(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with Outbox(db) as ob:
        assert ob.put("transaction", "t", {}).ok
        assert len(ob.stats()["quarantined"]) == 1


def fill_until_full(ob: Outbox) -> tuple[int, int, int]:
    """Alternate transactions and measurements until the store refuses transactions."""
    tx_ok = m_dropped = m_ok = 0
    for i in range(200_000):
        m = ob.put("measurement", "m", {"i": i, "pad": "m" * 300})
        if m.ok:
            m_ok += 1
        else:
            m_dropped += 1
        try:
            ob.put("transaction", "t", {"i": i, "pad": "t" * 300})
            tx_ok += 1
        except OutboxFull:
            return tx_ok, m_ok, m_dropped
    raise AssertionError("never filled up")


def test_size_limited_database_drops_measurements_keeps_transactions(tmp_path: Path) -> None:
    policy = StorePolicy(budget_bytes=1 << 30, hard_cap_bytes=2 * 1024 * 1024)
    db = tmp_path / "o.db"
    with Outbox(db, policy) as ob:
        tx_ok, m_ok, m_dropped = fill_until_full(ob)
        kept_tx = len(ob.fetch(DataClass.TRANSACTION, 0, limit=100_000, max_bytes=1 << 30))
        counters = ob.stats()["counters"]
        after = ob.put("measurement", "still", {"pad": "m" * 300})  # the agent keeps going, no exception
        assert after.ok or after.dropped == "disk_full"
    assert kept_tx == tx_ok, "every transaction that was acknowledged is still there"
    assert m_dropped > 0 and counters.get("dropped.measurement.disk_full", 0) >= m_dropped
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "mnt", "3m") as mnt:
        yield mnt


def test_real_disk_full_on_tmpfs(tiny_tmpfs: Path) -> None:
    db = tiny_tmpfs / "o.db"
    with Outbox(db, StorePolicy(budget_bytes=1 << 30)) as ob:
        tx_ok, m_ok, m_dropped = fill_until_full(ob)
        kept_tx = len(ob.fetch(DataClass.TRANSACTION, 0, limit=100_000, max_bytes=1 << 30))
    assert tx_ok > 100 and kept_tx == tx_ok
    with Outbox(db, StorePolicy(budget_bytes=1 << 30)) as ob:  # reopens cleanly on a full disk
        assert len(ob.fetch(DataClass.TRANSACTION, 0, limit=100_000, max_bytes=1 << 30)) == tx_ok
        assert ob.stats()["quarantined"] == []


def test_a_late_duplicate_ack_never_deletes_a_newer_skip(tmp_path: Path) -> None:
    """Skip ids were rowids, handed out again after the newest was deleted: a re-sent batch's second ack
    then deleted a range never announced (false gaps at the hub). Ids are first seqs now."""
    with Outbox(tmp_path / "o.db") as ob:
        ob.put("state", "s", {"v": 1}, key="k")
        ob.put("state", "s", {"v": 2}, key="k")  # coalesces the first: skip A
        [a] = ob.pending_skips()
        ob.ack(DataClass.STATE, [], [a[0]]).result()  # the hub acked the batch that carried A
        ob.put("state", "s", {"v": 3}, key="k")  # coalesces the second: skip B
        ob.ack(DataClass.STATE, [], [a[0]]).result()  # the same ack again (the batch was re-sent)
        pending = ob.pending_skips()
    assert [(f, la) for _, f, la, _ in pending] == [(a[1] + 1, a[1] + 1)], "B must still be announced"


def test_pending_skips_beyond_those_in_flight_are_not_starved(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        for i in range(10):
            ob.put("state", "s", {"v": i}, key="k")
        first = ob.pending_skips(limit=4)
        rest = ob.pending_skips(limit=100, exclude=[s[0] for s in first])
    assert len(first) == 4 and len(rest) == 5
    assert {s[0] for s in first}.isdisjoint(s[0] for s in rest)

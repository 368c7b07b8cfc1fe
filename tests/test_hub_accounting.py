"""Hub storage on both backends (a SQLite file, the PostgreSQL service): conflicts, refused runs, losses.

Batches go straight into the backend, as a worker hands them over after decoding.
"""

from __future__ import annotations

import json

import pytest

from edge_agent.records import DataClass
from edge_agent.sync.envelope import Batch
from hub.db import Backend, PostgresBackend

E = 1_800_000_000_000_000  # the device's first run starts here


def batch(seqs: list[int], bodies: list[str], epoch: int = E, skipped: list[tuple[int, int, int, str]] | None = None,
          ts: float = 1.0) -> Batch:
    return Batch("gate-1", "westlake", DataClass.TRANSACTION, f"b{seqs[0] if seqs else 0}", epoch, 1, seqs,
                 [ts] * len(seqs), ["gate.pass"] * len(seqs), bodies, skipped or [])


def test_the_same_record_again_is_a_duplicate_a_different_one_a_conflict(backend: Backend) -> None:
    bodies = [json.dumps({"id": i, "dir": "in"}) for i in range(3)]
    [first] = backend.ingest([batch([E, E + 1, E + 2], bodies)], [])
    assert (first.stored, first.dup, first.conflict) == (3, 0, [])
    reordered = [json.dumps({"dir": "in", "id": i}, separators=(",", ":")) for i in range(3)]  # same JSON value
    again, other = backend.ingest([batch([E, E + 1, E + 2], bodies),
                                   batch([E + 1, E + 3], ['{"id":"someone else"}', '{"id":3}'])], [])
    assert (again.stored, again.dup, again.conflict) == (0, 3, [])
    assert (other.stored, other.dup, other.conflict) == (1, 1, [E + 1])
    if isinstance(backend, PostgresBackend):  # jsonb: the same value in another spelling is the same record
        [same] = backend.ingest([batch([E, E + 1, E + 2], reordered)], [])
        assert same.conflict == []
    [later_ts] = backend.ingest([batch([E + 2], [bodies[2]], ts=2.0)], [])
    assert later_ts.conflict == [E + 2], "another moment is another record"
    assert backend.devices()[0]["conflicts"] == 2
    assert backend.count() == 4, "the conflicting copies are kept apart, not in events"


def test_a_new_run_that_does_not_start_above_what_is_held_is_refused(backend: Backend) -> None:
    backend.ingest([batch([E + i for i in range(10)], [f'{{"i":{i}}}' for i in range(10)])], [])
    [refused] = backend.ingest([batch([E + 5], ['{"i":"new"}'], epoch=E + 5)], [])
    assert refused.refused_top == E + 9 and refused.stored == 0
    [old_run] = backend.ingest([batch([E + 3], ['{"i":3}'])], [])
    assert old_run.refused_top is None, "a run already seen is accepted"
    [above] = backend.ingest([batch([E + 20], ['{"i":20}'], epoch=E + 20)], [])
    assert above.refused_top is None and above.stored == 1
    assert backend.count() == 11


def test_losses_are_counted_with_their_reason(backend: Backend) -> None:
    # Run 1 delivered E..E+4 and E+7; a power cut took E+5, E+6 and what came after E+7. Run 2 starts at
    # E+1000 and announces E+5..E+999 as power_loss.
    backend.ingest([batch([E + i for i in (0, 1, 2, 3, 4, 7)], ["{}"] * 6)], [])
    backend.ingest([batch([E + 1000], ["{}"], epoch=E + 1000, skipped=[(E + 5, E + 5, E + 999, "power_loss")])], [])
    dev = backend.devices()[0]
    assert dev["gaps"] == []
    assert dev["lost"] == [{"first": E + 5, "last": E + 6, "count": 2, "reason": "power_loss"}]
    assert dev["unknown"] == [{"first": E + 8, "last": E + 999, "reason": "power_loss"}]
    assert dev["lost_count"] == 2


@pytest.mark.postgres
def test_two_workers_storing_the_first_batches_of_a_run_at_once_do_not_refuse_it(pg_url: str) -> None:
    """Worker B looks for the run, finds none; worker A then registers the run and commits its seqs; B must
    not take A's seqs for a device that went back (that refusal made the device renumber records the hub
    already held: a duplicate at the hub, seen in the two-worker fault test)."""
    a, b = PostgresBackend(pg_url), PostgresBackend(pg_url)
    real = b.conn

    class Cursor:
        def __init__(self, cur: object) -> None:
            self.cur, self.looked = cur, False

        def __enter__(self) -> Cursor:
            return self

        def __exit__(self, *exc: object) -> None:
            self.cur.close()  # type: ignore[attr-defined]

        def execute(self, sql: str, args: object = None) -> object:
            got = self.cur.execute(sql, args)  # type: ignore[attr-defined]
            if sql.startswith("SELECT 1 FROM epochs") and not self.looked:
                self.looked = True  # A stores the run's other class between B's look and what B does next
                [other] = a.ingest([Batch("gate-1", "westlake", DataClass.STATE, "a1", E, 1, [E + 5, E + 6],
                                          [1.0, 1.0], ["gate.occupancy"] * 2, ['{"n":1}', '{"n":2}'], [])], [])
                assert other.stored == 2
            return got

        def __getattr__(self, name: str) -> object:
            return getattr(self.cur, name)

    class Conn:
        def cursor(self) -> Cursor:
            return Cursor(real.cursor())

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    b.conn = Conn()  # type: ignore[assignment]
    try:
        [res] = b.ingest([batch([E, E + 1], ['{"i":0}', '{"i":1}'])], [])
        assert res.refused_top is None, "a run being registered by another worker was refused as a rewind"
        assert res.stored == 2
    finally:
        b.conn = real
        a.close()
        b.close()

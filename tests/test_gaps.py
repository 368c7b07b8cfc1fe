"""Every seq the device drops on purpose is announced: the hub's skip ranges match the device's drop counters.

Real mosquitto, the real hub worker on a SQLite file, the real outbox and uplink, all in one process. The
hub is slow and the ack timeout short, so batches are re-sent and acked twice (stale acks), while states
coalesce and measurements are dropped over budget: the paths where announcements used to go missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig
from edge_agent.records import DataClass
from edge_agent.store import Outbox, StorePolicy
from edge_agent.sync import envelope
from edge_agent.sync.topics import Topics
from edge_agent.sync.uplink import Uplink
from tests.helpers import Broker, Listener, hub_worker, wait_for

pytestmark = pytest.mark.broker

DEVICE = DeviceConfig(id="gate-07", site="westlake")


def burst(ob: Outbox, n: int) -> None:
    """Transactions, measurements over a tight budget and states on few keys, in commits of mixed sizes."""
    k = 0
    while k < n:
        recs = []
        for i in range(k, min(n, k + 1 + (k * 7919) % 400)):
            recs.append(ob.make_record("transaction", "gate.pass", {"id": i}))
            recs.append(ob.make_record("measurement", "gate.count", {"i": i, "pad": "m" * 200}))
            recs.append(ob.make_record("state", "lane", {"i": i}, key=f"lane-{i % 5}"))
        ob.put_many(recs)
        k += len(recs) // 3


def dropped(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if k.startswith("dropped."))


def run_burst(tmp_path: Path, broker: Broker, n: int, round_no: int) -> None:
    ob = Outbox(tmp_path / f"ob-{round_no}.db", StorePolicy(budget_bytes=300_000))
    up = Uplink(ob, DEVICE, MqttConfig(url=broker.url),
                SyncConfig(batch_max_records=300, window=6, ack_timeout_s=0.15, backlog_rate=0), boot=1)
    with hub_worker(tmp_path / f"hub-{round_no}.db", broker, f"hub-{round_no}", slow_s=0.2,
                    group=f"g{round_no}") as hub:
        up.start()
        try:
            burst(ob, n)
            wait_for(lambda: ob.depth() == 0 and not ob.pending_skips(), 120, "the burst to drain", every=0.05)
            counters = ob.stats()["counters"]
            dev = wait_for(lambda: hub.backend.devices(), 10, "the device row")[0]
            conn = hub.backend.conn  # type: ignore[attr-defined]
            skips = conn.execute("SELECT first, last FROM skips").fetchall()
            stored = {r[0] for r in conn.execute("SELECT seq FROM events")}
            numbered = set(range(ob.epoch, ob.next_seq()))
        finally:
            up.stop()
            ob.close()
    announced = sum(b - a + 1 for a, b in skips)
    assert dropped(counters) > 100, "the burst must coalesce and drop, or the test proves nothing"
    assert up.stats.resends > 0, "the slow hub must force re-sends (and stale acks)"
    assert announced == dropped(counters), f"round {round_no}: device dropped {dropped(counters)}, " \
                                           f"hub was told of {announced}"
    assert dev["gaps"] == [], f"round {round_no}: unexplained gaps {dev['gaps'][:5]}"
    skipped = {s for a, b in skips for s in range(a, b + 1)}
    # A state can be coalesced after the hub stored it: then it is both stored and announced.
    assert numbered - stored - skipped == set(), "every number handed out is stored or announced"


def test_burst_repeated_has_no_unexplained_gaps(tmp_path: Path, broker: Broker) -> None:
    for round_no in range(10):
        run_burst(tmp_path, broker, 1500, round_no)


def test_an_ack_for_a_batch_not_in_flight_deletes_nothing(tmp_path: Path, broker: Broker) -> None:
    """Skip ids are first seqs; a restart announcement can start at a seq the previous run coalesced. An
    ack of the previous run (or a forged one) must not delete the new announcement, nor any row."""
    ob = Outbox(tmp_path / "ob.db")
    up = Uplink(ob, DEVICE, MqttConfig(url=broker.url), SyncConfig(ack_timeout_s=60, backlog_rate=0), boot=1)
    up.start()
    listener = Listener(broker, "#")
    try:
        ob.put("state", "lane", {"v": 1}, key="k")
        ob.put("state", "lane", {"v": 2}, key="k")  # coalesces the first: a pending skip
        tx = ob.put("transaction", "gate.pass", {"id": 1}).seq
        [skip] = ob.pending_skips()
        wait_for(lambda: up.stats.records_sent >= 2, 10, "the rows in flight (no hub: never acked)")
        stale = envelope.Ack("1.abcdef-1-1", DataClass.TRANSACTION, [[tx, tx]], [skip[0]], 1, 0)
        listener.publish(Topics(DEVICE.site, DEVICE.id).ack, envelope.encode_ack(stale))
        wait_for(lambda: up.stats.stale_acks == 1, 10, "the stale ack to be handled")
        assert ob.depth() == 2 and ob.pending_skips() == [skip], "a stale ack deleted what it never carried"
    finally:
        listener.close()
        up.stop()
        ob.close()

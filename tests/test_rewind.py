"""The hub's view as the last line against seq reuse: refused runs are renumbered, conflicting rows too.

Real mosquitto, the real hub worker on SQLite and the real outbox and uplink in one process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig
from edge_agent.records import Block, DataClass
from edge_agent.store import Outbox
from edge_agent.store.seqguard import BLOCK
from edge_agent.sync import envelope
from edge_agent.sync.topics import Topics
from edge_agent.sync.uplink import Uplink
from hub.ingest import HubWorker
from tests.helpers import Broker, Listener, hub_worker, wait_for

pytestmark = pytest.mark.broker

DEVICE = DeviceConfig(id="gate-rw", site="westlake")
SYNC = SyncConfig(ack_timeout_s=2, backoff_min_s=0.1, backoff_max_s=0.5, backlog_rate=0)
T0 = 1_800_000_000.0


@pytest.fixture
def hub(tmp_path: Path, broker: Broker) -> Iterator[HubWorker]:
    with hub_worker(tmp_path / "hub.db", broker, "hub-rw") as w:
        yield w


class Run:
    """One boot of the device on the files in `root`, with a clock set by the test."""

    def __init__(self, root: Path, broker: Broker, boot_id: str, now: float) -> None:
        self.ob = Outbox(root / "outbox.db", clock=lambda: now, boot_id=lambda: boot_id)
        self.up = Uplink(self.ob, DEVICE, MqttConfig(url=broker.url), SYNC, boot=self.ob.boot)
        self.up.start()

    def drained(self) -> None:
        wait_for(lambda: self.ob.depth() == 0 and not self.ob.pending_skips(), 60, "the outbox to drain")

    def stop(self) -> None:
        self.up.stop()
        self.ob.close()


def held(hub: HubWorker, kind: str) -> dict[str, int]:
    rows = hub.backend.conn.execute(  # type: ignore[attr-defined]
        "SELECT seq, json_extract(body, '$.id') FROM events WHERE kind=?", (kind,)).fetchall()
    ids = [r[1] for r in rows]
    assert len(ids) == len(set(ids)), "a record stored twice"
    return {rid: seq for seq, rid in rows}


def test_a_run_restored_with_its_guard_and_clock_is_refused_and_renumbered(
        tmp_path: Path, broker: Broker, hub: HubWorker) -> None:
    """An SD card image of yesterday (database and guard) on a device whose clock also went back: the
    numbers of the runs since are all reused unless the hub says no."""
    root, image = tmp_path / "dev", tmp_path / "image"
    root.mkdir()
    a = Run(root, broker, "boot-a", T0)
    for i in range(5):
        a.ob.put("transaction", "gate.pass", {"id": f"a-{i}"})
    a.drained()
    a.stop()
    shutil.copytree(root, image)
    b = Run(root, broker, "boot-b", T0 + 1)  # more than a block of numbers, all delivered
    for k in range(0, BLOCK + 2000, 20_000):
        b.ob.put_many([b.ob.make_record("measurement", "m", {"i": i}) for i in range(k, k + 20_000)])
    b.ob.put("transaction", "gate.pass", {"id": "b-0"})
    b.drained()
    b_top = b.ob.next_seq() - 1
    b.stop()
    shutil.rmtree(root)
    shutil.copytree(image, root)

    c = Run(root, broker, "boot-c", T0)  # the clock went back with the image
    try:
        assert c.ob.epoch <= b_top, "the restored run starts on numbers the hub holds"
        for i in range(10):
            c.ob.put("transaction", "gate.pass", {"id": f"c-{i}"})
        wait_for(lambda: hub.stats.refused >= 1, 30, "the hub to refuse the run")
        c.drained()
        rewinds = [a for a in c.ob.alerts if a["alert"] == "store.seq_rewind"]
    finally:
        c.stop()
    passes = held(hub, "gate.pass")
    assert {f"c-{i}" for i in range(10)} <= set(passes), "every record of the restored run arrived"
    assert all(passes[f"c-{i}"] > b_top for i in range(10)), "none under a number the hub held"
    assert rewinds and rewinds[0]["hub_top"] == b_top
    assert "store.seq_rewind" in {json.loads(b)["alert"] for b in held_alerts(hub)}
    dev = hub.backend.devices()[0]
    assert dev["gaps"] == [] and dev["conflicts"] == 0
    assert {u["reason"] for u in dev["unknown"]} == {"seq_rewind"}


def held_alerts(hub: HubWorker) -> list[str]:
    return [r[0] for r in hub.backend.conn.execute(  # type: ignore[attr-defined]
        "SELECT body FROM events WHERE kind='agent.alert'")]


def test_a_record_under_a_seq_the_hub_holds_otherwise_is_renumbered_not_lost(
        tmp_path: Path, broker: Broker, hub: HubWorker) -> None:
    """Another record already under our next seq (a late batch of a forgotten run, or a forged one): the
    hub keeps both, acks neither as ours, and the device sends ours again under a new number."""
    run = Run(tmp_path, broker, "boot-a", T0)
    listener = Listener(broker, "nothing/#")
    try:
        run.ob.put("transaction", "gate.pass", {"id": "x-1"})
        run.drained()
        taken = run.ob.next_seq()
        foreign = envelope.encode_batch(DEVICE.id, DEVICE.site, DataClass.TRANSACTION, "forged-1", run.ob.epoch, 1,
                                        Block([taken], [T0], ["gate.pass"], ['{"id":"foreign"}']), [])
        listener.publish(Topics(DEVICE.site, DEVICE.id).up("transaction"), foreign)
        wait_for(lambda: "foreign" in held(hub, "gate.pass"), 10, "the foreign record at the hub")
        assert run.ob.put("transaction", "gate.pass", {"id": "x-2"}).seq == taken
        run.drained()
        renumbered = run.ob.stats()["counters"].get("renumbered.conflict")
    finally:
        listener.close()
        run.stop()
    passes = held(hub, "gate.pass")
    assert passes["foreign"] == taken and passes["x-2"] > taken, "both kept, ours under a new number"
    assert renumbered == 1 and hub.stats.conflicts >= 1
    kept = hub.backend.conn.execute("SELECT seq, body FROM conflicts").fetchall()  # type: ignore[attr-defined]
    assert [(s, json.loads(b)["id"]) for s, b in kept] == [(taken, "x-2")], "the refused copy is kept apart"
    assert hub.backend.devices()[0]["conflicts"] == 1

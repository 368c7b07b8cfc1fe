"""Issue 10: the device accepts an ack only for a batch it has in flight, and only for seqs inside that batch.

A real mosquitto (open, as an attacker on the venue network would find it), a real outbox and the real uplink
with no hub: an attacker reads the device's batches off the broker and publishes forged acks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig
from edge_agent.records import DataClass
from edge_agent.store import Outbox
from edge_agent.sync.envelope import decode_batch
from edge_agent.sync.uplink import Uplink
from tests.helpers import Broker, Listener, wait_for

pytestmark = pytest.mark.broker

TX = DataClass.TRANSACTION
BASE = "venue/v1/westlake/gate-01"
ROWS = 800


def seqs(ob: Outbox) -> list[int]:
    return list(ob.fetch(TX, 0, limit=10_000).seq)


@pytest.fixture
def device(tmp_path: Path, broker: Broker) -> Iterator[tuple[Outbox, Uplink, Listener]]:
    spy = Listener(broker, f"{BASE}/up/+")  # what anyone on an open broker can read
    spy.publish(f"{BASE}/up/probe", b"{}")
    wait_for(lambda: spy.messages, 10, "the spy's subscription")
    spy.messages.clear()
    ob = Outbox(tmp_path / "outbox.db")
    ob.put_many([ob.make_record("transaction", "gate.pass", {"i": i}) for i in range(ROWS)])
    up = Uplink(ob, DeviceConfig(id="gate-01", site="westlake"), MqttConfig(url=broker.url),
                SyncConfig(window=2, batch_max_records=100, ack_timeout_s=600, backlog_rate=0,
                           backoff_min_s=0.1, backoff_max_s=0.5))
    up.start()
    yield ob, up, spy
    up.stop()
    ob.close()
    spy.close()


def test_forged_acks_delete_nothing_beyond_the_batch(device: tuple[Outbox, Uplink, Listener]) -> None:
    ob, up, spy = device
    wait_for(lambda: len(spy.messages) >= 2 and up.inflight() == 2, 15, "two batches in flight")
    before = seqs(ob)
    assert len(before) == ROWS
    batches = [decode_batch(bytes(p)) for _, p, _ in spy.messages[:2]]

    def forge(doc: dict[str, object]) -> None:
        stale = up.stats.stale_acks
        base = {"v": 1, "class": "transaction", "ranges": [], "stored": 0, "dup": 0}
        spy.publish(f"{BASE}/ack", json.dumps({**base, **doc}))
        wait_for(lambda: up.stats.stale_acks > stale, 10, "the forged ack to be handled")

    # The attack from issue 10: an unknown batch, every seq there is.
    forge({"batch": "x", "ranges": [[1, 2**63 - 1]]})
    # The same with a conflict list (would renumber) and a seq_rewind (would rebase the whole run).
    forge({"batch": "x", "conflict": [[1, 2**63 - 1]]})
    forge({"batch": "x", "error": "seq_rewind", "top": 10**12})
    # A real batch id under another class.
    forge({"batch": batches[0].batch, "class": "measurement", "ranges": [[1, 2**63 - 1]]})
    assert ob.depth() == ROWS and seqs(ob) == before, "a forged ack changed the outbox"

    # A real batch id read off the wire, claiming every seq: only that batch's rows go.
    victim = batches[0]
    spy.publish(f"{BASE}/ack", json.dumps({"v": 1, "batch": victim.batch, "class": "transaction",
                                           "ranges": [[1, 2**63 - 1]], "skips": [1, 2, 3],
                                           "stored": 800, "dup": 0}))
    wait_for(lambda: up.stats.records_acked >= len(victim.seq), 10, "the ack to be applied")
    after = seqs(ob)
    assert ob.depth() == ROWS - len(victim.seq) == ROWS - 100
    assert after == [s for s in before if s not in set(victim.seq)]
    assert up.stats.clipped_acks == 1 and up.stats.records_acked == 100
    assert up.inflight() >= 1 and batches[1].batch != victim.batch


def test_a_flood_of_forged_hub_announcements_is_no_resend_amplifier(device: tuple[Outbox, Uplink, Listener]) -> None:
    ob, up, spy = device
    wait_for(lambda: up.inflight() == 2, 15, "two batches in flight")
    for i in range(20):
        spy.publish("venue/v1/_hub/online", json.dumps({"v": 1, "hub": f"evil-{i}", "at": i}))
    wait_for(lambda: up.window.stats.hub_back_limited >= 19, 10, "the announcements to be handled")
    # The first one re-sends what is in flight (it could be the real hub back); the other 19 re-send nothing.
    wait_for(lambda: up.stats.resends >= 2, 10, "the one early re-send")
    assert up.stats.resends == 2 and ob.depth() == ROWS

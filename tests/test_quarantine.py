"""A corrupt outbox is quarantined, and the hub says how many queued records went with it.

Real SQLite files, mosquitto, the hub worker and the uplink. The device delivers 100 records, then queues
200 the hub never gets; its database is then damaged. If the quarantined file can still be read, the
hub counts exactly those 200 as lost (reason `quarantined`); if not, it shows the seq range after the
last record it holds as lost in an unknown number (reason `quarantine_unread`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig
from edge_agent.store import Outbox
from edge_agent.sync.uplink import Uplink
from hub.cli import main as hub_cli
from tests.helpers import Broker, hub_worker, wait_for

pytestmark = pytest.mark.broker

DEVICE = DeviceConfig(id="gate-q", site="westlake")
SYNC = SyncConfig(ack_timeout_s=2, backoff_min_s=0.1, backoff_max_s=0.5, backlog_rate=0)


def queue_then_damage(tmp_path: Path, broker: Broker, damage: str) -> tuple[list[int], int]:
    """Deliver 100 records, queue 200 more with the hub away, damage the database; (queued seqs, last held)."""
    db = tmp_path / "outbox.db"
    ob = Outbox(db)
    up = Uplink(ob, DEVICE, MqttConfig(url=broker.url), SYNC, boot=1)
    up.start()
    try:
        with hub_worker(tmp_path / "hub.db", broker, "hub-q"):
            for i in range(100):
                ob.put("transaction", "gate.pass", {"id": f"sent-{i}"})
            wait_for(lambda: ob.depth() == 0, 20, "the first 100 delivered")
            last_held = ob.next_seq() - 1
        # the hub left for good: the broker drops what comes meanwhile
        queued = [ob.put("transaction", "gate.pass", {"id": f"queued-{i}"}).seq for i in range(200)]
    finally:
        up.stop()
        ob.close()
    damage_file(db, damage)
    return [s for s in queued if s is not None], last_held


def damage_file(db: Path, damage: str) -> None:
    conn = sqlite3.connect(db)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='runtime'").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        if damage == "one table":  # the agent's runtime table: the queued rows stay readable
            f.seek((root - 1) * page)
            f.write(b"\xff" * page)
        else:  # the header: not a database any more
            f.write(b"\x00" * 100)


def restart_and_report(tmp_path: Path, broker: Broker) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ob = Outbox(tmp_path / "outbox.db")
    up = Uplink(ob, DEVICE, MqttConfig(url=broker.url), SYNC, boot=2)
    with hub_worker(tmp_path / "hub.db", broker, "hub-q") as hub:
        up.start()
        try:
            assert len(ob.stats()["quarantined"]) == 1
            wait_for(lambda: ob.depth() == 0 and not ob.pending_skips(), 20, "the new database to drain")
            dev = hub.backend.devices()[0]
            alerts = [json.loads(b) for (b,) in hub.backend.conn.execute(  # type: ignore[attr-defined]
                "SELECT body FROM events WHERE kind='agent.alert'")]
        finally:
            up.stop()
            ob.close()
    return dev, alerts


def test_a_readable_quarantined_file_gives_the_exact_count(tmp_path: Path, broker: Broker,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    queued, _ = queue_then_damage(tmp_path, broker, "one table")
    dev, alerts = restart_and_report(tmp_path, broker)
    assert hub_cli(["status", "--db", str(tmp_path / "hub.db")]) == 0
    assert "200 (quarantined)" in capsys.readouterr().out.splitlines()[1]
    assert [a["alert"] for a in alerts] == ["store.quarantined"] and alerts[0]["queued"] == 200
    assert dev["lost_count"] == 200 and {x["reason"] for x in dev["lost"]} == {"quarantined"}
    lost = {s for x in dev["lost"] for s in range(x["first"], x["last"] + 1)}
    assert lost == set(queued)
    assert dev["gaps"] == [] and dev["unknown"] == []


def test_an_unreadable_quarantined_file_gives_the_range_after_the_last_record_held(
        tmp_path: Path, broker: Broker) -> None:
    queued, last_held = queue_then_damage(tmp_path, broker, "header")
    dev, alerts = restart_and_report(tmp_path, broker)
    assert [a["alert"] for a in alerts] == ["store.quarantined"] and alerts[0]["queued"] is None
    assert dev["gaps"] == [] and dev["lost_count"] == 0
    [unknown] = dev["unknown"]
    assert unknown["reason"] == "quarantine_unread" and unknown["first"] == last_held + 1
    assert unknown["last"] >= max(queued), "every queued seq lies in the range shown"

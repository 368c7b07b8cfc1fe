"""The agent starts on a full disk, says so, refuses new transactions, drains what was queued, recovers.

A real size-limited file system (an 8 MiB tmpfs; mounting needs root or CAP_SYS_ADMIN, else the test is
skipped saying so), a real mosquitto, the real hub and agent processes. Before the agent starts, a device
queues 10,000 transactions with no hub in reach, a runaway log takes every byte left on the disk, and the
device is killed -9 (the power goes). The outbox's disk reserve is what lets the agent delete what it
delivers; the pages deliveries free go back to the disk, and the agent takes records again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.sync.topics import Topics
from tests.helpers import (
    Broker,
    Listener,
    agent_config,
    agent_proc,
    assert_exactly_once,
    hub_pass_ids,
    hub_proc,
    journal_ids,
    outbox_depth,
    tmpfs,
    wait_for,
)
from tests.signing import signed

pytestmark = [pytest.mark.broker]

QUEUE = """
import os, sqlite3, sys
from edge_agent.store import Outbox
ob = Outbox(sys.argv[1])
for k in range(0, 10_000, 500):
    ob.put_many([ob.make_record("transaction", "gate.pass", {"id": f"pre-{i}", "pad": "p" * 250})
                 for i in range(k, k + 500)])
sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no WAL space left to reuse
print(10_000, flush=True)
sys.stdin.readline()  # meanwhile a runaway log fills the disk
os.kill(os.getpid(), 9)
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        yield mnt


def fill_disk(path: Path) -> None:
    """A runaway log: write until the disk refuses."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def hub_ids(db: Path) -> set[str]:
    try:
        return set(hub_pass_ids(db))
    except sqlite3.OperationalError:
        return set()  # the hub has not made its tables yet


def status(broker: Broker) -> dict[str, Any]:
    """The agent's answer to the downlink `status` command."""
    topics = Topics("westlake", "gate-01")
    listener = Listener(broker, topics.result)
    try:
        listener.publish(topics.base + "/cmd/status", signed("westlake", "gate-01", "status", {}, "st-1"))
        wait_for(lambda: listener.messages, 20, "the status result")
        return dict(json.loads(listener.messages[0][1])["result"])
    finally:
        listener.close()


def alerts(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT body FROM events WHERE kind='agent.alert'")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_agent_starts_on_a_full_disk_drains_and_recovers(tmp_path: Path, small_disk: Path, broker: Broker) -> None:
    cfg = agent_config(small_disk, broker.url, rate=50, journal=tmp_path / "journal.txt")
    store = small_disk / "agent-outbox.db"
    # A device with transactions queued (no hub reachable), then a runaway log takes every byte left,
    # then the power goes.
    queue = subprocess.Popen([sys.executable, "-c", QUEUE, str(store)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert queue.stdout is not None and queue.stdin is not None
    queued = {f"pre-{i}" for i in range(int(queue.stdout.readline()))}
    fill_disk(small_disk / "runaway.log")
    queue.stdin.write("go\n")
    queue.stdin.close()
    assert queue.wait(60) == -9
    queue.stdout.close()
    assert os.statvfs(small_disk).f_bavail == 0, "the disk must be full when the agent starts"

    hub_db = tmp_path / "hub.db"
    agent = agent_proc(cfg, tmp_path)  # the hub is not reachable yet: nothing can drain
    hub = None
    try:
        wait_for(lambda: "OUTBOX FULL" in (tmp_path / "agent.log").read_text(), 30, "the agent to say the disk is full")
        wait_for(lambda: "not stored" in (tmp_path / "agent.log").read_text(), 30,
                 "a new transaction refused (OutboxFull) while the disk is full")
        assert status(broker)["store_full"] is True, "the status command says so too"
        assert agent.alive(), "the agent must keep running on a full disk"
        hub = hub_proc(broker, str(hub_db), tmp_path)
        wait_for(lambda: hub_ids(hub_db) >= queued, 120, "the queued transactions to reach the hub")
        assert agent.alive(), "the agent must keep running on a full disk"
        # Delivered records gave their pages back to the disk: the agent takes transactions again.
        wait_for(lambda: len(journal_ids(tmp_path / "journal.txt")) > 20, 60, "new transactions to be accepted")
        assert "Traceback" not in (tmp_path / "agent.log").read_text()
        wait_for(lambda: any("store.disk_full" in a for a in alerts(hub_db)), 30, "the disk-full alert at the hub")
        assert agent.alive()
        assert agent.terminate() == 0
        agent = agent_proc(agent_config(small_disk, broker.url, rate=None), tmp_path)  # drain, producing nothing
        wait_for(lambda: outbox_depth(store) == 0, 60, "the outbox to drain")
    finally:
        agent.terminate()
        if hub is not None:
            hub.terminate()
    promised = queued | journal_ids(tmp_path / "journal.txt")
    ids = wait_for(lambda: (lambda got: got if set(got) >= promised else None)(hub_pass_ids(hub_db)), 60,
                   "every promised pass at the hub")
    assert_exactly_once(ids, promised)

"""Fault suite: real mosquitto, real agent and hub processes, counting what reaches the hub database.

Every scenario ends the same way: the producer is stopped, an agent without producers drains the
outbox, and every pass id the producer was told is durable must be in the hub exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.doctor import read_status
from tests.helpers import (
    Broker,
    Proc,
    agent_config,
    agent_proc,
    assert_exactly_once,
    hub_pass_ids,
    hub_proc,
    journal_ids,
    outbox_depth,
    wait_for,
    wait_growth,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def drain_and_check(tmp_path: Path, broker: Broker, agent, hub_db: Path, journal: Path) -> int:
    """Stop producing, drain with a producer-less agent, then compare hub with the journal."""
    assert agent.terminate() == 0
    cfg = agent_config(tmp_path, broker.url, rate=None)
    drainer = agent_proc(cfg, tmp_path, name="agent")
    try:
        wait_for(lambda: outbox_depth(tmp_path / "agent-outbox.db") == 0, 90, "the outbox to drain")
    finally:
        drainer.terminate()
    promised = journal_ids(journal)
    assert len(promised) > 100, "the producer made too little traffic for the test to mean anything"
    ids = wait_for(lambda: (lambda got: got if set(got) >= promised else None)(hub_pass_ids(hub_db)), 30,
                   "the hub to hold every promised pass")
    assert_exactly_once(ids, promised)
    return len(promised)


def start(tmp_path: Path, broker: Broker, rate: float = 300):
    hub_db = tmp_path / "hub.db"
    journal = tmp_path / "journal.txt"
    hub = hub_proc(broker, str(hub_db), tmp_path)
    cfg = agent_config(tmp_path, broker.url, rate=rate, journal=journal)
    agent = agent_proc(cfg, tmp_path)
    return hub, agent, hub_db, journal, cfg


def at_hub(hub_db: Path) -> Callable[[], int]:
    return lambda: len(hub_pass_ids(hub_db)) if hub_db.exists() else 0


def promised(journal: Path) -> Callable[[], int]:
    return lambda: len(journal_ids(journal))


def scenario(tmp_path: Path, broker: Broker, disrupt: Callable[[Proc, Proc], None]) -> int:
    """Start hub and producing agent, disrupt them, see sync carry on, then drain and check exactly-once."""
    hub, agent, hub_db, journal, _ = start(tmp_path, broker)
    try:
        disrupt(hub, agent)
        wait_growth(at_hub(hub_db), 600, 90, "passes reaching the hub again after the disruption")
        return drain_and_check(tmp_path, broker, agent, hub_db, journal)
    finally:
        agent.terminate()
        hub.terminate()


def test_kill9_agent_repeatedly(tmp_path: Path, broker: Broker) -> None:
    rng = random.Random(7)

    journal = tmp_path / "journal.txt"

    def boots() -> set[str]:
        return {i.split("-")[0] for i in journal_ids(journal)}

    def latest_boot_passes() -> int:
        ids = journal_ids(journal)
        latest = max((i.split("-")[0] for i in ids), key=int, default=None)
        return sum(i.split("-")[0] == latest for i in ids)

    def disrupt(hub: Proc, agent: Proc) -> None:
        for n in range(1, 7):
            # killed at a random point of each boot's stream: after 150..600 passes it was told are durable (a
            # cold machine, first imports after an install, may take long to start: the wait is on production)
            k = rng.randint(150, 600)
            wait_for(lambda n=n, k=k: len(boots()) >= n and latest_boot_passes() >= k, 60, f"boot {n} to produce")
            agent.kill9()
            agent.start()

    n = scenario(tmp_path, broker, disrupt)
    # Seven boots of the agent, each numbering its passes from 0: ids differ only by boot.
    assert len(boots()) == 7 and n > 500  # every boot produced, then was killed mid-stream


def test_kill9_broker_and_restart(tmp_path: Path, broker: Broker) -> None:
    hub_db, journal = tmp_path / "hub.db", tmp_path / "journal.txt"

    def disrupt(hub: Proc, agent: Proc) -> None:
        for _ in range(3):
            wait_growth(at_hub(hub_db), 600, 60, "passes reaching the hub")
            broker.kill()
            wait_growth(promised(journal), 400, 60, "the device producing into its outbox while the broker is down")
            broker.start()

    scenario(tmp_path, broker, disrupt)


def test_hub_down_while_devices_produce(tmp_path: Path, broker: Broker) -> None:
    hub_db, outbox = tmp_path / "hub.db", tmp_path / "agent-outbox.db"

    def resends() -> int:
        return int(read_status(outbox)["runtime"].get("resends") or 0)

    def disrupt(hub: Proc, agent: Proc) -> None:
        wait_growth(at_hub(hub_db), 600, 60, "passes reaching the hub")
        hub.kill9()
        # a long outage: the device keeps producing and re-sends its whole window of un-acked batches, with
        # growing ack timeouts, again and again, into the broker's queue for the hub's session
        wait_for(lambda: outbox_depth(outbox) > 8000 and resends() >= 24, 120,
                 "records to pile up on the device and the window to be re-sent three times")
        hub.start()

    scenario(tmp_path, broker, disrupt)


def test_restart_everything(tmp_path: Path, broker: Broker) -> None:
    hub_db = tmp_path / "hub.db"

    def disrupt(hub: Proc, agent: Proc) -> None:
        for _ in range(2):
            wait_growth(at_hub(hub_db), 600, 60, "passes reaching the hub")
            agent.kill9()
            hub.kill9()
            broker.kill()
            broker.start()
            hub.start()
            agent.start()

    scenario(tmp_path, broker, disrupt)


def test_burst_into_slow_hub_on_default_broker_loses_nothing(tmp_path: Path, broker: Broker) -> None:
    """mosquitto's default max_queued_messages (1000) drops QoS1 messages for a slow subscriber;
    our window of unacked batches never lets the queue get there, and re-sends cover the rest."""
    from edge_agent.store import Outbox

    n = 100_000
    store = tmp_path / "agent-outbox.db"
    with Outbox(store) as ob:
        for k in range(0, n, 20_000):
            ob.put_many([ob.make_record("measurement", "burst", {"i": i}) for i in range(k, k + 20_000)])
    hub_db = tmp_path / "hub.db"
    hub = hub_proc(broker, str(hub_db), tmp_path, "hubA", "--slow-ms", "150")
    cfg = agent_config(tmp_path, broker.url, rate=None, sync={"batch_max_records": 500, "window": 8})
    agent = agent_proc(cfg, tmp_path)
    try:
        wait_for(lambda: outbox_depth(store) == 0, 240, "the burst to drain through the slow hub", every=0.5)
    finally:
        agent.terminate()
        hub.terminate()
    import sqlite3

    conn = sqlite3.connect(hub_db)
    got = [r[0] for r in conn.execute("SELECT json_extract(body, '$.i') FROM events WHERE kind='burst'")]
    conn.close()
    assert len(got) == n and set(got) == set(range(n))

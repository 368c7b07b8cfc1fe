"""Two hub workers on one shared subscription writing to PostgreSQL; one is killed mid-stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    Broker,
    agent_config,
    agent_proc,
    assert_exactly_once,
    hub_proc,
    journal_ids,
    outbox_depth,
    wait_for,
    wait_growth,
)

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


def pg_pass_ids(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('events')").fetchone()[0] is None:
            return []  # the hub has not created its schema yet
        rows = conn.execute("SELECT device_id || '/' || (body->>'id') FROM events WHERE kind='gate.pass'")
        return [r[0] for r in rows.fetchall()]


def test_two_workers_one_killed_exactly_once(tmp_path: Path, broker: Broker, pg_url: str) -> None:
    hubs = [hub_proc(broker, pg_url, tmp_path, name) for name in ("hubA", "hubB")]
    journal = tmp_path / "journal.txt"
    cfgs = [agent_config(tmp_path, broker.url, device=f"gate-{i}", rate=250, journal=tmp_path / f"j{i}.txt",
                         name=f"agent{i}", sync={"batch_max_records": 200}) for i in range(3)]
    agents = [agent_proc(c, tmp_path, name=f"agent{i}") for i, c in enumerate(cfgs)]
    try:
        wait_for(lambda: len(pg_pass_ids(pg_url)) > 1000, 60, "both workers storing passes")
        hubs[0].kill9()  # mid-stream: batches it held un-acked come again and land on hubB
        wait_growth(lambda: len(pg_pass_ids(pg_url)), 1500, 60, "hubB to carry on alone")
        for a in agents:
            assert a.terminate() == 0
        drainers = [agent_proc(agent_config(tmp_path, broker.url, device=f"gate-{i}", rate=None, name=f"agent{i}"),
                               tmp_path, name=f"agent{i}") for i in range(3)]
        wait_for(lambda: all(outbox_depth(tmp_path / f"agent{i}-outbox.db") == 0 for i in range(3)), 120,
                 "all outboxes to drain through the surviving worker", every=0.5)
        for d in drainers:
            d.terminate()
    finally:
        for p in agents + hubs:
            p.terminate()
    promised = {f"gate-{i}/{pid}" for i in range(3) for pid in journal_ids(tmp_path / f"j{i}.txt")}
    assert len(promised) > 2000
    ids = pg_pass_ids(pg_url)
    assert_exactly_once(ids, promised)
    assert not journal.exists()


def test_hub_status_reports_devices_and_gaps_from_postgres(tmp_path: Path, broker: Broker, pg_url: str) -> None:
    from hub.db import open_backend

    hub = hub_proc(broker, pg_url, tmp_path, "hubA")
    cfg = agent_config(tmp_path, broker.url, rate=100, journal=tmp_path / "j.txt")
    agent = agent_proc(cfg, tmp_path)
    try:
        wait_for(lambda: len(pg_pass_ids(pg_url)) > 100, 30, "passes at the hub")
        backend = open_backend(pg_url)
        dev = wait_for(lambda: [d for d in backend.devices() if d["online"]], 10, "the device online")[0]
        assert dev["device"] == "gate-01" and dev["site"] == "westlake" and dev["boot"] == 1
        assert dev["meta"]["role"] == "gate" and dev["last_seq"] >= dev["epoch"]
        agent.terminate()
        offline = wait_for(lambda: [d for d in backend.devices() if not d["online"]], 10, "offline state")[0]
        assert offline["gaps"] == [], "graceful stop after a full drain leaves no gap"
        backend.close()
    finally:
        agent.terminate()
        hub.terminate()

"""End-to-end sync throughput: outbox -> mosquitto -> hub commit -> ack -> purge.

Ours (batched, app-level acks) vs the naive path (bench/baselines/naive.py), same mosquitto, same run; then the
time to drain a 1,000,000-event backlog, and a burst into a slow hub on a default-settings broker.
Ends with: RESULT events_per_s=.. naive_events_per_s=.. ratio=.. drain_1m_s=.. (+ burst figures)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.baselines import naive  # noqa: E402
from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig  # noqa: E402
from edge_agent.store import Outbox  # noqa: E402
from edge_agent.sync.uplink import Uplink  # noqa: E402
from tests.helpers import Broker, hub_proc, wait_for  # noqa: E402


def fill_outbox(path: Path, n: int) -> Outbox:
    ob = Outbox(path)
    for k in range(0, n, 100_000):
        ob.put_many([ob.make_record("measurement", "bench", {"i": i, "v": 1.5})
                     for i in range(k, min(n, k + 100_000))])
    return ob


def ours(work: Path, broker: Broker, n: int, name: str) -> float:
    """Seconds from uplink start until the hub acked every record and the outbox is empty."""
    hub = hub_proc(broker, str(work / f"hub-{name}.db"), work, f"hub-{name}", "--log-level", "WARNING",
                   "--group", f"bench-{name}")
    ob = fill_outbox(work / f"{name}.db", n)
    time.sleep(1.0)  # hub subscribed
    up = Uplink(ob, DeviceConfig(id=f"dev-{name}", site="bench"), MqttConfig(url=broker.url),
                SyncConfig(backlog_rate=0), boot=1)
    t0 = time.perf_counter()
    up.start()
    try:
        wait_for(lambda: up.stats.records_acked >= n, 240, f"{name}: all acked", every=0.01)
        elapsed = time.perf_counter() - t0
        assert ob.depth() == 0, "acked rows must be purged"
    finally:
        up.stop()
        ob.close()
        hub.terminate()
        for f in work.glob(f"*{name}.db*"):  # keep the page cache for the next run
            f.unlink()
    return elapsed


def naive_run(work: Path, broker: Broker, n: int, name: str, slow_ms: float = 0,
              settle: float = 3.0) -> tuple[float, int]:
    """(seconds until the hub stored what it will store, events stored at the hub)."""
    db, hub_db = work / f"naive-{name}.db", work / f"naive-hub-{name}.db"
    naive.fill(db, n)
    hub = subprocess.Popen([sys.executable, "-m", "bench.baselines.naive", "hub", "--port", str(broker.port),
                            "--db", str(hub_db), "--slow-ms", str(slow_ms)], cwd=ROOT)
    time.sleep(1.0)
    try:
        t0 = time.perf_counter()
        naive.run_agent(db, broker.port, f"dev-{name}")
        last, stable_since = -1, time.perf_counter()
        while time.perf_counter() - stable_since < settle:  # wait until the hub stops receiving
            got = naive.hub_count(hub_db)
            if got != last:
                last, stable_since = got, time.perf_counter()
            if got >= n:
                break
            time.sleep(0.05)
        elapsed = (time.perf_counter() - t0) if last >= n else (stable_since - t0)
    finally:
        hub.terminate()
        hub.wait()
    return elapsed, naive.hub_count(hub_db)


def burst_ours(work: Path, broker: Broker, n: int) -> int:
    """Lost events for a burst of n into a hub that sleeps 100 ms per commit (default broker)."""
    ob = fill_outbox(work / "burst.db", n)
    hub_db = work / "hub-burst.db"
    hub = hub_proc(broker, str(hub_db), work, "hub-burst", "--slow-ms", "100", "--log-level", "WARNING")
    time.sleep(1.0)
    up = Uplink(ob, DeviceConfig(id="dev-burst", site="bench"), MqttConfig(url=broker.url),
                SyncConfig(backlog_rate=0, batch_max_records=500), boot=1)
    up.start()
    try:
        wait_for(lambda: up.stats.records_acked >= n, 240, "burst acked", every=0.05)
    finally:
        up.stop()
        ob.close()
        hub.terminate()
    import sqlite3

    conn = sqlite3.connect(hub_db)
    got = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    conn.close()
    return n - int(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300_000, help="events for the throughput comparison")
    ap.add_argument("--runs", type=int, default=3, help="repeat our measurement and report the median")
    ap.add_argument("--naive-events", type=int, default=20_000, help="events for the naive path")
    ap.add_argument("--backlog", type=int, default=1_000_000, help="backlog size for the drain time")
    ap.add_argument("--burst", type=int, default=100_000, help="burst size into the slow hub")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fast = Broker(work, "max_queued_messages 0")  # unlimited queue: measures speed, not loss
        default = Broker(work)  # mosquitto defaults: 1000 queued QoS1 messages per client
        try:
            runs = [a.events / ours(work, fast, a.events, f"ours{i}") for i in range(a.runs)]
            eps = statistics.median(runs)
            print(f"ours:  {a.events} events, {a.runs} runs: " + ", ".join(f"{r:,.0f}" for r in runs)
                  + f" events/s; median {eps:,.0f}")
            t_naive, got = naive_run(work, fast, a.naive_events, "fast")
            neps = got / t_naive
            print(f"naive: {got}/{a.naive_events} events in {t_naive:.2f} s = {neps:,.0f} events/s")
            t_drain = ours(work, fast, a.backlog, "drain")
            print(f"drain: {a.backlog} backlog in {t_drain:.2f} s ({a.backlog / t_drain:,.0f} events/s)")
            _, naive_got = naive_run(work, default, 5_000, "burst", slow_ms=2)
            naive_lost = 100 * (5_000 - naive_got) / 5_000
            print(f"burst into a slow hub, default broker: naive lost {naive_lost:.0f}% of 5,000", flush=True)
            lost = burst_ours(work, default, a.burst)
            print(f"burst into a slow hub, default broker: ours lost {lost} of {a.burst:,}")
        finally:
            fast.close()
            default.close()
    print(f"RESULT events_per_s={eps:.0f} naive_events_per_s={neps:.0f} ratio={eps / neps:.1f} "
          f"drain_1m_s={t_drain:.1f} burst_lost={lost} naive_burst_lost_pct={naive_lost:.0f}")


if __name__ == "__main__":
    main()

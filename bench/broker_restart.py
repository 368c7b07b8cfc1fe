"""Catch-up after a broker restart, with and without broker persistence, side by side.

A device streams 200 transactions/s through mosquitto into a hub process; the broker is restarted
(kill -9 without persistence; a clean stop and start with persistence, so its database is saved).
Catch-up is the time from the broker listening again until every record produced before the restart
is acked by the hub. The device reconnects before the hub has subscribed again, and the broker drops
what it re-sends meanwhile: with no session for the hub (no persistence), and also with a kept one
(mosquitto 2.0 delivers nothing published on the shared subscription while the hub was away). Those
batches go again when the hub announces it is back (`venue/v1/_hub/online`), else only after the ack
timeout (15 s by default; before the announcement existed: 15.1 s and 15.2 s).
Ends with: RESULT catchup_s=.. catchup_persist_s=.. (medians over --runs)
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig  # noqa: E402
from edge_agent.records import DataClass  # noqa: E402
from edge_agent.store import Outbox  # noqa: E402
from edge_agent.sync.uplink import Uplink  # noqa: E402
from tests.helpers import Broker, hub_proc, wait_for  # noqa: E402


def produce(ob: Outbox, stop: threading.Event, rate: float = 200) -> None:
    i = 0
    while not stop.wait(1 / rate):
        ob.put("transaction", "gate.pass", {"id": i})
        i += 1


def unacked_up_to(ob: Outbox, seq: int) -> int:
    return sum(len(ob.fetch(cls, 0, before=seq + 1, limit=100_000)) for cls in DataClass)


def restart_once(work: Path, persist: bool, name: str) -> float:
    extra = f"persistence true\npersistence_location {work}/\npersistence_file mosquitto-{name}.db\n" if persist else ""
    broker = Broker(work, extra)
    hub = hub_proc(broker, str(work / f"hub-{name}.db"), work, f"hub-{name}", "--log-level", "WARNING")
    ob = Outbox(work / f"{name}.db")
    up = Uplink(ob, DeviceConfig(id=f"dev-{name}", site="bench"), MqttConfig(url=broker.url),
                SyncConfig(backlog_rate=0, backoff_min_s=0.5, backoff_max_s=2), boot=1)
    stop = threading.Event()
    worker = threading.Thread(target=produce, args=(ob, stop), daemon=True)
    try:
        up.start()
        worker.start()
        wait_for(lambda: up.stats.records_acked > 400, 30, "steady streaming")
        assert broker.proc is not None
        if persist:
            broker.proc.send_signal(signal.SIGTERM)  # saves its database
            broker.proc.wait()
        else:
            broker.kill()
        time.sleep(1.0)  # the broker is down for a second; the device keeps producing
        broker.start()
        t0 = time.perf_counter()
        last = ob.next_seq() - 1
        wait_for(lambda: unacked_up_to(ob, last) == 0, 120, "catch-up", every=0.02)
        return time.perf_counter() - t0
    finally:
        stop.set()
        worker.join()
        up.stop()
        ob.close()
        hub.terminate()
        broker.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="restarts per mode; the median is reported")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = [restart_once(work, False, f"plain{i}") for i in range(a.runs)]
        kept = [restart_once(work, True, f"persist{i}") for i in range(a.runs)]
    print("without persistence: " + ", ".join(f"{t:.1f}" for t in plain) + " s")
    print("with persistence:    " + ", ".join(f"{t:.1f}" for t in kept) + " s")
    print(f"RESULT catchup_s={statistics.median(plain):.1f} catchup_persist_s={statistics.median(kept):.1f}")


if __name__ == "__main__":
    main()

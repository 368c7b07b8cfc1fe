"""Gate latency over the simulated serial path: QR line written on the scanner's pty → decision
(recorded durably in the outbox as a transaction) → OPEN frame received by the turnstile simulator.

Ends with: RESULT p50_ms=.. p99_ms=..
"""

from __future__ import annotations

import datetime as dt
import select
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serial  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from edge_agent.drivers.serialio import LineReader, read_available  # noqa: E402
from edge_agent.drivers.turnstile import TurnstileDriver  # noqa: E402
from edge_agent.gate.controller import GateController  # noqa: E402
from edge_agent.gate.passback import UsedTickets  # noqa: E402
from edge_agent.gate.role import Ledger  # noqa: E402
from edge_agent.gate.site import Site  # noqa: E402
from edge_agent.gate.tickets import Capacity, Ticket, Validator, sign  # noqa: E402
from edge_agent.records import DataClass  # noqa: E402
from edge_agent.sim.pty import PtyPair  # noqa: E402
from edge_agent.sim.turnstile import TurnstileSim  # noqa: E402
from edge_agent.store import Outbox  # noqa: E402


def main(n: int = 1000) -> None:
    key = Ed25519PrivateKey.generate()
    now = dt.datetime(2026, 11, 22, 10, 30)
    qrs = [sign(Ticket(f"T{i}", "westlake", "2026-11-22", "10:00-11:00", 1, now.timestamp() + 3600), key)
           for i in range(n)]
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        ob = Outbox(Path(tmp) / "o.db")
        used = UsedTickets(Path(tmp) / "gate.db")
        # wired as the gate role wires a lane: the site ticked under the validator's lock, passes persisted
        site = Site("site", Capacity(100_000), now.date().isoformat())
        lock = threading.RLock()
        v = Validator("westlake", key.public_key(), used, site, lambda: now, lock=lock)
        ledger = Ledger(site, used, lock, lambda: now, lambda e: None)
        gate = GateController("g1", v, lambda kind, body: ob.put(DataClass.TRANSACTION, kind, body),
                              lambda p: ledger.feed([p]))
        sim = TurnstileSim()
        drv = TurnstileDriver(serial.Serial(sim.path, 115200, timeout=0.05), 1, gate.on_turnstile).start()
        gate.attach(drv)
        scanner = PtyPair()
        port = serial.Serial(scanner.path, 9600, timeout=0.05)
        reader = LineReader()
        sent: dict[int, float] = {}
        stop = threading.Event()

        def scan_loop() -> None:
            while not stop.is_set():
                for line in reader.feed(read_available(port)):
                    gate.on_scan(line)

        t = threading.Thread(target=scan_loop, daemon=True)
        t.start()
        for i, qr in enumerate(qrs):
            sent[i] = time.perf_counter()
            scanner.write(qr.encode() + b"\r\n")
            deadline = time.perf_counter() + 2
            while len(sim.opens) <= i and time.perf_counter() < deadline:
                select.select([], [], [], 0.0002)
        stop.set()
        t.join(1)
        drv.close()
        lat = sorted((sim.opens[i][0] - sent[i]) * 1000 for i in range(min(n, len(sim.opens))))
        decisions = ob.fetch(DataClass.TRANSACTION, 0, limit=10 * n).kind.count("gate.decision")
        sim.close()
        scanner.close()
        ob.close()
    print(f"{len(lat)}/{n} gates opened, {decisions} decisions recorded; p50 {lat[len(lat) // 2]:.2f} ms, "
          f"p99 {lat[int(len(lat) * 0.99)]:.2f} ms, max {lat[-1]:.2f} ms")
    print(f"RESULT p50_ms={lat[len(lat) // 2]:.2f} p99_ms={lat[int(len(lat) * 0.99)]:.2f} opened={len(lat)}")


if __name__ == "__main__":
    main()

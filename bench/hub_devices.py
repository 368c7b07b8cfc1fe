"""Time the hub's per-device status (`/devices`) for a device with N gaps and N skip announcements.

    python bench/hub_devices.py 1000 2000 5000 10000
    VENUE_BENCH_PG=postgresql://postgres@127.0.0.1/test python bench/hub_devices.py 10000   # PostgreSQL

Half the announcements explain holes (budget), half may hide losses (power_loss), so every branch of the
accounting runs. Linear status: the time per (gap + skip) stays flat as N grows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from edge_agent.records import DataClass
from edge_agent.sync.envelope import Batch
from hub.db import Backend, PostgresBackend, SqliteBackend

E = 1_800_000_000_000_000


def open_db(d: Path) -> tuple[Backend, str | None]:
    pg = os.environ.get("VENUE_BENCH_PG")
    if not pg:
        return SqliteBackend(str(d / "hub.db")), None
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return PostgresBackend(f"{pg}?options=-csearch_path%3D{schema}"), schema


def drop(schema: str | None) -> None:
    if schema:
        import psycopg

        with psycopg.connect(os.environ["VENUE_BENCH_PG"], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def build(backend: Backend, n: int) -> Backend:
    seqs = [E + 3 * k for k in range(n + 1)]  # holes of two between every pair: n gaps
    skips = [(E + 3 * k + 1, E + 3 * k + 1, E + 3 * k + 2, "budget" if k % 2 else "power_loss") for k in range(n)]
    for i in range(0, len(seqs), 5000):
        chunk = seqs[i:i + 5000]
        backend.ingest([Batch("gate-1", "westlake", DataClass.TRANSACTION, f"b{i}", E, 1, chunk, [1.0] * len(chunk),
                              ["k"] * len(chunk), ["{}"] * len(chunk), skips[i:i + 5000])], [])
    return backend


def main(sizes: list[int]) -> None:
    per_item: dict[int, float] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            backend, schema = open_db(Path(d))
            build(backend, n)
            t0 = time.perf_counter()
            [dev] = backend.devices()
            dt = time.perf_counter() - t0
            backend.close()
            drop(schema)
        print(f"n={n:>6} gaps+skips={2 * n:>6}  /devices {dt * 1000:9.1f} ms  {dt / (2 * n) * 1e6:7.2f} us per item"
              f"  (gaps={len(dev['gaps'])} lost={len(dev['lost'])})")
        per_item[n] = dt / (2 * n) * 1e6
    small, large = min(per_item), max(per_item)
    # Linear accounting keeps the cost per item flat; the quadratic one grew it in proportion to N (growth ~ N ratio).
    print(f"RESULT items={2 * large} devices_ms={per_item[large] * 2 * large / 1000:.1f} "
          f"us_per_item_small={per_item[small]:.2f} us_per_item_large={per_item[large]:.2f} "
          f"growth={per_item[large] / per_item[small]:.2f} n_ratio={large / small:.0f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 2000, 5000, 10000])

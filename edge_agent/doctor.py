"""`edge-agent doctor` and `edge-agent status`: checks a technician runs on site, without the agent."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.registry import AgentConfig
from edge_agent.store.outbox import quarantined_files

BUILD_YEAR = 2026


def read_status(db: Path) -> dict[str, Any]:
    """Outbox depth/age per class, drop counters and the agent's last reported broker state (read-only)."""
    if not db.exists():
        raise FileNotFoundError(f"no outbox at {db} (has the agent run yet?)")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        now = time.time()
        classes = {}
        for cls in ("transaction", "measurement", "state"):
            n, oldest = conn.execute(f"SELECT COUNT(*), MIN(ts) FROM ob_{cls}").fetchone()  # nosec B608: fixed names
            classes[cls] = {"depth": n, "oldest_age_s": round(now - oldest, 1) if oldest else 0.0}
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        runtime = {k: json.loads(v) for k, v, _ in conn.execute("SELECT key, value, updated FROM runtime")}
        updated = conn.execute("SELECT MAX(updated) FROM runtime").fetchone()[0]
    finally:
        conn.close()
    quarantined = quarantined_files(db)
    age = round(now - updated, 1) if updated else None
    return {"db": str(db), "classes": classes, "queue": sum(c["depth"] for c in classes.values()),
            "drops": {k: v for k, v in counters.items() if k.startswith("dropped.")},
            "acked": {k: v for k, v in counters.items() if k.startswith("acked.")},
            "relayed_duplicates": counters.get("relayed.duplicate", 0),
            "runtime": runtime, "runtime_age_s": age, "agent": agent_state(runtime.get("pid"), age),
            "quarantined": quarantined}


STALE_S = 10.0  # the agent writes its runtime row every second


def agent_state(pid: Any, age: float | None) -> str:
    """"running", "not running" (no process, or no report) or "stalled" (process alive, reports stopped)."""
    alive = False
    if isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:  # another user's process: it exists
            alive = True
    if age is None or not alive:
        return "not running"
    return "running" if age <= STALE_S else "stalled"


def fsync_latency(directory: Path, n: int = 20) -> tuple[float, float]:
    """p50 and max of write+fsync of a small record in the store's directory (ms)."""
    directory.mkdir(parents=True, exist_ok=True)
    samples = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".doctor-") as f:
        for _ in range(n):
            f.write(b"x" * 256)
            f.flush()
            t = time.perf_counter()
            os.fsync(f.fileno())
            samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), max(samples)


def broker_check(cfg: AgentConfig, timeout: float = 5.0) -> tuple[str, str]:
    """TCP connect, then an MQTT CONNECT answered by CONNACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_agent.sync.uplink import configure_auth

    host, port = cfg.mqtt.host, cfg.mqtt.port
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return "FAIL", f"{host}:{port} unreachable: {err}"
    result: dict[str, Any] = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{cfg.device.id}-doctor", protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, f, rc, p: result.setdefault("rc", rc)
    configure_auth(c, cfg.mqtt)
    try:
        c.connect(host, port, keepalive=10)
        deadline = time.monotonic() + timeout
        while "rc" not in result and time.monotonic() < deadline:
            c.loop(0.1)
        c.disconnect()
    except OSError as err:
        return "FAIL", f"MQTT handshake failed: {err}"
    if "rc" not in result:
        return "FAIL", "no CONNACK"
    rc = result["rc"]
    return ("FAIL", f"refused: {rc}") if rc.is_failure else ("OK", f"{host}:{port} accepted MQTT v5 connect")


def run_doctor(cfg: AgentConfig) -> list[tuple[str, str, str]]:
    """Return (check, OK|WARN|FAIL, detail) rows."""
    rows: list[tuple[str, str, str]] = []
    store_dir = Path(cfg.store.path).resolve().parent
    store_dir.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(store_dir)
    free_mb = usage.free / 2**20
    need = cfg.store.budget_mb * 1.5
    rows.append(("disk free", "OK" if free_mb >= need else "WARN" if free_mb >= 64 else "FAIL",
                 f"{free_mb:.0f} MiB free in {store_dir} (budget {cfg.store.budget_mb:.0f} MiB needs ~{need:.0f})"))
    p50, worst = fsync_latency(store_dir)
    rows.append(("fsync latency", "OK" if worst < 50 else "WARN", f"p50 {p50:.2f} ms, max {worst:.2f} ms"))
    year = time.gmtime().tm_year
    skew = time.time() - time.monotonic()  # only meaningful as a sanity signal
    clock_ok = BUILD_YEAR <= year <= BUILD_YEAR + 20
    rows.append(("clock", "OK" if clock_ok else "FAIL",
                 f"UTC {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
                 + ("" if clock_ok else " — before this build: no RTC/NTP? timestamps will be wrong")
                 + f" (boot offset {skew:.0f} s)"))
    db = Path(cfg.store.path)
    if db.exists():
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            conn.close()
            rows.append(("outbox integrity", "OK" if check == "ok" else "FAIL", f"quick_check: {check}"))
        except sqlite3.DatabaseError as err:
            rows.append(("outbox integrity", "FAIL", f"{err} (the agent will quarantine it at start)"))
    else:
        rows.append(("outbox integrity", "OK", "no outbox yet (created at first start)"))
    rows.append(("broker", *broker_check(cfg)))
    rows += vision_rows(cfg)
    return rows


def vision_rows(cfg: AgentConfig) -> list[tuple[str, str, str]]:
    """Whether each camera detector's execution providers (CUDA, TensorRT, CPU) exist in this onnxruntime."""
    from edge_agent.vision.config import VisionProducerConfig
    from edge_agent.vision.session import provider_rows

    cams = [p for p in cfg.producers if isinstance(p, VisionProducerConfig)]
    if not cams:
        return []
    try:
        import onnxruntime as ort

        available: list[str] | None = ort.get_available_providers()
    except ImportError:
        available = None
    return provider_rows(cams, available)

"""The naive sync path the issue measured, implemented faithfully as the benches' baseline.

Agent: one event per MQTT message, QoS 1, the outbox row deleted (and committed) on PUBACK.
Hub:   one INSERT + COMMIT per message, inside paho's on_message (a slow hub blocks its socket).
Run the hub side as `python -m bench.baselines.naive hub --port P --db FILE [--slow-ms N]`.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TOPIC = "venue/v1/naive/{device}/up/event"


def fill(db: Path, n: int) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")  # same storage settings as ours: a fair baseline
    conn.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO outbox (body) VALUES (?)", ((f'{{"i":{i},"v":1.5}}',) for i in range(n)))
    conn.commit()
    conn.close()


def run_agent(db: Path, port: int, device: str, timeout: float = 120) -> float:
    """Publish every outbox row; return seconds until the outbox is empty (all PUBACKed)."""
    conn = sqlite3.connect(db, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    rows = conn.execute("SELECT seq, body FROM outbox ORDER BY seq").fetchall()
    mids: dict[int, int] = {}
    early: set[int] = set()  # PUBACKs that beat the mid bookkeeping
    lock = threading.Lock()  # never held while calling paho: its callbacks hold paho's own mutexes
    left = [len(rows)]
    done = threading.Event()

    def delete(seq: int) -> None:
        conn.execute("DELETE FROM outbox WHERE seq=?", (seq,))
        conn.commit()
        left[0] -= 1
        if left[0] == 0:
            done.set()

    def on_publish(client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        with lock:
            seq = mids.pop(mid, None)
            if seq is None:
                early.add(mid)
            else:
                delete(seq)

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"naive-{device}", protocol=mqtt.MQTTv5)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = TOPIC.format(device=device)
    t0 = time.perf_counter()
    for seq, body in rows:
        info = c.publish(topic, body, qos=1)
        with lock:
            if info.mid in early:
                early.discard(info.mid)
                delete(seq)
            else:
                mids[info.mid] = seq
    done.wait(timeout)
    elapsed = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    conn.close()
    return elapsed


def run_hub(port: int, db: Path, slow_ms: float) -> None:
    conn = sqlite3.connect(db, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS events (device_id TEXT, seq INTEGER, body TEXT)")
    conn.commit()
    n = [0]

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        n[0] += 1
        conn.execute("INSERT INTO events VALUES (?,?,?)", (msg.topic.split("/")[3], n[0], msg.payload.decode()))
        conn.commit()
        if slow_ms:
            time.sleep(slow_ms / 1000)

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="naive-hub", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("venue/v1/naive/+/up/event", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_forever()


def hub_count(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=30)
        n = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        conn.close()
        return int(n)
    except sqlite3.OperationalError:
        return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["hub"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--slow-ms", type=float, default=0)
    a = p.parse_args()
    run_hub(a.port, a.db, a.slow_ms)

"""Real processes for the sync and fault tests: mosquitto on a free port, hub and agent subprocesses."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.db import SqliteBackend
from hub.ingest import HubWorker
from tests.signing import HUB_PUB

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Broker:
    """A mosquitto we own: kill -9 it, restart it on the same port."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.port = free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        # Started as root, mosquitto would switch to its own user and lose access to files in tmp_path.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{user}{extra}\n")
        self.log = open(workdir / f"mosquitto-{self.port}.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=self.log, stderr=self.log)
        wait_for(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        self.log.close()


class Proc:
    """A child process (hub worker or agent) that can be killed -9 and started again."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.logpath = argv, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.logpath, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 20) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)


def hub_proc(broker: Broker, db: str, workdir: Path, name: str = "hubA", *extra: str) -> Proc:
    return Proc([PY, "-m", "hub", "run", "--broker", broker.url, "--db", db, "--client-id", name, *extra],
                workdir / f"{name}.log")


def agent_config(workdir: Path, broker_url: str, *, device: str = "gate-01", rate: float | None = 200,
                 journal: Path | None = None, sync: dict[str, Any] | None = None,
                 store: dict[str, Any] | None = None, name: str = "agent") -> Path:
    lines = [
        'log_level = "INFO"',
        "[device]", f'id = "{device}"', 'site = "westlake"', 'role = "gate"',
        "[store]", f'path = "{workdir / (name + "-outbox.db")}"',
        *[f"{k} = {json.dumps(v)}" for k, v in (store or {}).items()],
        "[mqtt]", f'url = "{broker_url}"',
        "[sync]", "ack_timeout_s = 2", "backoff_min_s = 0.2", "backoff_max_s = 2", "backlog_rate = 0",
        *[f"{k} = {json.dumps(v)}" for k, v in (sync or {}).items()],
        "[commands]", f'hub_key = "{HUB_PUB}"',  # commands signed by tests.signing run
    ]
    if rate:
        lines += ["[[producers]]", 'type = "synthetic"', 'name = "north"', f"rate_per_s = {rate}",
                  "count_interval_s = 1"]
        if journal:
            lines.append(f'journal = "{journal}"')
    path = workdir / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_proc(config: Path, workdir: Path, name: str = "agent") -> Proc:
    return Proc([PY, "-m", "edge_agent", "run", "--config", str(config)], workdir / f"{name}.log")


def outbox_depth(db: Path) -> int:
    if not db.exists():
        return -1
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return sum(conn.execute(f"SELECT COUNT(*) FROM ob_{c}").fetchone()[0]
                   for c in ("transaction", "measurement", "state"))
    finally:
        conn.close()


def hub_pass_ids(db: Path) -> list[str]:
    """Ids of the passes in a SQLite hub database ([] while the hub, just (re)started, has not made its tables)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return [r[0] for r in conn.execute("SELECT json_extract(body, '$.id') FROM events WHERE kind='gate.pass'")]
    except sqlite3.OperationalError as err:
        if "no such table" not in str(err):
            raise
        return []
    finally:
        conn.close()


def journal_ids(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.exists() else set()


def hub_records(db: Path, kind: str) -> list[dict[str, Any]]:
    """Bodies of one kind in a SQLite hub database, in device order ([] before the hub made its tables)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT body FROM events WHERE kind=? ORDER BY seq", (kind,)).fetchall()
        return [json.loads(b) for (b,) in rows]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def outbox_records(ob: Any, cls: Any, kind: str, limit: int = 10_000) -> list[dict[str, Any]]:
    """Bodies of one kind still in an Outbox (oldest first)."""
    m = ob.fetch(cls, 0, limit=limit)
    return [json.loads(b) for k, b in zip(m.kind, m.body, strict=True) if k == kind]


def assert_exactly_once(hub_ids: list[str], promised: set[str]) -> None:
    """Every pass a producer was told is durable arrived once; nothing arrived twice."""
    dups = len(hub_ids) - len(set(hub_ids))
    missing = promised - set(hub_ids)
    assert dups == 0, f"{dups} duplicated passes at the hub"
    assert not missing, f"{len(missing)} promised passes never reached the hub, e.g. {sorted(missing)[:5]}"


class Listener:
    """A plain MQTT client that records what arrives on a topic filter."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.c.connect("127.0.0.1", broker.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


class GateLane:
    """One gate lane on a real passback database, wired as the gate role wires it: the ticket rules and the lane
    share the site, each confirmed pass is ticked into it under the lock and persisted (records in `records`)."""

    def __init__(self, db: Path, key: Any, now: Callable[[], Any], *, limit: int = 10, pass_timeout_s: float = 10,
                 mono: Callable[[], float] = time.monotonic) -> None:
        import threading

        from edge_agent.gate.controller import GateController
        from edge_agent.gate.passback import UsedTickets
        from edge_agent.gate.role import Ledger
        from edge_agent.gate.site import Site
        from edge_agent.gate.tickets import Capacity, Validator

        self.records: list[tuple[str, dict[str, Any]]] = []
        self.used = UsedTickets(db)
        self.site = Site("site", Capacity(limit), now().date().isoformat())
        lock = threading.RLock()
        self.validator = Validator("westlake", key, self.used, self.site, now, lock=lock)
        self.ledger = Ledger(self.site, self.used, lock, now, lambda e: self.records.append((type(e).__name__, {})))
        self.gate = GateController("g1", self.validator, lambda k, b: self.records.append((k, b)),
                                   lambda p: self.ledger.feed([p]), pass_timeout_s, mono)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.records]


class Heard:
    """Collects what a callback hears (driver events, frames) and lets a test wait for a match, woken by the
    callback itself instead of polling."""

    def __init__(self) -> None:
        import threading

        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait(self, pred: Callable[[Any], bool], timeout: float) -> bool:
        """True once an item matching pred has been heard (within timeout)."""
        with self._cond:
            return self._cond.wait_for(lambda: any(pred(i) for i in self.items), timeout)


def wait_growth(count: Callable[[], int], by: int, timeout: float, what: str) -> int:
    """Wait until count() has grown by `by` from now (records produced, passes at the hub); returns the count."""
    start = count()
    return int(wait_for(lambda: (n := count()) >= start + by and n, timeout, what))


@contextmanager
def hub_worker(db: Path, broker: Broker, client_id: str, **kw: Any) -> Iterator[HubWorker]:
    """An in-process hub worker on a SQLite file, connected to the broker; stopped (session ended) after."""
    backend = SqliteBackend(str(db))
    w = HubWorker(backend, "127.0.0.1", broker.port, client_id=client_id, **kw)
    w.start()
    try:
        assert w.connected.wait(10), "the hub worker did not connect"
        yield w
    finally:
        w.stop()
        backend.close()


@contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A size-limited file system mounted at mnt (a real full disk); skips where mounting is not allowed."""
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)

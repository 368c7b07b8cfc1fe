"""Hub worker: drain uplink batches, commit them once, then publish the application acks."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.records import to_ranges
from edge_agent.sync import envelope
from edge_agent.sync.topics import PREFIX, Topics, hub_online, parse
from hub.db import Backend, DeviceState, Ingested

logger = logging.getLogger(__name__)

MAX_DRAIN_MSGS = 64
MAX_DRAIN_RECORDS = 200_000


@dataclass
class HubStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0  # records refused: the hub holds another record under the same seq
    refused: int = 0  # batches refused: a new run that does not start above what the hub holds
    rejected: int = 0
    commits: int = 0


class HubWorker:
    """One ingest worker; run several with the same group to split the load."""

    def __init__(self, backend: Backend, host: str, port: int, group: str = "hub",
                 client_id: str | None = None, prefix: str = PREFIX, slow_s: float = 0.0,
                 session_expiry_s: int = 300) -> None:
        self.backend, self.host, self.port, self.group, self.prefix = backend, host, port, group, prefix
        self.slow_s = slow_s
        # The broker queues for a worker that is briefly down, but a shared group also keeps routing
        # batches to a dead member's session until it expires: keep that bounded (devices re-send).
        self.session_expiry_s = session_expiry_s
        self.stats = HubStats()
        self.connected = threading.Event()
        self._q: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
        self._stop = threading.Event()
        cid = client_id or f"{group}-{int(time.time() * 1000) % 10**9}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self._announce_mid: int | None = None
        self.client.on_message = lambda c, u, msg: self._q.put(msg)
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self._thread = threading.Thread(target=self._loop, name="hub-ingest", daemon=True)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            logger.error("broker refused the hub: %s", rc)
            return
        _, mid = client.subscribe([(f"$share/{self.group}/{self.prefix}/+/+/up/+", 1),
                                   (f"{self.prefix}/+/+/state", 1)])
        # What devices sent while we were away may be gone: no session kept for us (a broker restarted
        # without persistence), and even a kept one gets nothing published meanwhile on the shared
        # subscription (mosquitto 2.0, measured: bench/broker_restart.py). Say so once the subscriptions
        # hold, and devices re-send what is in flight at once instead of after their ack timeout.
        self._announce_mid = mid
        self.connected.set()
        logger.info("hub worker connected to %s:%d (group %s, session %s)", self.host, self.port, self.group,
                    "kept" if flags.session_present else "new")

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if mid == self._announce_mid:
            self._announce_mid = None
            online = json.dumps({"v": 1, "hub": client._client_id.decode(), "at": time.time()})
            client.publish(hub_online(self.prefix), online, qos=1, retain=True)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0  # leaving for good: take our session out of the shared group
        self.client.disconnect(properties=props)
        self.client.loop_stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            msgs, records = [first], 0
            while len(msgs) < MAX_DRAIN_MSGS and records < MAX_DRAIN_RECORDS:
                try:
                    msgs.append(self._q.get_nowait())
                except queue.Empty:
                    break
            try:
                self.handle(msgs)
            except Exception:  # keep the worker alive; un-acked batches come again
                logger.exception("hub ingest failed for %d messages", len(msgs))
                time.sleep(1)

    def handle(self, msgs: list[mqtt.MQTTMessage]) -> None:
        batches: list[envelope.Batch] = []
        states: list[DeviceState] = []
        for msg in msgs:
            where = parse(msg.topic, self.prefix)
            if where is None:
                continue
            site, device, kind, rest = where
            try:
                if kind == "up":
                    b = envelope.decode_batch(bytes(msg.payload))
                    if (b.site, b.device, b.cls.value) != (site, device, rest):
                        raise envelope.EnvelopeError("envelope device/site/class do not match the topic")
                    batches.append(b)
                elif kind == "state" and msg.payload:
                    states.append(decode_state(site, device, bytes(msg.payload)))
            except envelope.EnvelopeError as err:
                self.stats.rejected += 1
                logger.warning("rejected message on %s: %s", msg.topic, err)
        if not batches and not states:
            return
        if self.slow_s:
            time.sleep(self.slow_s)
        results = self.backend.ingest(batches, states)
        self.stats.commits += 1
        for b, res in zip(batches, results, strict=True):
            self.stats.batches += 1
            self.stats.stored += res.stored
            self.stats.duplicates += res.dup
            self.stats.conflicts += len(res.conflict)
            self.stats.refused += res.refused_top is not None
            self.client.publish(Topics(b.site, b.device, self.prefix).ack, envelope.encode_ack(ack_for(b, res)), qos=1)


def ack_for(b: envelope.Batch, res: Ingested) -> envelope.Ack:
    """The ack of one batch: only seqs held with this very record; a refused batch names nothing."""
    if res.refused_top is not None:
        return envelope.Ack(b.batch, b.cls, [], [], 0, 0, error="seq_rewind", top=res.refused_top)
    ranges = b.ranges()
    if res.conflict:
        ranges = to_ranges(sorted(set(b.seq) - set(res.conflict)))
    return envelope.Ack(b.batch, b.cls, ranges, [s[0] for s in b.skipped], res.stored, res.dup,
                        conflict=to_ranges(res.conflict))


def decode_state(site: str, device: str, payload: bytes) -> DeviceState:
    """Birth / last-will message → DeviceState (EnvelopeError when malformed)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise envelope.EnvelopeError(f"state is not JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("state") not in ("online", "offline"):
        raise envelope.EnvelopeError("state must be an object with state online|offline")
    boot, epoch, meta = doc.get("boot"), doc.get("epoch"), doc.get("meta") or {}
    if boot is not None and type(boot) is not int or epoch is not None and type(epoch) is not int:
        raise envelope.EnvelopeError("boot and epoch must be integers")
    if not isinstance(meta, dict):
        raise envelope.EnvelopeError("meta must be an object")
    info = {k: v for k, v in doc.items() if k in ("role", "agent")}
    return DeviceState(site, device, doc["state"] == "online", boot, epoch, {**meta, **info} if meta or info else {})

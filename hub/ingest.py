"""Hub worker: drain uplink batches, commit them once, then publish the application acks.

What is guaranteed (issue 10, "hub ingest that one bad message cannot stop"):
- each message is screened on its own (hub/screen.py): a refusal is counted per device and reason
  (`rejections` in the hub database, `HubStats.rejected`) and never touches another message;
- a message larger than `Limits.max_message` is refused before it is decoded, and the broker is told the
  hub's maximum packet size (MQTT v5), so it does not even send a larger one;
- the hand-over from the network thread is bounded (hub/inbox.py): a flood slows the broker, not the RSS;
- when a group's commit fails, each message of it is tried alone: only the one the database refuses is
  dropped (counted `store_error`, no ack, the device re-sends), the others are stored and acked;
- with a registry (`admit`), a device that is not registered and active at its site is refused and counted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.records import to_ranges
from edge_agent.sync import envelope
from edge_agent.sync.topics import PREFIX, Topics, hub_online
from hub.db import Backend, Ingested, Rejections
from hub.inbox import Inbox
from hub.link import BrokerLink
from hub.screen import DEFAULT_LIMITS, DeviceState, Limits, Refused, decode_state, screen, where

__all__ = ["HubStats", "HubWorker", "ack_for", "decode_state"]

logger = logging.getLogger(__name__)

MAX_DRAIN_MSGS = 64
MAX_DRAIN_RECORDS = 200_000
MQTT_OVERHEAD = 64 * 1024  # topic, properties and headers on top of a payload


@dataclass
class HubStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0  # records refused: the hub holds another record under the same seq (an alarm)
    refused: int = 0  # batches refused: a new run that does not start above what the hub holds
    rejected: int = 0  # messages refused (any reason below)
    commits: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class HubWorker:
    """One ingest worker; run several with the same group to split the load."""

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 1883, group: str = "hub",
                 client_id: str | None = None, prefix: str = PREFIX, slow_s: float = 0.0,
                 session_expiry_s: int = 300, link: BrokerLink | None = None,
                 admit: Callable[[str, str], bool] | None = None, limits: Limits = DEFAULT_LIMITS,
                 inbox: Inbox | None = None, flush_s: float = 1.0) -> None:
        self.backend, self.group, self.prefix = backend, group, prefix
        self.link = link or BrokerLink(host, port)
        self.host, self.port = self.link.host, self.link.port
        self.slow_s, self.admit, self.limits, self.flush_s = slow_s, admit, limits, flush_s
        # The broker queues for a worker that is briefly down, but a shared group also keeps routing
        # batches to a dead member's session until it expires: keep that bounded (devices re-send).
        self.session_expiry_s = session_expiry_s
        self.stats = HubStats()
        self.connected = threading.Event()
        self.inbox = inbox or Inbox()
        self._stop = threading.Event()
        self._rlock = threading.Lock()
        self._pending: Rejections = {}
        self._flushed = time.monotonic()
        cid = client_id or f"{group}-{int(time.time() * 1000) % 10**9}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        self.link.apply(self.client)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self._announce_mid: int | None = None
        self.client.on_message = self._on_message
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

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = msg.payload
        if len(payload) > self.limits.max_message:  # before any copy or decode
            self.count(msg.topic, Refused("too_large", f"{len(payload)} bytes > {self.limits.max_message}"))
            return
        self.inbox.put(msg.topic, bytes(payload))

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        # The broker does not send us a packet above this size (it drops it for us instead).
        props.MaximumPacketSize = self.limits.max_message + MQTT_OVERHEAD
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.inbox.close()
        self._thread.join(10)
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0  # leaving for good: take our session out of the shared group
        self.client.disconnect(properties=props)
        self.client.loop_stop()
        self.flush_rejections()

    # ------------------------------------------------------------------ refusals

    def count(self, topic: str, err: Refused) -> None:
        """Count one refused message against the device its topic names."""
        w = where(topic, self.prefix)
        site, device = (w[0], w[1]) if w else ("?", "?")
        now = time.time()
        with self._rlock:
            self.stats.rejected += 1
            self.stats.reasons[err.reason] += 1
            key = (device[:64], site[:64], err.reason)
            n, first, _, _ = self._pending.get(key, (0, now, now, ""))
            self._pending[key] = (n + 1, first, now, err.detail[:200])
        logger.warning("rejected message on %s: %s", topic[:200], err)

    def flush_rejections(self) -> None:
        with self._rlock:
            pending, self._pending = self._pending, {}
        self._flushed = time.monotonic()
        if pending:
            try:
                self.backend.reject(pending)
            except Exception:
                logger.exception("could not record %d rejection counts", len(pending))

    # ------------------------------------------------------------------ the worker

    def _loop(self) -> None:
        while not self._stop.is_set():
            msgs = self.inbox.take(MAX_DRAIN_MSGS, 0.2)
            try:
                if msgs:
                    self.handle(msgs)
                if time.monotonic() - self._flushed >= self.flush_s:
                    self.flush_rejections()
            except Exception:  # a bug of ours: keep the worker alive; un-acked batches come again
                logger.exception("hub ingest failed for %d messages", len(msgs))
                time.sleep(1)

    def handle(self, msgs: list[tuple[str, bytes]]) -> None:
        """Screen each message on its own, then store what passed (in groups of bounded size)."""
        group: list[envelope.Batch | DeviceState] = []
        records = 0
        for topic, payload in msgs:
            try:
                item = screen(topic, payload, self.prefix, self.limits)
            except Refused as err:
                self.count(topic, err)
                continue
            if item is None:
                continue
            if self.admit is not None and not self.admit(item.device, item.site):
                self.count(topic, Refused("unregistered", f"{item.site}/{item.device} is not a registered device"))
                continue
            n = len(item.seq) if isinstance(item, envelope.Batch) else 0
            if group and records + n > MAX_DRAIN_RECORDS:
                self._store(group)
                group, records = [], 0
            group.append(item)
            records += n
        if group:
            self._store(group)

    def _store(self, items: list[envelope.Batch | DeviceState]) -> None:
        if self.slow_s:
            time.sleep(self.slow_s)
        try:
            self._commit(items)
            return
        except Exception as err:
            if len(items) == 1:
                self._store_failed(items[0], err)
                time.sleep(0.5)  # perhaps the database is down: do not spin
                return
            logger.warning("a group of %d failed to commit (%s): storing each message alone", len(items), err)
        failed = 0
        for item in items:  # one at a time: only what the database refuses is left out
            try:
                self._commit([item])
            except Exception as err:
                failed += 1
                self._store_failed(item, err)
        if failed == len(items):
            time.sleep(0.5)

    def _store_failed(self, item: envelope.Batch | DeviceState, err: Exception) -> None:
        kind = f"up/{item.cls.value}" if isinstance(item, envelope.Batch) else "state"
        self.count(f"{self.prefix}/{item.site}/{item.device}/{kind}",
                   Refused("store_error", f"{type(err).__name__}: {err}"[:200]))

    def _commit(self, items: list[envelope.Batch | DeviceState]) -> None:
        batches = [i for i in items if isinstance(i, envelope.Batch)]
        states = [i for i in items if isinstance(i, DeviceState)]
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
    skips = [s[0] for s in b.skipped if s[0] not in res.deferred]
    return envelope.Ack(b.batch, b.cls, ranges, skips, res.stored, res.dup, conflict=to_ranges(res.conflict))

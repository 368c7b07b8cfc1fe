"""MQTT uplink: sends outbox rows in batches and deletes them only on the hub's application ack.

Threads: `mqtt-net` owns the socket (connect, backoff, paho's loop); `uplink-send` builds and
publishes batches. paho callbacks only enqueue; they never take our locks (paho holds its own
mutexes while calling back, and publish() takes them too).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent import __version__
from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig
from edge_agent.core.backoff import Backoff, TokenBucket
from edge_agent.records import PRIORITY, Block, DataClass, to_ranges
from edge_agent.store.outbox import Outbox
from edge_agent.sync import envelope
from edge_agent.sync.topics import Topics

logger = logging.getLogger(__name__)


class Link(str, enum.Enum):
    """Broker connection state; every change is an explicit transition."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"
    STOPPED = "stopped"


@dataclass
class Inflight:
    cls: DataClass
    payload: bytes
    skip_ids: list[int]
    ranges: list[list[int]]  # seqs of the rows it carries: an ack deletes no others
    sent_at: float
    tries: int = 1


@dataclass
class UplinkStats:
    batches_sent: int = 0
    records_sent: int = 0
    records_acked: int = 0
    resends: int = 0
    connects: int = 0
    refusals: int = 0
    puback_failures: int = 0
    bad_acks: int = 0
    stale_acks: int = 0  # acks of batches not in flight (an earlier session or run, or forged): ignored
    last_ack_at: float = 0.0


class Uplink:
    """Own one MQTT session to the hub for one device."""

    def __init__(
        self,
        outbox: Outbox,
        device: DeviceConfig,
        mqtt_cfg: MqttConfig,
        sync: SyncConfig,
        boot: int = 0,
        on_command: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox, self.device, self.cfg, self.sync = outbox, device, mqtt_cfg, sync
        self.boot = boot
        self.on_command = on_command
        self.clock = clock
        self.topics = Topics(device.site, device.id, mqtt_cfg.topic_prefix)
        self.state = Link.DISCONNECTED
        self.refusal: str | None = None
        self.stats = UplinkStats()
        self.protocol = mqtt.MQTTv5 if mqtt_cfg.protocol == "5" else mqtt.MQTTv311
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake = outbox.committed  # one event: new rows, acks and failures all wake the sender
        self._stop = threading.Event()
        self._lk = threading.Lock()  # guards _inflight and _mids
        self._inflight: dict[str, Inflight] = {}
        self._mids: dict[int, str] = {}
        self._batch_no = 0
        self._nonce = os.urandom(3).hex()  # batch ids unique across runs (the boot counter can be rolled back)
        self._hub_seen: bytes | None = None  # the hub's last online announcement
        self._live_floor: dict[DataClass, int] = {}
        self._live_cur: dict[DataClass, int] = {}
        self._back_cur: dict[DataClass, int] = {}
        self._bucket = TokenBucket(sync.backlog_rate, sync.batch_max_records, clock)
        self._backoff = Backoff(sync.backoff_min_s, sync.backoff_max_s)
        self._session = 0  # bumps on every (re)connect; the sender resets its cursors on change
        self._threads: list[threading.Thread] = []
        self.client = self._make_client()

    # ---------------------------------------------------------------- client and connection

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id or self.device.id,
                        protocol=self.protocol, reconnect_on_failure=False)
        c.max_inflight_messages_set(self.sync.window + 16)
        c.max_queued_messages_set(0)
        offline = json.dumps({"v": 1, "state": "offline", "device": self.device.id, "site": self.device.site})
        c.will_set(self.topics.state, offline, qos=1, retain=True)
        configure_auth(c, self.cfg)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _set_state(self, state: Link, why: str = "") -> None:
        if state is not self.state:
            logger.info("broker %s:%d %s -> %s%s", self.cfg.host, self.cfg.port, self.state.value,
                        state.value, f" ({why})" if why else "")
            self.state = state

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._events.put(("connack", rc))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._events.put(("disconnect", rc))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        if rc is not None and getattr(rc, "is_failure", False):
            self._events.put(("puback_fail", (mid, str(rc))))
            self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.ack:
            self._handle_ack(bytes(msg.payload))
        elif msg.topic == self.topics.hub_online:
            self._events.put(("hub_online", bytes(msg.payload)))
        elif self.on_command is not None and msg.topic.startswith(self.topics.base + "/cmd/"):
            self.on_command(msg.topic[len(self.topics.base) + 5:], bytes(msg.payload))

    def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = envelope.decode_ack(payload)
        except envelope.EnvelopeError as err:
            self.stats.bad_acks += 1
            logger.warning("rejected ack: %s", err)
            return
        self._events.put(("ack", ack))  # applied on the network thread, where the in-flight table is read
        self._wake.set()

    def _apply_ack(self, ack: envelope.Ack) -> None:
        """Delete what the hub holds, but only rows and skips this very batch carried: an ack from an
        earlier session or run (or a forged one) must not delete a newer announcement that reuses an id."""
        with self._lk:
            item = self._inflight.pop(ack.batch, None)
        if ack.error:
            logger.error("hub rejected batch %s: %s", ack.batch, ack.error)
        if ack.error == "seq_rewind" and ack.top is not None:
            # The hub holds numbers of this run already: renumber the run above them, then send it all again.
            self.outbox.rebase(ack.top).add_done_callback(
                lambda fut: self._events.put(("resync", None)) if not fut.exception() and fut.result() else None)
        if item is None:
            self.stats.stale_acks += 1
            return  # not (or no longer) in flight: whatever it named is still queued and goes out again
        if ack.conflict:  # the hub holds other records under these seqs: they go out again under new ones
            self.outbox.renumber(ack.cls, ack.conflict)
        ranges = [[max(a, c), min(b, d)] for a, b in ack.ranges for c, d in item.ranges if a <= d and c <= b]
        skips = [i for i in ack.skip_ids if i in item.skip_ids]
        session = self._session
        self.outbox.ack(item.cls, ranges, skips).add_done_callback(
            lambda fut: self._count_acked(fut) if fut.exception() is None
            else self._events.put(("undeleted", (session, ack.batch, item))))

    def _hub_online(self, payload: bytes) -> None:
        """The hub (re)subscribed: batches in flight may have been dropped by the broker while it was away
        (docs/protocol.md, Hub online). Send them again now, not after the ack timeout."""
        if payload == self._hub_seen:
            return  # the retained announcement again, at our own (re)subscribe
        first, self._hub_seen = self._hub_seen is None, payload
        with self._lk:
            for item in self._inflight.values():
                item.sent_at = -1e18
            n = len(self._inflight)
        if n and not first:
            logger.info("hub is back: re-sending %d batches in flight", n)
        self._wake.set()

    def _undeleted(self, session: int, bid: str, item: Inflight) -> None:
        """The outbox could not delete what the hub acked (disk full): keep the batch in flight, so it is
        sent again after the ack timeout and its next ack deletes."""
        with self._lk:
            if session == self._session:
                item.sent_at = self.clock()
                self._inflight.setdefault(bid, item)

    def _count_acked(self, fut: Any) -> None:
        self.stats.records_acked += fut.result()
        self.stats.last_ack_at = time.time()

    def _connect_once(self) -> bool:
        """One connect attempt; True once CONNACK says success."""
        self._set_state(Link.CONNECTING)
        try:
            if self.protocol == mqtt.MQTTv5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 0
                self.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                    clean_start=True, properties=props)
            else:
                self.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as err:
            self._set_state(Link.DISCONNECTED, f"connect failed: {err}")
            return False
        deadline = self.clock() + 10
        while self.clock() < deadline and not self._stop.is_set():
            self.client.loop(timeout=0.1)
            try:
                kind, rc = self._events.get_nowait()
            except queue.Empty:
                continue
            if kind == "connack":
                if rc.is_failure:
                    self.stats.refusals += 1
                    self.refusal = str(rc)
                    if self.protocol == mqtt.MQTTv5 and rc.value in (0x84, 0x01):
                        logger.warning("broker refused MQTT v5 (%s): falling back to 3.1.1", rc)
                        self.protocol = mqtt.MQTTv311
                        self._rebuild_client()
                    self._set_state(Link.REFUSED, str(rc))
                    return False
                self.refusal = None
                return True
            if kind == "disconnect":
                self._set_state(Link.DISCONNECTED, f"during connect: {rc}")
                return False
        self._set_state(Link.DISCONNECTED, "no CONNACK")
        return False

    def _rebuild_client(self) -> None:
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001  # nosec B110: the old socket may already be gone
            pass
        self.client = self._make_client()

    def _net_loop(self) -> None:
        while not self._stop.is_set():
            if not self._connect_once():
                try:
                    self.client.disconnect()
                except Exception:  # noqa: BLE001  # nosec B110: a failed connect leaves nothing to close
                    pass
                if self.state is Link.REFUSED:
                    self._rebuild_client()
                self._stop.wait(self._backoff.next())
                continue
            self._on_session_start()
            while not self._stop.is_set():
                rc = self.client.loop(timeout=0.05)
                drained = self._drain_events()
                if rc != mqtt.MQTT_ERR_SUCCESS or drained == "disconnect":
                    break
            if self._stop.is_set():
                break
            self._set_state(Link.DISCONNECTED, "connection lost")
            self._stop.wait(self._backoff.next())
            self._rebuild_client()
        self._goodbye()

    def _drain_events(self) -> str:
        result = ""
        while True:
            try:
                kind, arg = self._events.get_nowait()
            except queue.Empty:
                return result
            if kind == "disconnect":
                result = "disconnect"
            elif kind == "ack":
                self._apply_ack(arg)
            elif kind == "resync":
                self.resync()
            elif kind == "undeleted":
                self._undeleted(*arg)
            elif kind == "hub_online":
                self._hub_online(arg)
            elif kind == "puback_fail":
                mid, reason = arg
                self.stats.puback_failures += 1
                logger.warning("broker refused batch (mid %d): %s", mid, reason)
                self._expire_mid(mid)

    def _on_session_start(self) -> None:
        self.stats.connects += 1
        self._backoff.reset()
        birth = {"v": 1, "state": "online", "device": self.device.id, "site": self.device.site,
                 "role": self.device.role, "boot": self.boot, "epoch": self.outbox.epoch,
                 "agent": __version__, "meta": self.device.metadata, "ts": time.time()}
        self.client.publish(self.topics.state, json.dumps(birth), qos=1, retain=True)
        self.client.subscribe([(self.topics.ack, 1), (self.topics.cmd, 1), (self.topics.hub_online, 1)])
        with self._lk:
            self._inflight.clear()
            self._mids.clear()
            self._session += 1
        self._set_state(Link.CONNECTED)
        self._wake.set()

    def _goodbye(self) -> None:
        if self.state is Link.CONNECTED:
            offline = json.dumps({"v": 1, "state": "offline", "device": self.device.id,
                                  "site": self.device.site, "clean": True})
            info = self.client.publish(self.topics.state, offline, qos=1, retain=True)
            deadline = self.clock() + 2
            while not info.is_published() and self.clock() < deadline:
                self.client.loop(timeout=0.05)
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        self._set_state(Link.STOPPED)

    # ---------------------------------------------------------------- sending

    def _expire_mid(self, mid: int) -> None:
        with self._lk:
            bid = self._mids.pop(mid, None)
            if bid and bid in self._inflight:
                self._inflight[bid].sent_at = -1e18  # re-send at the next pass

    def _reset_cursors(self) -> None:
        nxt = self.outbox.next_seq()
        for cls in DataClass:
            self._live_floor[cls] = nxt
            self._live_cur[cls] = nxt - 1
            self._back_cur[cls] = 0

    def _next_rows(self) -> tuple[DataClass, Block] | None:
        """Live rows (produced since this connection) first, then backlog within the pacing budget."""
        limit, max_bytes = self.sync.batch_max_records, self.sync.batch_max_kb * 1024
        for cls in PRIORITY:
            rows = self.outbox.fetch(cls, self._live_cur[cls], limit=limit, max_bytes=max_bytes)
            if rows:
                self._live_cur[cls] = rows.seq[-1]
                return cls, rows
        budget = self._bucket.available()
        if budget <= 0:
            return None
        for cls in PRIORITY:
            if self._back_cur[cls] >= self._live_floor[cls]:
                continue
            rows = self.outbox.fetch(cls, self._back_cur[cls], before=self._live_floor[cls],
                                     limit=min(limit, budget), max_bytes=max_bytes)
            if rows:
                self._back_cur[cls] = rows.seq[-1]
                self._bucket.take(len(rows))
                return cls, rows
            self._back_cur[cls] = self._live_floor[cls]
        return None

    def _publish(self, bid: str, item: Inflight) -> None:
        props = None
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = envelope.CONTENT_TYPE
            props.UserProperty = [("enc", self.sync.compression)]
        info = self.client.publish(self.topics.up(item.cls.value), item.payload, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            item.sent_at = -1e18 if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE else self.clock()
            return
        self._mids[info.mid] = bid

    def _send_pass(self) -> int:
        """Re-send timed-out batches, then fill the window; return batches published.

        The lock is held only around the in-flight table: fetching and encoding run without it so the
        network thread can process acks meanwhile.
        """
        now = self.clock()
        sent = 0
        with self._lk:
            for bid, item in list(self._inflight.items()):
                # Exponential per batch, capped so a hub back from a long outage is served soon.
                timeout = self.sync.ack_timeout_s * min(2 ** (item.tries - 1), 4)
                if now - item.sent_at >= timeout:
                    item.tries += 1
                    item.sent_at = now
                    self.stats.resends += 1
                    self._publish(bid, item)
                    sent += 1
            room = self.sync.window - len(self._inflight)
            in_flight_skips = {i for it in self._inflight.values() for i in it.skip_ids}
        while room > 0:
            picked = self._next_rows()
            skips = self.outbox.pending_skips(exclude=in_flight_skips)
            if picked is None:
                if not skips:
                    break
                # Drops with no row left to carry them: announce them alone, or the hub sees false gaps.
                picked = (DataClass.STATE, Block([], [], [], []))
            cls, rows = picked
            in_flight_skips.update(s[0] for s in skips)
            self._batch_no += 1
            bid = f"{self.boot:x}.{self._nonce}-{self._session:x}-{self._batch_no:x}"
            payload = envelope.encode_batch(self.device.id, self.device.site, cls, bid, self.outbox.epoch,
                                            self.boot, rows, skips, self.sync.compression)
            item = Inflight(cls, payload, [s[0] for s in skips], to_ranges(rows.seq), now)
            with self._lk:
                self._inflight[bid] = item
                self._publish(bid, item)
            self.stats.batches_sent += 1
            self.stats.records_sent += len(rows)
            room -= 1
            sent += 1
        return sent

    def _send_loop(self) -> None:
        session = -1
        while not self._stop.is_set():
            if self.state is not Link.CONNECTED:
                self._stop.wait(0.05)
                continue
            if session != self._session:
                session = self._session
                self._reset_cursors()
            self._wake.clear()
            try:
                sent = self._send_pass()
            except Exception:  # a bad row or a closed outbox must not kill the uplink
                logger.exception("uplink send pass failed")
                self._stop.wait(1)
                continue
            if not sent:
                self._wake.wait(0.05)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._net_loop, name="mqtt-net", daemon=True),
                         threading.Thread(target=self._send_loop, name="uplink-send", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)

    def resync(self) -> None:
        """Forget what is in flight and send everything still in the outbox again (hub dedups)."""
        with self._lk:
            self._inflight.clear()
            self._mids.clear()
            self._session += 1
        self._wake.set()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def inflight(self) -> int:
        return len(self._inflight)

    def publish_result(self, payload: dict[str, Any]) -> None:
        """Publish a command result (downlink replies)."""
        self.client.publish(self.topics.result, json.dumps(payload), qos=1)



def configure_auth(client: mqtt.Client, cfg: MqttConfig) -> None:
    """Credentials (password from the environment, never the file) and TLS from the config."""
    if cfg.username:
        password = os.environ.get(cfg.password_env) if cfg.password_env else None
        client.username_pw_set(cfg.username, password)
    if cfg.secure or cfg.tls:
        tls = cfg.tls
        client.tls_set(ca_certs=str(tls.ca) if tls and tls.ca else None,
                       certfile=str(tls.cert) if tls and tls.cert else None,
                       keyfile=str(tls.key) if tls and tls.key else None,
                       cert_reqs=ssl.CERT_REQUIRED)

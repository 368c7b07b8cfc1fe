"""MQTT uplink: sends outbox rows in batches and deletes them only on the hub's application ack.

Three parts: the connection is an MqttSession (sync/session.py), what is in flight and what an ack may
delete is the pure Window (sync/window.py), and this class wires them to the outbox.

Threads: the session's `mqtt-net` owns the socket and runs ack, hub-online and PUBACK-failure handling
(outside paho's callbacks); `uplink-send` builds and publishes batches. One lock guards the window.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from edge_agent import __version__
from edge_agent.config.models import DeviceConfig, MqttConfig, SyncConfig
from edge_agent.core.backoff import Backoff, TokenBucket
from edge_agent.records import PRIORITY, Block, DataClass, to_ranges
from edge_agent.store.outbox import Outbox
from edge_agent.sync import envelope
from edge_agent.sync.session import Message, MqttSession, SessionState
from edge_agent.sync.topics import Topics
from edge_agent.sync.window import AckPlan, Cursors, Flight, Window

logger = logging.getLogger(__name__)

@dataclass
class UplinkStats:
    batches_sent: int = 0
    records_sent: int = 0
    records_acked: int = 0
    resends: int = 0
    connects: int = 0
    refusals: int = 0
    puback_failures: int = 0
    bad_acks: int = 0  # acks that do not decode
    stale_acks: int = 0  # acks of batches not in flight, or of another class (an earlier run, or forged): ignored
    clipped_acks: int = 0  # acks that named seqs or skips outside their batch: only the batch's were deleted
    last_ack_at: float = 0.0


class Uplink:
    """Send one device's outbox to the hub over one MQTT session."""

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
        self.boot, self.on_command, self.clock = boot, on_command, clock
        self.topics = Topics(device.site, device.id, mqtt_cfg.topic_prefix)
        self.window = Window(sync.window, sync.ack_timeout_s, boot, os.urandom(3).hex())
        self.cursors = Cursors()
        self._lk = threading.Lock()  # guards the window
        self._wake = outbox.committed  # one event: new rows, acks and failures all wake the sender
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._hub_seen: bytes | None = None  # the hub's last online announcement
        self._bucket = TokenBucket(sync.backlog_rate, sync.batch_max_records, clock)
        self._n = UplinkStats()  # the counters this class owns (the rest come from session and window)
        offline = {"v": 1, "state": "offline", "device": device.id, "site": device.site}
        self.session = MqttSession(
            mqtt_cfg, mqtt_cfg.client_id or device.id,
            subscriptions=[(self.topics.ack, 1), (self.topics.cmd, 1), (self.topics.hub_online, 1)],
            on_message=self._on_message, on_online=self._on_online, on_publish_failed=self._on_refused,
            will=Message(self.topics.state, json.dumps(offline), retain=True), birth=self._birth,
            goodbye=lambda: Message(self.topics.state, json.dumps({**offline, "clean": True}), retain=True),
            backoff=Backoff(sync.backoff_min_s, sync.backoff_max_s), max_inflight=sync.window + 16)

    # ---------------------------------------------------------------- views

    @property
    def state(self) -> SessionState:
        return self.session.state

    @property
    def refusal(self) -> str | None:
        return self.session.refusal

    @property
    def stats(self) -> UplinkStats:
        w, n = self.window.stats, self._n
        return UplinkStats(n.batches_sent, n.records_sent, n.records_acked, w.resends, self.session.connects,
                           self.session.refusals, n.puback_failures, n.bad_acks, w.stale_acks + w.foreign_acks,
                           w.clipped_acks, n.last_ack_at)

    def inflight(self) -> int:
        return len(self.window)

    # ---------------------------------------------------------------- network thread (session handlers)

    def _birth(self) -> Message:
        birth = {"v": 1, "state": "online", "device": self.device.id, "site": self.device.site,
                 "role": self.device.role, "boot": self.boot, "epoch": self.outbox.epoch,
                 "agent": __version__, "meta": self.device.metadata, "ts": time.time()}
        return Message(self.topics.state, json.dumps(birth), retain=True)

    def _on_online(self) -> None:
        with self._lk:
            self.window.new_generation()
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes, props: Any) -> None:
        if topic == self.topics.ack:
            self._on_ack(payload)
        elif topic == self.topics.hub_online:
            self._hub_online(payload)
        elif self.on_command is not None and topic.startswith(self.topics.base + "/cmd/"):
            self.on_command(topic[len(self.topics.base) + 5:], payload)

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = envelope.decode_ack(payload)
        except envelope.EnvelopeError as err:
            self._n.bad_acks += 1
            logger.warning("rejected ack: %s", err)
            return
        with self._lk:
            plan = self.window.ack(ack)
        if ack.error:
            logger.error("hub rejected batch %s: %s", ack.batch, ack.error)
        if plan is not None:
            self._apply(plan)
        self._wake.set()

    def _apply(self, plan: AckPlan) -> None:
        """Let the outbox do what the ack allows (deletes, renumbering, a rebase); all inside the batch."""
        if plan.rebase_top is not None:
            # The hub holds numbers of this run already: renumber the run above them, then send it all again.
            self.outbox.rebase(plan.rebase_top).add_done_callback(
                lambda fut: self.session.post(self.resync) if not fut.exception() and fut.result() else None)
        if plan.renumber:  # the hub holds other records under these seqs: they go out again under new ones
            self.outbox.renumber(plan.flight.cls, plan.renumber)
        self.outbox.ack(plan.flight.cls, plan.delete, plan.skips).add_done_callback(
            lambda fut: self._count_acked(fut) if fut.exception() is None
            else self.session.post(lambda: self._undeleted(plan)))

    def _undeleted(self, plan: AckPlan) -> None:
        """The outbox could not delete what the hub acked (disk full): keep the batch in flight, so it is
        sent again after the ack timeout and its next ack deletes."""
        with self._lk:
            self.window.restore(plan, self.clock())

    def _count_acked(self, fut: Future[int]) -> None:
        self._n.records_acked += fut.result()
        self._n.last_ack_at = time.time()

    def _hub_online(self, payload: bytes) -> None:
        """The hub (re)subscribed: batches in flight may have been dropped by the broker while it was away
        (docs/protocol.md, Hub online). Send them again now, not after the ack timeout."""
        if payload == self._hub_seen:
            return  # the retained announcement again, at our own (re)subscribe
        first, self._hub_seen = self._hub_seen is None, payload
        with self._lk:
            n = self.window.hub_back(self.clock())
        if n and not first:
            logger.info("hub is back: re-sending %d batches in flight", n)
        self._wake.set()

    def _on_refused(self, mid: int, reason: str) -> None:
        self._n.puback_failures += 1
        logger.warning("broker refused batch (mid %d): %s", mid, reason)
        with self._lk:
            self.window.refused(mid)
        self._wake.set()

    # ---------------------------------------------------------------- sender thread

    def _next_rows(self) -> tuple[DataClass, Block] | None:
        """Live rows (produced since this connection) first, then backlog within the pacing budget."""
        cur, limit, max_bytes = self.cursors, self.sync.batch_max_records, self.sync.batch_max_kb * 1024
        for cls in PRIORITY:
            rows = self.outbox.fetch(cls, cur.live_after[cls], limit=limit, max_bytes=max_bytes)
            if rows:
                cur.live_after[cls] = rows.seq[-1]
                return cls, rows
        budget = self._bucket.available()
        if budget <= 0:
            return None
        for cls in PRIORITY:
            if not cur.backlog_left(cls):
                continue
            rows = self.outbox.fetch(cls, cur.backlog_after[cls], before=cur.live_floor[cls],
                                     limit=min(limit, budget), max_bytes=max_bytes)
            if rows:
                cur.backlog_after[cls] = rows.seq[-1]
                self._bucket.take(len(rows))
                return cls, rows
            cur.backlog_done(cls)
        return None

    def _publish(self, bid: str, f: Flight) -> bool:
        """Hand one batch to the session (caller holds the lock); False when paho did not take it."""
        mid = self.session.publish(self.topics.up(f.cls.value), f.payload, qos=1, content_type=envelope.CONTENT_TYPE,
                                   user=[("enc", self.sync.compression)])
        if mid is None:
            self.window.not_sent(bid)
            return False
        self.window.sent(bid, mid)
        return True

    def _send_pass(self) -> int:
        """Re-send timed-out batches, then fill the window; return batches published.

        The lock is held only around the window: fetching and encoding run without it so the network
        thread can process acks meanwhile.
        """
        now = self.clock()
        sent = 0
        with self._lk:
            for bid, f in self.window.due(now):
                sent += self._publish(bid, f)
            room = self.window.room()
            busy_skips = self.window.skips_in_flight()
            generation = self.window.generation
        while room > 0:
            picked = self._next_rows()
            skips = self.outbox.pending_skips(exclude=busy_skips)
            if picked is None:
                if not skips:
                    break
                # Drops with no row left to carry them: announce them alone, or the hub sees false gaps.
                picked = (DataClass.STATE, Block([], [], [], []))
            cls, rows = picked
            busy_skips.update(s[0] for s in skips)
            with self._lk:
                if generation != self.window.generation:
                    break  # reconnected meanwhile: the cursors start over
                bid = self.window.next_id()
            payload = envelope.encode_batch(self.device.id, self.device.site, cls, bid, self.outbox.epoch,
                                            self.boot, rows, skips, self.sync.compression)
            f = Flight(cls, payload, [s[0] for s in skips], to_ranges(rows.seq), now)
            with self._lk:
                if generation != self.window.generation:
                    break
                self.window.add(bid, f)
                sent += self._publish(bid, f)
            self._n.batches_sent += 1
            self._n.records_sent += len(rows)
            room -= 1
        return sent

    def _send_loop(self) -> None:
        generation = -1
        while not self._stop.is_set():
            if not self.session.online:
                self._stop.wait(0.05)
                continue
            if generation != self.window.generation:
                generation = self.window.generation
                self.cursors.reset(self.outbox.next_seq())
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
        self.session.start()
        self._sender = threading.Thread(target=self._send_loop, name="uplink-send", daemon=True)
        self._sender.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout)
        self.session.stop(timeout)

    def resync(self) -> None:
        """Forget what is in flight and send everything still in the outbox again (hub dedups)."""
        with self._lk:
            self.window.new_generation()
        self._wake.set()

    def alive(self) -> bool:
        return self.session.alive() and self._sender is not None and self._sender.is_alive()

    def publish_result(self, payload: dict[str, Any]) -> None:
        """Publish a command result (downlink replies)."""
        self.session.publish(self.topics.result, json.dumps(payload), qos=1)

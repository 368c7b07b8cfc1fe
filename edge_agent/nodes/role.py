"""Sensor nodes on the gateway's local broker (the MicroPython firmware in firmware/).

A node keeps every reading in a flash ring until this producer confirms it. Each batch arrives on
`<prefix>/<node>/data` as {"ring": id, "recs": [[seq, ts|null, kind, {values}], ...]}; the records go
into the outbox in one transaction that also checks and moves the node's watermark (Record.origin), so
a batch re-sent after a lost ack, an agent crash or a broker restart is stored once. Only then is
`<prefix>/<node>/ack` {"ring", "upto", "now"} published; "now" also sets the node's clock.

Node status (retained, with a last will) becomes the state record `node.status`; `node.config`
(downlink command) forwards a config change to a node and returns its answer.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.ports import CommandError, Context, Handler, Sink
from edge_agent.nodes.config import NodesConfig
from edge_agent.records import DataClass
from edge_agent.store.outbox import OutboxClosed, OutboxFull

logger = logging.getLogger(__name__)

MAX_RECS = 200
MAX_BATCH_BYTES = 64 * 1024  # the firmware sends at most ~1.5 KB; anything far bigger is not a node
MAX_VALUES = 32
EARLIEST = 1_600_000_000  # a node timestamp before 2020 is an unset clock


class BadBatch(ValueError):
    pass


def parse_batch(payload: bytes | bytearray) -> tuple[str, list[tuple[int, float | None, str, dict[str, Any]]], int]:
    """-> (ring id, good records in seq order, rejected count). BadBatch when nothing can be trusted."""
    if len(payload) > MAX_BATCH_BYTES:
        raise BadBatch(f"batch of {len(payload)} bytes (max {MAX_BATCH_BYTES})")
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadBatch(f"not JSON: {err}") from err
    if not isinstance(msg, dict):
        raise BadBatch("batch is not an object")
    ring, recs = msg.get("ring"), msg.get("recs")
    if not isinstance(ring, str) or not 1 <= len(ring) <= 64 or not isinstance(recs, list):
        raise BadBatch("batch needs ring (string) and recs (list)")
    if len(recs) > MAX_RECS:
        raise BadBatch(f"{len(recs)} records in one batch (max {MAX_RECS})")
    good, rejected, last = [], 0, 0
    for r in recs:
        if not (isinstance(r, list) and len(r) == 4 and type(r[0]) is int and r[0] > last
                and isinstance(r[2], str) and 1 <= len(r[2]) <= 32 and r[2].isidentifier()
                and isinstance(r[3], dict) and len(r[3]) <= MAX_VALUES):
            rejected += 1
            continue
        ts = r[1]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < EARLIEST:
            ts = None
        good.append((r[0], None if ts is None else float(ts), r[2], r[3]))
        last = r[0]
    return ring, good, rejected


class NodesProducer:
    def __init__(self, cfg: NodesConfig, ctx: Context) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        self.client: mqtt.Client | None = None
        self._waiting: dict[str, Future[dict[str, Any]]] = {}

    def commands(self) -> dict[str, Handler]:
        return {"node.config": self._cmd_config}

    def _topic(self, node: str, leaf: str) -> str:
        return f"{self.cfg.prefix}/{node}/{leaf}"

    @staticmethod
    def _source(node: str) -> str:
        """The outbox origin a node's own numbering is tracked under."""
        return f"node:{node}"

    # ------------------------------------------------------------------ run

    def run(self, stop: threading.Event) -> None:
        c, sink = self.cfg, self.ctx.sink
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-agent-{c.name}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        if c.username:
            client.username_pw_set(c.username, c.password())
        client.reconnect_delay_set(1, 30)
        client.on_connect = lambda cl, u, f, rc, p=None: self._on_connect(cl, rc)
        client.on_message = lambda cl, u, m: self._on_message(sink, cl, m)
        self.client = client
        client.connect_async(c.host, c.port, keepalive=30)
        client.loop_start()
        try:
            stop.wait()
        finally:
            client.disconnect()
            client.loop_stop()
            self.client = None

    def _on_connect(self, client: mqtt.Client, rc: Any) -> None:
        if rc.is_failure:
            logger.warning("nodes: local broker refused: %s", rc)
            return
        p = self.cfg.prefix
        client.subscribe([(f"{p}/+/data", 1), (f"{p}/+/status", 1), (f"{p}/+/config/result", 1)])
        logger.info("nodes: listening on %s:%d/%s", self.cfg.host, self.cfg.port, p)

    def _on_message(self, sink: Sink, client: mqtt.Client, m: mqtt.MQTTMessage) -> None:
        parts = m.topic.split("/")
        if len(parts) < 3:
            return
        node, leaf = parts[1], "/".join(parts[2:])
        try:
            if leaf == "data":
                self._data(sink, client, node, m.payload)
            elif leaf == "status":
                self._status(sink, client, node, m.payload)
            elif leaf == "config/result":
                self._config_result(m.payload)
        except (OutboxFull, OutboxClosed) as err:  # not acked: the node keeps it and sends it again
            logger.warning("nodes: %s from %s not stored: %s", leaf, node, err)

    def _data(self, sink: Sink, client: mqtt.Client, node: str, payload: bytes | bytearray) -> None:
        try:
            ring, recs, rejected = parse_batch(payload)
        except BadBatch as err:
            logger.warning("nodes: rejected a batch from %s: %s", node, err)
            return
        if rejected:
            logger.warning("nodes: %d malformed records from %s skipped", rejected, node)
        classes = self.cfg.classes
        records = [sink.make_record(classes.get(kind, "measurement"), f"node.{kind}",
                                    {**values, "node": node, "seq": seq}, ts=ts, origin=(self._source(node), ring, seq))
                   for seq, ts, kind, values in recs]
        if records:
            stored = sink.put_many(records)
            for (_, ts, kind, values), res in zip(recs, stored, strict=True):
                if res.ok:  # e.g. a toilet role using this node's stalls and air (not re-sent duplicates)
                    self.ctx.bus.publish(f"node/{node}/{kind}", {**values, "ts": ts or self.ctx.clock.time()})
        upto = recs[-1][0] if recs else 0  # parse_batch keeps records in rising seq order
        if upto or rejected:
            self._ack(client, node, ring, upto)

    def _ack(self, client: mqtt.Client, node: str, ring: str, upto: int) -> None:
        body = {"ring": ring, "upto": upto, "now": round(self.ctx.clock.time(), 3)}
        client.publish(self._topic(node, "ack"), json.dumps(body), qos=1)

    def _status(self, sink: Sink, client: mqtt.Client, node: str, payload: bytes | bytearray) -> None:
        try:
            st = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(st, dict):
            return
        body = {"node": node, **{k: st.get(k) for k in ("online", "version", "up_s", "pending", "dropped", "rssi")}}
        sink.put(DataClass.STATE, "node.status", body, key=f"node:{node}")
        ring = st.get("ring")
        if st.get("online") and isinstance(ring, str):
            # a node that comes online learns the time and what is already stored (its ack file may be older)
            held = sink.origin_last(self._source(node))
            self._ack(client, node, ring, held[1] if held and held[0] == ring else 0)

    def _config_result(self, payload: bytes | bytearray) -> None:
        try:
            res = json.loads(payload)
            fut = self._waiting.pop(str(res.get("id")), None)
        except (ValueError, UnicodeDecodeError, AttributeError):
            return
        if fut is not None:
            fut.set_result(res)

    def _cmd_config(self, args: dict[str, Any]) -> dict[str, Any]:
        node, change = args.get("node"), args.get("set")
        if not isinstance(node, str) or not node or "/" in node or not isinstance(change, dict):
            raise CommandError("node.config needs node (id) and set (object)")
        client = self.client
        if client is None or not client.is_connected():
            raise CommandError("not connected to the local broker")
        rid = uuid.uuid4().hex[:12]
        fut: Future[dict[str, Any]] = Future()
        self._waiting[rid] = fut
        client.publish(self._topic(node, "config/set"), json.dumps({"id": rid, "set": change}), qos=1)
        try:
            res = fut.result(self.cfg.config_timeout_s)
        except FutureTimeout:
            raise CommandError(f"node {node} did not answer within {self.cfg.config_timeout_s:g} s") from None
        finally:
            self._waiting.pop(rid, None)
        if not res.get("ok"):
            raise CommandError(f"node {node} refused: {'; '.join(map(str, res.get('errors') or []))}")
        return {"node": node, "restart": bool(res.get("restart")), "config": res.get("config")}

"""The node: sample doors and air, keep every reading in the flash ring, send it to the gateway's
broker when connected, forget it only when the gateway's agent confirms it.

Topics under <prefix>/<node_id>/:
  data        node -> agent  {"ring": id, "recs": [[seq, ts|null, kind, {values}], ...]}   QoS 1
  ack         agent -> node  {"ring": id, "upto": seq, "now": epoch}                       QoS 1
  status      node -> all    {"online", "version", "up_s", "pending", "dropped", ...}     retained; will: offline
  config/set  agent -> node  {"id": request id, "set": {key: value}}
  config/result node -> agent {"id", "ok", "errors", "restart"}
Readings taken before the gateway has told the node the time are stored with this boot's id and the
tick count; once the time is known they are dated on the way out. Readings from an earlier boot that never
learnt the time go with ts null (the agent stamps their arrival).
"""

import json
import os
import time

from svnode import VERSION, config
from svnode.hw import ESP32, Board
from svnode.mqtt import Client, MQTTError
from svnode.ring import Ring

RESEND_MS = 10000  # a batch not confirmed in this time is sent again (the agent drops duplicates)
STATUS_MS = 60000


class Node:
    def __init__(self, cfg_path="config.json", data_dir="."):
        self.cfg_path = cfg_path
        self.cfg = config.load(cfg_path)
        self.board = Board(self.cfg)
        self.ring = Ring(data_dir + "/ring", self.cfg["ring_slots"])
        self.client = None
        self.offset = None  # gateway epoch - local time.time()
        self.boot = "".join("%02x" % b for b in os.urandom(3))  # dates this boot's undated readings
        now = time.ticks_ms()
        self.started = now
        self.doors = None
        self.next_air = now
        self.next_status = now
        self.inflight = None  # (last seq sent, ticks when sent)
        self.connected_at = now
        self.backoff = 1000
        self.retry_at = now
        self.restart = False
        self.base = "%s/%s/" % (self.cfg["prefix"], self.cfg["node_id"])

    # ------------------------------------------------------------ readings

    def _now(self):
        return None if self.offset is None else round(time.time() + self.offset, 3)

    def record(self, kind, values):
        ts = self._now()
        rec = [ts, kind, values] if ts is not None else [None, kind, values, self.boot, time.ticks_ms()]
        try:
            self.ring.append(json.dumps(rec))
        except ValueError as err:  # a reading too big for a slot: lost, loudly, and the node goes on
            print("reading not stored:", err)

    def sample(self):
        occ = self.board.occupied()
        if occ != self.doors:
            for i, v in enumerate(occ):
                if self.doors is None or i >= len(self.doors) or self.doors[i] != v:
                    self.record("stall", {"stall": i + 1, "occupied": v})
            self.doors = occ
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next_air) >= 0:
            self.next_air = time.ticks_add(now, self.cfg["interval_s"] * 1000)
            air = self.board.air()
            if air:
                self.record("air", {k: round(v, 3) for k, v in air.items()})

    # ------------------------------------------------------------ link

    def connect(self):
        if not self.board.network_up():
            raise MQTTError("network not up")
        c = self.cfg
        client = Client(c["node_id"], c["broker"], c["port"], c["keepalive_s"],
                        user=c["node_id"] if c["mqtt_pass"] else None, password=c["mqtt_pass"] or None,
                        timeout_ms=min(5000, c["wdt_ms"] // 3),  # never block past the watchdog
                        ssl_ctx=self._tls() if c["tls"] else None)
        client.set_will(self.base + "status", json.dumps({"online": False, "version": VERSION}), retain=True)
        client.on_message = self.on_message
        try:
            client.connect(clean=True)
            client.subscribe(self.base + "ack", 1)
            client.subscribe(self.base + "config/set", 1)
        except (MQTTError, OSError):
            client.close()
            raise
        self.client = client
        self.inflight = None
        self.connected_at = time.ticks_ms()
        self.status()

    def _tls(self):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        with open(self.cfg["ca"], "rb") as f:
            ctx.load_verify_locations(cadata=f.read())
        return ctx

    def _publish(self, leaf, payload, retain=False):
        if self.client is None:
            raise MQTTError("not connected")
        return self.client.publish(self.base + leaf, payload, qos=1, retain=retain)

    def status(self):
        s = {"online": True, "version": VERSION, "up_s": time.ticks_diff(time.ticks_ms(), self.started) // 1000,
             "pending": self.ring.depth(), "dropped": self.ring.dropped, "ring": self.ring.id,
             "rssi": self.board.rssi(), "config": config.public(self.cfg)}
        self._publish("status", json.dumps(s), retain=True)
        self.next_status = time.ticks_add(time.ticks_ms(), STATUS_MS)

    def flush(self):
        now = time.ticks_ms()
        if self.inflight is not None and time.ticks_diff(now, self.inflight[1]) < RESEND_MS:
            return
        if self.offset is None and time.ticks_diff(now, self.connected_at) < 2000:
            return  # the agent answers our status with the time: date what we hold before sending it
        recs = self.ring.pending(20)
        if not recs:
            self.inflight = None
            return
        items = ",".join(self._item(seq, body) for seq, body in recs)
        self._publish("data", '{"ring":"%s","recs":[%s]}' % (self.ring.id, items))
        self.inflight = (recs[-1][0], now)

    def _item(self, seq, body):
        """[seq, ts, kind, values] as JSON. A dated payload is [ts, kind, values]: its seq is prefixed
        without parsing. An undated one is dated from its ticks if it is from this boot and the time is known."""
        text = body.decode()
        if not text.startswith("[null"):
            return "[%d,%s" % (seq, text[1:])
        rec = json.loads(text)
        ts = None
        if len(rec) == 5 and rec[3] == self.boot and self.offset is not None:
            ts = round(time.time() + self.offset - time.ticks_diff(time.ticks_ms(), rec[4]) / 1000, 3)
        return json.dumps([seq, ts, rec[1], rec[2]])

    def on_message(self, topic, payload, retained):
        leaf = topic[len(self.base):]
        try:
            msg = json.loads(payload)
        except ValueError:
            print("ignored non-JSON message on", topic)
            return
        if not isinstance(msg, dict):
            return
        if leaf == "ack":
            if isinstance(msg.get("now"), (int, float)):
                self.offset = msg["now"] - time.time()
            upto = msg.get("upto")
            if msg.get("ring") == self.ring.id and isinstance(upto, int):
                self.ring.ack(upto)
                if self.inflight is not None and upto >= self.inflight[0]:
                    self.inflight = None  # send the next batch at once
        elif leaf == "config/set":
            clean, errors = config.validate(msg.get("set"), True)
            restart = any(k in config.RESTART and clean[k] != self.cfg[k] for k in clean)
            if clean:
                self.cfg.update(clean)
                config.save(self.cfg_path, self.cfg)
                if "interval_s" in clean:
                    self.next_air = time.ticks_ms()  # read now, then at the new period
            self._publish("config/result", json.dumps(
                {"id": msg.get("id"), "ok": not errors, "errors": errors, "restart": restart,
                 "config": config.public(self.cfg)}))
            self.restart = restart

    def _drop_link(self, err):
        print("link down:", err)
        if self.client is not None:
            self.client.close()
        self.client = None
        self.retry_at = time.ticks_add(time.ticks_ms(), self.backoff)
        self.backoff = min(self.backoff * 2, 30000)

    # ------------------------------------------------------------ loop

    def step(self):
        self.board.feed()
        self.sample()
        now = time.ticks_ms()
        if self.client is None:
            if time.ticks_diff(now, self.retry_at) < 0:
                time.sleep_ms(50)
                return
            try:
                self.connect()
                self.backoff = 1000
            except (MQTTError, OSError) as err:
                self._drop_link(err)
            return
        try:
            self.flush()
            self.client.poll(100)
            if time.ticks_diff(now, self.next_status) >= 0:
                self.status()
        except (MQTTError, OSError) as err:
            self._drop_link(err)

    def run(self):
        """Until a config change needs a restart."""
        self.board.watchdog(self.cfg["wdt_ms"])
        while not self.restart:
            self.step()
        if self.client is not None:
            self.client.disconnect()
        self.ring.close()


def main():
    cfg_path, data_dir = "config.json", "."
    if not ESP32:
        import os

        cfg_path = os.getenv("SVNODE_CONFIG") or cfg_path
        data_dir = os.getenv("SVNODE_DATA") or data_dir
    print("svnode", VERSION)
    while True:
        try:
            Node(cfg_path, data_dir).run()
            print("restarting with the new config")
        except Exception as err:  # anything unexpected: log it and start clean (readings are in flash)
            print("node failed:", repr(err))
            time.sleep(1)
        if ESP32:
            import machine

            machine.reset()

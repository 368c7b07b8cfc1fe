"""The ticket-gate role as an agent producer: lanes of scanner / ID reader / camera QR → shared offline
rules → turnstile, an occupancy display, capacity alerts; every decision a `transaction` record.

Records (all transactions unless noted): gate.decision (every scan, with the reason), gate.pass (a pass
the turnstile confirmed), gate.exit, gate.not_passed (opened, nobody came), gate.fault, gate.alarm,
gate.capacity_alert, and the state `gate.occupancy`. ID numbers never appear in records or logs
(masked); the allow-list holds only keyed hashes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.core.ports import CommandError, Context, Handler
from edge_agent.drivers import DeviceTimeout, FrameError
from edge_agent.drivers.display import Board, occupancy_rows
from edge_agent.drivers.gpio import open_line
from edge_agent.drivers.idreader import Reader
from edge_agent.drivers.serialio import open_port, read_lines
from edge_agent.gate.allowlist import AllowList, Entry
from edge_agent.gate.config import GateRoleConfig, public_key_bytes
from edge_agent.gate.controller import GateController
from edge_agent.gate.idnumber import mask
from edge_agent.gate.passback import UsedTickets
from edge_agent.gate.tickets import Capacity, Validator
from edge_agent.records import DataClass

logger = logging.getLogger(__name__)


def load_public_key(text: str) -> Ed25519PublicKey:
    """Raw 32-byte key, base64 (standard or url-safe) or hex; ValueError otherwise."""
    return Ed25519PublicKey.from_public_bytes(public_key_bytes(text))


class Repeat:
    """A code or card held at a reader is read again and again: True only for a value that is new or
    was last seen more than `hold_s` ago."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.last: tuple[str, float] = ("", 0.0)

    def fresh(self, value: str) -> bool:
        now = time.monotonic()
        if value == self.last[0] and now - self.last[1] < self.hold_s:
            return False
        self.last = (value, now)
        return True


def qr_decoder() -> Callable[[Any], str]:
    """frame (BGR or grey ndarray) -> the first QR code's text, or "".

    zxing-cpp when installed (the `gate` extra): on 150 signed tickets shown to a 640×480 frame with
    perspective, blur and noise it read 149, OpenCV's QRCodeDetector 1 and QRCodeDetectorAruco 3, and it
    took 1.8 ms a frame against 16 ms. OpenCV's ArUco-based detector is the fallback (on clean generated
    codes it read 300/300 where the classic detector missed 6%)."""
    try:
        import zxingcpp
    except ImportError:
        import cv2

        detector = cv2.QRCodeDetectorAruco()
        return lambda image: detector.detectAndDecode(image)[0] or ""
    fmt: Any = zxingcpp.BarcodeFormat.QRCode  # one format; the stubs only name the set type

    def read(image: Any) -> str:
        found = zxingcpp.read_barcodes(image, formats=fmt)
        return found[0].text if found else ""

    return read


class GateRole:
    def __init__(self, cfg: GateRoleConfig, ctx: Context) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        self.key = load_public_key(cfg.public_key)
        self.allow: AllowList | None = None
        self._allow_lock = threading.Lock()
        self._display_dirty = threading.Event()
        d = cfg.display
        self.board = Board(d.port, d.baud, d.encoding, d.ack) if d else None

    def _now(self) -> dt.datetime:
        from zoneinfo import ZoneInfo

        return dt.datetime.fromtimestamp(self.ctx.clock.time(), ZoneInfo(self.cfg.timezone))

    def commands(self) -> dict[str, Handler]:
        return {"gate.allowlist": self._cmd_allowlist}

    def _allowlist(self) -> AllowList:
        """The list lives in SQLite: a sync may arrive before the role's loop has started (or between
        restarts), so whoever needs it first opens it."""
        with self._allow_lock:
            if self.allow is None:
                c = self.cfg
                self.allow = AllowList(Path(c.state_dir) / "allow.db", (c.allowlist_key or c.venue).encode())
            return self.allow

    def _cmd_allowlist(self, args: dict[str, Any]) -> dict[str, Any]:
        allow = self._allowlist()
        try:
            version = int(args["version"])
            entries = [Entry(str(e["id"]), str(e["ticket"]), str(e["date"]), str(e["slot"]), int(e.get("party", 1)))
                       for e in args["entries"]]
        except (KeyError, TypeError, ValueError) as err:
            raise CommandError(f"allow-list needs version and entries[id, ticket, date, slot]: {err}") from err
        if "parts" in args:  # a big list in pieces of < 64 KiB each (about 600 entries)
            try:
                part, parts = int(args["part"]), int(args["parts"])
                missing = allow.stage(entries, version, part, parts)
            except (KeyError, TypeError, ValueError) as err:
                raise CommandError(f"a list in parts needs part (0..parts-1) and parts: {err}") from err
            if missing is None:
                raise CommandError(f"version {version} is older than the list installed or being received")
            return {"version": version, "part": part, "missing": missing, "installed": missing == 0,
                    **({"entries": len(allow)} if missing == 0 else {})}
        if not allow.replace(entries, version):
            raise CommandError(f"version {version} is not newer than {allow.version}")
        return {"version": version, "entries": len(entries)}

    def run(self, stop: threading.Event) -> None:
        c, sink = self.cfg, self.ctx.sink
        state = Path(c.state_dir)
        used = UsedTickets(state / "gate.db")
        allow = self._allowlist()
        capacity = Capacity(c.capacity, tuple(c.thresholds))
        day = [self._now().date().isoformat()]  # the venue day the occupancy counts for
        capacity.inside = used.load_inside(day[0])
        validator = Validator(c.venue, self.key, used, capacity, self._now, c.grace_min, allow)

        def record(kind: str, body: dict[str, Any]) -> None:
            sink.put(DataClass.TRANSACTION, kind, body)

        def changed() -> None:
            used.save_inside(day[0], capacity.inside)
            self._display_dirty.set()

        def roll_day() -> None:
            """At midnight (venue time) the count starts again from the new day's figure (0 unless saved)."""
            new = self._now().date().isoformat()
            if new == day[0]:
                return
            with validator.lock:
                closing = capacity.inside
                used.save_inside(day[0], closing)
                day[0] = new
                capacity.inside = used.load_inside(new)
            # people still counted inside at the close were never counted out: the hub sees the drift
            record("gate.day_start", {"gate": c.name, "day": new, "inside_at_close": closing})
            self._display_dirty.set()

        def camera_door(direction: str) -> None:
            alerts, inside = validator.passed(direction)
            for level in alerts:
                record("gate.capacity_alert", {"gate": "camera", "level": level, "inside": inside})
            changed()

        unsubscribe = [self.ctx.bus.subscribe(f"vision/{line}", camera_door) for line in c.vision_lines]
        threads, closers = [], []
        gates = []
        for lane in c.lanes:
            g = GateController(lane.name, validator, used, record, c.pass_timeout_s)
            g.on_change = changed
            if lane.turnstile:
                g.attach(open_port(lane.turnstile, lane.turnstile_baud), lane.turnstile_addr)
                closers.append(g.turnstile.close)  # type: ignore[union-attr]
            elif lane.contact:
                k = lane.contact
                g.attach_contacts(open_line(k.relay, True, k.relay_active_low),
                                  open_line(k.sensor, False, k.sensor_active_low, k.debounce_ms), k.pulse_s)
                closers.append(g.turnstile.close)  # type: ignore[union-attr]
            gates.append(g)
            if lane.scanner:
                threads.append(threading.Thread(target=read_lines, args=(lane.scanner, lane.scanner_baud,
                                                                         lambda line, g=g: g.on_scan(line.strip()),
                                                                         stop),
                                                name=f"scanner:{lane.name}", daemon=True))
            if lane.idreader:
                threads.append(threading.Thread(target=self._idreader, args=(g, lane.idreader, lane.idreader_baud,
                                                                             stop, record),
                                                name=f"idreader:{lane.name}", daemon=True))
            if lane.camera_qr:
                threads.append(threading.Thread(target=self._camera_qr, args=(g, lane.camera_qr, stop, record),
                                                name=f"qrcam:{lane.name}", daemon=True))
        for t in threads:
            t.start()
        self._display_dirty.set()
        last_state = None
        try:
            while not stop.is_set():
                roll_day()
                for g in gates:
                    g.expire()
                with validator.lock:
                    inside, full = capacity.inside, not capacity.allows(1)
                if (inside, full) != last_state:
                    sink.put(DataClass.STATE, "gate.occupancy", {"inside": inside, "limit": c.capacity,
                                                                 "full": full}, key=f"occupancy:{c.name}")
                    last_state = (inside, full)
                if self._display_dirty.is_set() and self.board is not None:
                    self._display_dirty.clear()
                    if not self.board.show(occupancy_rows(inside, c.capacity, full)):
                        self._display_dirty.set()  # try again on the next round
                stop.wait(0.2)
        finally:
            stop.set()
            for cancel in unsubscribe:
                cancel()
            for t in threads:
                t.join(2)
            for close in closers:
                close()
            if self.board is not None:
                self.board.close()
            used.close()
            with self._allow_lock:
                allow.close()
                self.allow = None

    # ----------------------------------------------------------------- readers

    def _idreader(self, gate: GateController, url: str, baud: int, stop: threading.Event, record: Any) -> None:
        reader: Reader | None = None
        repeat = Repeat(5)
        while not stop.is_set():
            try:
                if reader is None:
                    reader = Reader(open_port(url, baud))
                card = reader.poll()
            except (DeviceTimeout, FrameError, OSError) as err:
                logger.warning("ID reader %s: %s", url, err)
                record("gate.fault", {"gate": gate.name, "fault": f"idreader: {str(err)[:80]}"})
                reader = None if isinstance(err, OSError) else reader
                stop.wait(1)
                continue
            if card is None:
                stop.wait(self.cfg.idreader_poll_s)
                continue
            if not repeat.fresh(card.id_number):  # a card left on the reader: once per 5 s
                continue
            d = gate.on_id_card(card.id_number)
            logger.info("gate %s: ID %s → %s", gate.name, mask(card.id_number), d.reason)

    def _camera_qr(self, gate: GateController, source: str, stop: threading.Event, record: Any) -> None:
        from edge_agent.vision.sources import SourceUnavailable, open_source

        decode = qr_decoder()
        repeat = Repeat(3)
        while not stop.is_set():
            try:
                for frame in open_source(source):
                    if stop.is_set():
                        return
                    text = decode(frame.image)
                    if text and repeat.fresh(text):  # the same code held up to the camera: once per 3 s
                        gate.on_scan(text)
                return  # a file source (tests, demos) ends
            except SourceUnavailable as err:
                record("gate.fault", {"gate": gate.name, "fault": f"qr camera: {str(err)[:80]}"})
                stop.wait(5)

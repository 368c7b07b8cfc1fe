"""The ticket-gate role as an agent producer: lanes of scanner / ID reader / camera QR → shared offline
rules → turnstile, an occupancy display, capacity alerts; every decision a `transaction` record.

Records (all transactions unless noted): gate.decision (every scan, with the reason), gate.pass (a pass
the turnstile confirmed), gate.exit, gate.not_passed (opened, nobody came), gate.fault, gate.alarm,
gate.capacity_alert, gate.day_start, and the state `gate.occupancy`. ID numbers never appear in records or logs
(masked); the allow-list holds only keyed hashes.

This is the shell: it opens the ports, starts the readers and writes what the pure cores decide (the ticket
rules in tickets.py, the site's occupancy, capacity and venue day in site.py). Raised from run(): a port that
cannot be opened (OSError), so the supervisor restarts the role within its budget.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.core.ports import CommandError, Context, Handler, Sink
from edge_agent.drivers.display import Board, occupancy_rows
from edge_agent.drivers.gpio import open_line
from edge_agent.drivers.serialio import open_port, read_lines
from edge_agent.drivers.turnstile import DryContactTurnstile, TurnstileDriver
from edge_agent.gate import readers
from edge_agent.gate.allowlist import AllowList, Entry
from edge_agent.gate.config import GateLaneConfig, GateRoleConfig, public_key_bytes
from edge_agent.gate.controller import GateController
from edge_agent.gate.passback import UsedTickets
from edge_agent.gate.site import Alert, DayStart, Event, Occupancy, Passed, Save, Site, Used
from edge_agent.gate.tickets import Capacity, Validator
from edge_agent.records import DataClass

logger = logging.getLogger(__name__)


def load_public_key(text: str) -> Ed25519PublicKey:
    """Raw 32-byte key, base64 (standard or url-safe) or hex; ValueError otherwise."""
    return Ed25519PublicKey.from_public_bytes(public_key_bytes(text))


def idh(entry: dict[str, Any]) -> bytes:
    """An entry's keyed hash (64 hex digits); plain ID numbers are refused, they must never travel."""
    if "id" in entry:
        raise ValueError("plain ID numbers are refused: the hub sends keyed hashes (idh)")
    raw = bytes.fromhex(str(entry["idh"]))
    if len(raw) != 32:
        raise ValueError("idh must be 32 bytes in hex")
    return raw


class Ledger:
    """The site under the gate's lock: each tick's tickets used and day count are stored in one transaction
    while the lock is held (no one is ever in neither pending nor used), then its records are written."""

    def __init__(self, site: Site, used: UsedTickets, lock: threading.RLock, now: Callable[[], dt.datetime],
                 write: Callable[[Event], Any]) -> None:
        self.site, self.used, self.lock, self.now, self.write = site, used, lock, now, write

    def feed(self, inputs: Iterable[Passed] = ()) -> None:
        with self.lock:
            events = self.site.tick(self.now(), inputs)
            self.used.passed([(e.ticket, e.gate) for e in events if isinstance(e, Used)],
                             [(e.day, e.inside) for e in events if isinstance(e, Save)])
        for e in events:
            self.write(e)


class GateRole:
    def __init__(self, cfg: GateRoleConfig, ctx: Context) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        self.key = load_public_key(cfg.public_key)
        self.allow: AllowList | None = None
        self._allow_lock = threading.Lock()
        self._latest: Occupancy | None = None  # the site's occupancy as last written
        self._on_board: Occupancy | None = None  # what the board shows (only the role's loop sets it)
        d = cfg.display
        self.board = Board(d.port, d.baud, d.encoding, d.ack) if d else None

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.ctx.clock.time(), ZoneInfo(self.cfg.timezone))

    def commands(self) -> dict[str, Handler]:
        return {"gate.allowlist": self._cmd_allowlist}

    def _allowlist(self) -> AllowList:
        """The list lives in SQLite: a sync may arrive before the role's loop has started (or between
        restarts), so whoever needs it first opens it."""
        with self._allow_lock:
            if self.allow is None:
                c = self.cfg
                self.allow = AllowList(Path(c.state_dir) / "allow.db", c.allowlist_key())
            return self.allow

    def _cmd_allowlist(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            allow = self._allowlist()
        except (OSError, ValueError) as err:
            raise CommandError(f"allow-list key unavailable: {err}") from err
        try:
            version = int(args["version"])
            entries = [Entry(idh(e), str(e["ticket"]), str(e["date"]), str(e["slot"]), int(e.get("party", 1)))
                       for e in args["entries"]]
        except (KeyError, TypeError, ValueError) as err:
            raise CommandError(f"allow-list needs version and entries[idh, ticket, date, slot]: {err}") from err
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
        c, sink, clock = self.cfg, self.ctx.sink, self.ctx.clock
        closers: list[Callable[[], Any]] = []  # undone in reverse, whatever was opened when run() ends
        threads: list[threading.Thread] = []
        # The readers stop with the role, whichever way run() ends; `stop` itself is the supervisor's (setting it
        # here would tell the supervisor the role was stopped on purpose, not that it failed).
        readers_stop = threading.Event()
        used = UsedTickets(Path(c.state_dir) / "gate.db")
        closers.append(used.close)
        try:
            allow = self._allowlist()
            closers.append(self._close_allowlist)
            record = partial(self._record, sink)
            site = Site(c.name, Capacity(c.capacity, tuple(c.thresholds)), self._now().date().isoformat())
            site.capacity.inside = used.load_inside(site.day)  # occupancy survives a reboot
            lock = threading.RLock()
            validator = Validator(c.venue, self.key, used, site, self._now, c.grace_min, allow, lock)
            ledger = Ledger(site, used, lock, self._now, partial(self._write, sink))
            closers += [self.ctx.bus.subscribe(f"vision/{line}", lambda d: ledger.feed([Passed("camera", d)]))
                        for line in c.vision_lines]
            gates = [GateController(lane.name, validator, record, lambda p: ledger.feed([p]), c.pass_timeout_s,
                                    clock.monotonic) for lane in c.lanes]
            for g, lane in zip(gates, c.lanes, strict=True):
                closers += self._attach_turnstile(g, lane)
                threads += self._readers(g, lane, readers_stop, record)
            for t in threads:
                t.start()
            while not stop.is_set():
                ledger.feed()  # the venue day rolls over, the occupancy state is written when it changed
                for g in gates:
                    g.expire()
                self._show()
                stop.wait(0.2)
        finally:
            readers_stop.set()
            for t in threads:
                t.join(2)
            for close in reversed(closers):
                close()
            if self.board is not None:
                self.board.close()

    def _attach_turnstile(self, g: GateController, lane: GateLaneConfig) -> list[Callable[[], Any]]:
        """Open the lane's turnstile (RS-485 or dry contacts) and start its driver; returns what closes them."""
        if lane.turnstile:
            port = open_port(lane.turnstile, lane.turnstile_baud)
            drv: TurnstileDriver | DryContactTurnstile = TurnstileDriver(port, lane.turnstile_addr, g.on_turnstile)
            closers = [port.close]
        elif lane.contact:
            k = lane.contact
            relay = open_line(k.relay, True, k.relay_active_low)
            sensor = open_line(k.sensor, False, k.sensor_active_low, k.debounce_ms)
            drv, closers = DryContactTurnstile(relay, sensor, g.on_turnstile, k.pulse_s), []
        else:
            return []
        g.attach(drv.start())
        return closers + [drv.close]

    def _readers(self, g: GateController, lane: GateLaneConfig, stop: threading.Event,
                 record: readers.Record) -> list[threading.Thread]:
        mono = self.ctx.clock.monotonic
        jobs: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = []
        if lane.scanner:
            jobs.append(("scanner", read_lines, (lane.scanner, lane.scanner_baud,
                                                 lambda line: g.on_scan(line.strip()), stop)))
        if lane.idreader:
            jobs.append(("idreader", readers.id_reader, (g, lane.idreader, lane.idreader_baud,
                                                         self.cfg.idreader_poll_s, stop, record, mono)))
        if lane.camera_qr:
            jobs.append(("qrcam", readers.camera_qr, (g, lane.camera_qr, stop, record, mono)))
        return [threading.Thread(target=fn, args=args, name=f"{kind}:{lane.name}", daemon=True)
                for kind, fn, args in jobs]

    def _record(self, sink: Sink, kind: str, body: dict[str, Any]) -> None:
        sink.put(DataClass.TRANSACTION, kind, body)

    def _write(self, sink: Sink, e: Event) -> None:
        """What the site decided, as records (stored tickets and counts are already persisted)."""
        if isinstance(e, Alert):
            self._record(sink, "gate.capacity_alert", {"gate": e.gate, "level": e.level, "inside": e.inside})
        elif isinstance(e, DayStart):
            self._record(sink, "gate.day_start", {"gate": self.name, "day": e.day,
                                                  "inside_at_close": e.inside_at_close})
        elif isinstance(e, Occupancy):
            sink.put(DataClass.STATE, "gate.occupancy", {"inside": e.inside, "limit": e.limit, "full": e.full},
                     key=f"occupancy:{self.name}")
            self._latest = e

    def _show(self) -> None:
        """The board shows the latest occupancy; one that fails is tried again on the next round."""
        e = self._latest
        if e is None or e == self._on_board or self.board is None:
            return
        if self.board.show(occupancy_rows(e.inside, e.limit, e.full)):
            self._on_board = e

    def _close_allowlist(self) -> None:
        with self._allow_lock:
            if self.allow is not None:
                self.allow.close()
                self.allow = None

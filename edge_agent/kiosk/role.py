"""The kiosk as an agent role: `run(stop)` serves the touch UI (uvicorn, 127.0.0.1 unless configured)
under the agent's supervisor, wipes idle sessions every second and purges old guest records daily.

Records it writes (all transactions): kiosk.registration, kiosk.departure, kiosk.alert; and the state
`kiosk.health` (each device in one word) when it changes. Downlink command: `kiosk.health`.
Raised from run(): whatever stops the web server from serving (port taken): the supervisor restarts it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_agent.core.ports import CommandError, Context, Handler
from edge_agent.kiosk import face as fc
from edge_agent.kiosk.config import KioskConfig, raw_key
from edge_agent.kiosk.devices import KeyCardDispenser, OpenCvCamera, SerialIdReader
from edge_agent.kiosk.guests import GuestStore
from edge_agent.kiosk.payment import HttpPayment
from edge_agent.kiosk.pms import SqlitePms
from edge_agent.kiosk.printer import EscposPrinter, NoPrinter, make_escpos
from edge_agent.kiosk.privacy import Vault, load_key
from edge_agent.kiosk.service import Devices, KioskService, Policy
from edge_agent.records import DataClass

logger = logging.getLogger(__name__)


def card_key(device_key: bytes) -> bytes:
    """The key that signs room grants on key cards, derived from the device key (never stored)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt=None, info=b"svedge kiosk key card v1").derive(device_key)


def policy_of(cfg: KioskConfig) -> Policy:
    return Policy(cfg.hotel, cfg.timezone, cfg.idle_timeout_s, cfg.payment.deposit_cents, cfg.payment.currency,
                  cfg.face.max_tries, cfg.face.frames, cfg.retention_days * 86400, 1.0, tuple(cfg.languages))


def build_devices(cfg: KioskConfig, device_key: bytes) -> Devices:
    d, p = cfg.dispenser, cfg.payment
    mifare = bytes.fromhex(os.environ.get(d.mifare_key_env, "")) if d.mifare_key_env else b"\xff" * 6
    printer: Any = EscposPrinter(make_escpos(cfg.printer)) if cfg.printer.kind != "none" else NoPrinter()
    return Devices(
        pms=SqlitePms(cfg.pms.path),
        payment=HttpPayment(p.url, api_key_env=p.api_key_env, timeout_s=p.timeout_s, currency=p.currency),
        dispenser=KeyCardDispenser(d.port, d.baud, card_key(device_key), address=d.address, sector=d.sector,
                                   mifare_key=mifare),
        printer=printer, idreader=SerialIdReader(cfg.idreader, cfg.idreader_baud), camera=OpenCvCamera(cfg.camera))


def build_service(cfg: KioskConfig, sink: Any, devices: Devices | None = None,
                  clock: Callable[[], float] = time.time) -> KioskService:
    """The service for a config: real devices unless `devices` is given (tests, simulators)."""
    key = load_key(cfg.key_source, cfg.key_file)
    vault = Vault(key)
    f = cfg.face
    return KioskService(devices or build_devices(cfg, key), policy_of(cfg), sink=sink,
                        guests=GuestStore(cfg.state_dir / "guests.db", vault), hub_public=raw_key(cfg.hub_public_key),
                        matcher=lambda: fc.FaceMatcher(f.model_dir, f.threshold, f.turn),
                        photos=fc.PhotoDecoder(f.wlt_library, f.wlt_symbol), clock=clock)


class KioskRole:
    def __init__(self, cfg: KioskConfig, ctx: Context, devices: Devices | None = None) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        self.devices = devices
        self.service: KioskService | None = None
        self.server: Any = None
        self.ready = threading.Event()

    def commands(self) -> dict[str, Handler]:
        return {"kiosk.health": self._cmd_health}

    def _cmd_health(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.service is None:
            raise CommandError("the kiosk is not running")
        return self._health(self.service)

    @staticmethod
    def _health(svc: KioskService) -> dict[str, Any]:
        d = svc.dev
        return {"pms": d.pms.health(), "payment": d.payment.health(), "dispenser": d.dispenser.health(),
                "printer": d.printer.health(), "idreader": d.idreader.health(), "camera": d.camera.health()}

    @property
    def url(self) -> str:
        """Where the UI is served (after `ready`)."""
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def run(self, stop: threading.Event) -> None:
        import uvicorn

        from kiosk_ui.app import create_app

        sink = self.ctx.sink
        svc = self.service = build_service(self.cfg, sink, self.devices, self.ctx.clock.time)
        config = uvicorn.Config(create_app(svc), host=self.cfg.host, port=self.cfg.port, log_level="warning",
                                access_log=False, lifespan="off", server_header=False)
        self.server = uvicorn.Server(config)
        web = threading.Thread(target=self.server.run, name=f"kiosk-web:{self.name}", daemon=True)
        web.start()
        last_health: dict[str, Any] | None = None
        next_purge, next_health = 0.0, 0.0
        try:
            while not stop.is_set():
                if not web.is_alive():
                    raise RuntimeError(f"kiosk web server stopped (port {self.cfg.port} taken?)")
                if self.server.started:
                    self.ready.set()
                svc.expire()
                now = time.monotonic()
                if now >= next_purge:
                    purged = svc.purge()
                    if purged:
                        logger.info("kiosk: %d guest records past retention deleted", purged)
                    next_purge = now + 86400
                if now >= next_health:
                    health = self._health(svc)
                    if health != last_health:
                        sink.put(DataClass.STATE, "kiosk.health", health, key=f"kiosk-health:{self.name}")
                        last_health = health
                    next_health = now + 60
                stop.wait(1.0)
        finally:
            self.server.should_exit = True
            web.join(10)
            self.ready.clear()
            for sid in list(svc.sessions):
                svc.cancel(sid, "agent_stopping")
            svc.guests.close()
            self.service = None

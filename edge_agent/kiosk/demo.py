"""A complete simulated kiosk (`Rig`): every device simulated on its real wire protocol, a local PMS with
rooms and today's bookings, a hub key pair. Used by the tests, the bench and `edge-agent sim kiosk`."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge_agent.core.idnumber import check_digit
from edge_agent.core.ports import Context
from edge_agent.kiosk import sim
from edge_agent.kiosk.config import KioskConfig
from edge_agent.kiosk.privacy import load_key
from edge_agent.kiosk.role import KioskRole, build_devices, build_service
from edge_agent.kiosk.service import KioskService
from edge_agent.sim.idreader import IdReaderSim

GUEST_NAME, GUEST_ID, PHONE, CONFIRMATION = "张伟", "110105194912310021", "13800000001", "HX1001"
OTHER_NAME, OTHER_ID, OTHER_CONFIRMATION = "李娜", "610104199001011234", "HX1002"


def valid_id(first17: str) -> str:
    return first17 + check_digit(first17)


class Rig:
    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.time, payment_timeout_s: float = 1.0,
                 deposit_cents: int = 30000, idle_s: float = 90, port: int = 0, face: str = "obama") -> None:
        self.folder, self.clock = folder, clock
        folder.mkdir(parents=True, exist_ok=True)
        self.dispenser = sim.DispenserSim()
        self.printer = sim.PrinterSim()
        self.payment = sim.PaymentSandbox()
        self.idreader = IdReaderSim()
        self.camera = sim.FrameCamera(sim.live_frames(face))
        self.hub_key = X25519PrivateKey.generate()
        public = self.hub_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.guest_id, self.other_id = valid_id(GUEST_ID[:17]), valid_id(OTHER_ID[:17])
        self.cfg = KioskConfig.model_validate({
            "type": "kiosk", "hotel": "demo-hotel", "port": port, "idle_timeout_s": idle_s,
            "idreader": self.idreader.path, "camera": "0",
            "dispenser": {"port": self.dispenser.path},
            "printer": {"kind": "serial", "port": self.printer.path},
            "payment": {"url": self.payment.url, "timeout_s": payment_timeout_s, "deposit_cents": deposit_cents},
            "pms": {"path": str(folder / "pms.db")}, "key_file": str(folder / "id.key"),
            "hub_public_key": public.hex(), "state_dir": str(folder)})
        devices = build_devices(self.cfg, load_key("file", self.cfg.key_file))
        devices.camera = self.camera
        self.devices = devices
        self.pms: Any = devices.pms
        self.stock()

    def today(self, days: int = 0) -> str:
        day = dt.datetime.fromtimestamp(self.clock(), ZoneInfo(self.cfg.timezone)).date()
        return (day + dt.timedelta(days=days)).isoformat()

    def stock(self) -> None:
        for n in range(1, 6):
            self.pms.add_room(f"120{n}", "deluxe", 12)
        self.pms.add_room("1301", "suite", 13)
        self.pms.add_booking(CONFIRMATION, GUEST_NAME, PHONE, self.today(), self.today(2), "deluxe")
        self.pms.add_booking(OTHER_CONFIRMATION, OTHER_NAME, "13900000002", self.today(), self.today(1), "deluxe")

    def guest_card(self, name: str = GUEST_NAME, face: str = "obama", photo: bytes | None = None) -> Any:
        number = self.guest_id if name == GUEST_NAME else self.other_id
        return sim.sample_card(name, number, sim.id_photo(face) if photo is None else photo)

    def place_card(self, **kw: Any) -> None:
        self.idreader.place(self.guest_card(**kw))

    def service(self, sink: Any) -> KioskService:
        return build_service(self.cfg, sink, self.devices, self.clock)

    def close(self) -> None:
        close = getattr(self.devices.printer, "close", None)
        if close:
            close()
        self.pms.close()
        for s in (self.dispenser, self.printer, self.idreader):
            s.close()
        self.payment.close()


@contextmanager
def serve(rig: Rig, sink: Any) -> Iterator[KioskRole]:
    """The kiosk role on the rig's devices, serving its UI on a free loopback port (role.url) until exit."""
    role = KioskRole(rig.cfg, Context(sink, boot=1), devices=rig.devices)
    stop = threading.Event()
    worker = threading.Thread(target=role.run, args=(stop,), name="kiosk-role", daemon=True)
    worker.start()
    try:
        if not role.ready.wait(20):
            raise RuntimeError("the kiosk web server did not start")
        yield role
    finally:
        stop.set()
        worker.join(15)

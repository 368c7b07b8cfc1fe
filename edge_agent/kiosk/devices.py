"""Real implementations of the device seams on serial ports and OpenCV: the CRT-591 dispenser as a key-card
issuer, the ID-card reader (edge_agent/drivers/idreader.py) and the camera.

Each opens its port when first needed and again after a failure, so a device unplugged and plugged back
in works again without a restart. Raised: DeviceUnavailable, DeviceFault(code), NotFound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edge_agent.core import idnumber
from edge_agent.drivers import DeviceTimeout, FrameError
from edge_agent.drivers import idreader as idr
from edge_agent.drivers.serialio import open_port
from edge_agent.kiosk import DeviceFault, DeviceUnavailable
from edge_agent.kiosk import keycard as kc
from edge_agent.kiosk.dispenser import EJECT, TO_BIN, TO_GATE, TO_RF, Crt591
from edge_agent.kiosk.flow import Guest

logger = logging.getLogger(__name__)


class _Port:
    """A lazily (re)opened serial port shared by one device's calls."""

    def __init__(self, url: str, baud: int, what: str) -> None:
        self.url, self.baud, self.what = url, baud, what
        self.port: Any = None
        self.lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[Any]:
        with self.lock:
            try:
                if self.port is None:
                    self.port = open_port(self.url, self.baud)
                yield self.port
            except (OSError, DeviceUnavailable) as err:
                self.close()
                if isinstance(err, DeviceUnavailable):
                    raise
                raise DeviceUnavailable(f"{self.what} at {self.url}: {err}") from err

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except OSError:
                pass
            self.port = None


class KeyCardDispenser:
    """Issue: stacker → RF position → write and verify the grant → hold at the gate for the guest.
    A card that fails on the way is captured into the error bin, never handed out half-written."""

    def __init__(self, url: str, baud: int, key: bytes, *, address: int = 0, sector: int = 1,
                 mifare_key: bytes = b"\xff" * 6, clock: Callable[[], float] = time.monotonic) -> None:
        self.port = _Port(url, baud, "key-card dispenser")
        self.key, self.address, self.sector, self.mifare_key = key, address, sector, mifare_key
        self.clock = clock

    def _unit(self, port: Any) -> Crt591:
        return Crt591(port, self.address)

    def health(self) -> str:
        try:
            with self.port.use() as port:
                st = self._unit(port).status()
        except (DeviceUnavailable, DeviceFault) as err:
            return "unavailable" if isinstance(err, DeviceUnavailable) else err.code
        if st.stacker == "empty":
            return "hopper_empty"
        return "bin_full" if st.bin_full else ("low" if st.stacker == "low" else "ok")

    def issue(self, grant: kc.Grant) -> str:
        with self.port.use() as port:
            unit = self._unit(port)
            st = unit.status()
            if st.channel != "empty":  # a card left in the channel by an earlier failure
                unit.move(TO_BIN)
            if st.stacker == "empty":
                raise DeviceFault("hopper_empty", "no cards in the stacker")
            try:
                unit.move(TO_RF)
                uid = unit.activate()
                unit.verify_key(self.sector, self.mifare_key)
                data = kc.encode(grant, uid, self.key)
                unit.write_blocks(self.sector, 0, data)
                if unit.read_blocks(self.sector, 0, 2) != data:
                    raise DeviceFault("write_failed", "read-back differs from what was written")
                unit.deactivate()
                unit.move(TO_GATE)
            except DeviceFault:
                self._capture(unit)
                raise
            return uid.hex()

    def _capture(self, unit: Crt591) -> None:
        try:
            unit.move(TO_BIN)
        except (DeviceFault, DeviceUnavailable) as err:
            logger.error("could not capture a failed card: %s", err)

    def take_back(self, wait_s: float) -> kc.Grant | None:
        """Accept a card at the gate within `wait_s`: its grant (the card is kept in the bin), None when no
        card came. A card that is not ours is handed back and ValueError raised."""
        with self.port.use() as port:
            unit = self._unit(port)
            unit.allow_insert(True)
            deadline = self.clock() + wait_s
            while unit.status().channel != "rf":
                if self.clock() >= deadline:
                    unit.allow_insert(False)
                    return None
            unit.allow_insert(False)
            try:
                uid = unit.activate()
                unit.verify_key(self.sector, self.mifare_key)
                grant = kc.decode(unit.read_blocks(self.sector, 0, 2), uid, self.key)
                unit.deactivate()
            except (DeviceFault, ValueError):
                unit.move(EJECT)
                raise
            unit.move(TO_BIN)
            return grant


class SerialIdReader:
    """The ID card on the reader as a Guest (photo bytes kept in memory only), or None."""

    def __init__(self, url: str, baud: int) -> None:
        self.port = _Port(url, baud, "ID card reader")

    def health(self) -> str:
        try:
            with self.port.use():
                return "ok"
        except DeviceUnavailable:
            return "unavailable"

    def read(self) -> Guest | None:
        with self.port.use() as port:
            try:
                card = idr.Reader(port).poll()
            except DeviceTimeout as err:
                raise DeviceUnavailable(f"ID card reader: {err}") from err
            except FrameError as err:
                raise DeviceFault("id_unreadable", str(err)) from err
        if card is None:
            return None
        if idnumber.validate(card.id_number):
            raise DeviceFault("id_unreadable", "the number read is not a valid ID number")
        return Guest(card.name, idnumber.normalise(card.id_number), "CHN", card.sex, card.birth, card.valid_to,
                     card.photo)


class OpenCvCamera:
    """Frames from a camera index, stream URL or video file; kept in memory, never written."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.cap: Any = None
        self.lock = threading.Lock()

    def health(self) -> str:
        try:
            with self.lock:
                self._open()
            return "ok"
        except DeviceUnavailable:
            return "unavailable"

    def _open(self) -> Any:
        import cv2

        if self.cap is None or not self.cap.isOpened():
            src: Any = int(self.source) if self.source.isdigit() else self.source
            self.cap = cv2.VideoCapture(src)
            if not self.cap.isOpened():
                self.cap = None
                raise DeviceUnavailable(f"camera {self.source!r} cannot be opened")
        return self.cap

    def frames(self, n: int) -> list[Any]:
        with self.lock:
            cap = self._open()
            out = []
            for _ in range(n):
                ok, frame = cap.read()
                if not ok:
                    cap.set(1, 0)  # CAP_PROP_POS_FRAMES: a video file starts again
                    ok, frame = cap.read()
                if not ok:
                    self.cap = None
                    raise DeviceUnavailable(f"camera {self.source!r} delivers no frames")
                out.append(frame)
            return out

"""Receipts on an ESC/POS printer through python-escpos (serial, network or USB; its Dummy in tests).

Before and after each receipt the printer is asked for its state with DLE EOT 1 (online) and DLE EOT 4
(paper roll sensor: bits 5-6 set = paper end, Epson ESC/POS reference), so "out of paper" is known before
the guest waits for a receipt that will not come, and a roll that ran out mid-receipt is reported too.
Chinese lines are sent in the printer's Chinese mode (FS &) as GB18030.

Raised: DeviceUnavailable (no answer, port or socket error), DeviceFault("paper_out").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from edge_agent.kiosk import DeviceFault, DeviceUnavailable

logger = logging.getLogger(__name__)

CHINESE_ON, CHINESE_OFF = b"\x1c\x26", b"\x1c\x2e"  # FS & / FS .


def make_escpos(cfg: Any) -> Callable[[], Any]:
    """A factory of python-escpos printers for a PrinterConfig (imported only when a printer is set)."""
    from escpos import printer

    if cfg.kind == "serial":
        return lambda: printer.Serial(devfile=cfg.port, baudrate=cfg.baud, timeout=0.2, dsrdtr=False)
    if cfg.kind == "network":
        return lambda: printer.Network(cfg.host, port=cfg.tcp_port, timeout=5)
    if cfg.kind == "usb":
        return lambda: printer.Usb(cfg.usb_vendor, cfg.usb_product)
    raise ValueError(f"no ESC/POS printer for kind {cfg.kind!r}")


def _library_errors() -> tuple[type[BaseException], ...]:
    from escpos import exceptions

    return (OSError, exceptions.Error)


class EscposPrinter:
    def __init__(self, factory: Callable[[], Any], query_status: bool = True) -> None:
        self.factory, self.query = factory, query_status
        self.device: Any = None
        self.lock = threading.Lock()

    def _printer(self) -> Any:
        if self.device is None:
            self.device = self.factory()
        return self.device

    def _drop(self) -> None:
        if self.device is not None:
            try:
                self.device.close()
            except Exception:  # noqa: BLE001  # nosec B110: closing a broken device must not hide the first error
                pass
            self.device = None

    def close(self) -> None:
        with self.lock:
            self._drop()

    def _check(self, p: Any) -> str:
        from escpos.constants import RT_STATUS_ONLINE

        if not p.query_status(RT_STATUS_ONLINE):
            raise DeviceUnavailable("receipt printer does not answer")
        paper = p.paper_status()
        if paper == 0:
            raise DeviceFault("paper_out", "receipt printer is out of paper")
        return "low" if paper == 1 else "ok"

    def health(self) -> str:
        if not self.query:
            return "ok"
        with self.lock:
            try:
                return self._check(self._printer())
            except DeviceFault as err:
                return err.code
            except DeviceUnavailable:
                self._drop()
                return "unavailable"
            except _library_errors():
                self._drop()
                return "unavailable"

    def print_receipt(self, lines: list[str]) -> None:
        with self.lock:
            try:
                p = self._printer()
                if self.query:
                    self._check(p)
                p.set(align="left")
                for line in lines:
                    if line.isascii():
                        p.textln(line)
                    else:
                        p._raw(CHINESE_ON + line.encode("gb18030", "replace") + b"\n" + CHINESE_OFF)
                p.cut()
                if self.query:
                    self._check(p)
            except (DeviceFault, DeviceUnavailable):
                raise
            except _library_errors() as err:
                self._drop()
                raise DeviceUnavailable(f"receipt printer: {err}") from err


class NoPrinter:
    """A kiosk without a printer: receipts are skipped (the guest is told to ask at the desk)."""

    def health(self) -> str:
        return "none"

    def print_receipt(self, lines: list[str]) -> None:
        raise DeviceFault("no_printer", "this kiosk has no receipt printer")

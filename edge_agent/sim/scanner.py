"""Serial QR/barcode scanner: writes each scanned code as an ASCII line (CR LF, as most ship)."""

from __future__ import annotations

from edge_agent.sim.base import PtyDevice


class ScannerSim(PtyDevice):
    def __init__(self, terminator: bytes = b"\r\n") -> None:
        self.terminator = terminator
        super().__init__()

    def scan(self, code: str) -> None:
        self.pty.write(code.encode("ascii") + self.terminator)

    def noise(self, data: bytes) -> None:
        self.pty.write(data)

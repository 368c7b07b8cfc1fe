"""A device simulator on the master side of a pty: a thread that reads what the driver writes."""

from __future__ import annotations

import select
import threading

from edge_agent.sim.pty import PtyPair


class PtyDevice:
    def __init__(self) -> None:
        self.pty = PtyPair()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return self.pty.path

    def on_bytes(self, chunk: bytes) -> None:
        """What the host wrote; subclasses answer here."""

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.pty.master], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = self.pty.read()
            except OSError:
                return
            self.on_bytes(chunk)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.pty.close()

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

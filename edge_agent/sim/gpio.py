"""Dry-contact turnstile at the GPIO seam: a relay line the gate pulses, a pass sensor that gives an edge
per person walking through (after `walk_s`)."""

from __future__ import annotations

import threading


class RelayLine:
    def __init__(self, on_pulse: object = None) -> None:
        self.value = False
        self.pulses = 0
        self.on_pulse = on_pulse

    def set(self, value: bool) -> None:
        if value and not self.value:
            self.pulses += 1
            if callable(self.on_pulse):
                self.on_pulse()
        self.value = value

    def wait_edge(self, timeout: float) -> bool:
        raise NotImplementedError("an output line")


class SensorLine:
    def __init__(self) -> None:
        self._edges = threading.Semaphore(0)

    def set(self, value: bool) -> None:
        if value:
            self._edges.release()

    def wait_edge(self, timeout: float) -> bool:
        return self._edges.acquire(timeout=timeout)


class ContactTurnstileSim:
    """relay pulse → someone walks through → sensor edge (unless `walk` is off: nobody comes)."""

    def __init__(self, walk: bool = True) -> None:
        self.sensor = SensorLine()
        self.walk = walk
        self.relay = RelayLine(self._pulsed)

    def _pulsed(self) -> None:
        if self.walk:
            self.sensor.set(True)

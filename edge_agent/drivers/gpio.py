"""Digital lines for dry-contact turnstiles: libgpiod v2 (`pip install gpiod`, the Linux GPIO character
device on a Pi or Jetson), and a `sim:` seam for simulators, as pyserial has loop://.

A line is named "gpiochip0:17" (chip device, line offset; "/dev/gpiochip0:17" works too) or "sim:NAME"
for a line a simulator registered with `register_sim()`.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Protocol


class GpioLine(Protocol):
    """One digital line (libgpiod on a Pi/Jetson; a simulator in tests)."""

    def set(self, value: bool) -> None: ...
    def wait_edge(self, timeout: float) -> bool: ...  # True on a rising (active-going) edge within timeout


_SIM: dict[str, GpioLine] = {}
_SIM_LOCK = threading.Lock()


def register_sim(name: str, line: GpioLine) -> None:
    with _SIM_LOCK:
        _SIM[name] = line


def parse_spec(spec: str) -> tuple[str, int]:
    chip, sep, offset = spec.rpartition(":")
    if not sep or not chip or not offset.isdigit():
        raise ValueError(f"GPIO line must be 'gpiochipN:OFFSET' or 'sim:NAME', got {spec!r}")
    return (chip if chip.startswith("/") else f"/dev/{chip}"), int(offset)


class LinuxLine:
    """A line requested through libgpiod v2: an output (relay) or an input with rising-edge events."""

    def __init__(self, spec: str, output: bool, active_low: bool = False, debounce_ms: int = 0) -> None:
        try:
            import gpiod
            from gpiod.line import Bias, Direction, Edge, Value
        except ImportError as err:
            raise OSError("GPIO needs libgpiod's Python bindings v2 (pip install gpiod)") from err
        path, self.offset = parse_spec(spec)
        self._value = Value
        if output:
            settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE,
                                          active_low=active_low)
        else:
            settings = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.RISING, bias=Bias.PULL_UP,
                                          active_low=active_low,
                                          debounce_period=dt.timedelta(milliseconds=debounce_ms))
        self.req: Any = gpiod.request_lines(path, consumer="edge-agent", config={self.offset: settings})

    def set(self, value: bool) -> None:
        self.req.set_value(self.offset, self._value.ACTIVE if value else self._value.INACTIVE)

    def wait_edge(self, timeout: float) -> bool:
        if not self.req.wait_edge_events(dt.timedelta(seconds=timeout)):
            return False
        return len(self.req.read_edge_events()) > 0

    def close(self) -> None:
        self.req.release()


def open_line(spec: str, output: bool, active_low: bool = False, debounce_ms: int = 0) -> GpioLine:
    if spec.startswith("sim:"):
        with _SIM_LOCK:
            line = _SIM.get(spec[4:])
        if line is None:
            raise OSError(f"no simulated GPIO line {spec[4:]!r} registered")
        return line
    return LinuxLine(spec, output, active_low, debounce_ms)

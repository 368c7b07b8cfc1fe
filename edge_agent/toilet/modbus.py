"""Polling Modbus RTU sensors over one RS-485 bus with pymodbus (≥ 3.16: `device_id=`).

RS-485 realities handled here: adapters that echo what they send (`echo=True` → pymodbus
handle_local_echo), the silent inter-frame gap (pymodbus times RTU frames from the baud rate), a quiet
bus when a device is absent or unpowered (timeout + retries, then `unavailable` after `fail_after`
failed polls in a row, back to `available` on the first good answer). One bad sensor never stops the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from edge_agent.toilet.profiles import Profile, decode

logger = logging.getLogger(__name__)


@dataclass
class Sensor:
    name: str
    profile: Profile
    address: int
    failures: int = 0
    available: bool | None = None  # None until the first poll
    last_error: str = ""
    values: dict[str, float] = field(default_factory=dict)


class Bus:
    def __init__(self, port: str, baud: int = 9600, parity: str = "N", timeout_s: float = 0.3, retries: int = 1,
                 echo: bool = False) -> None:
        from pymodbus.client import ModbusSerialClient

        self.client = ModbusSerialClient(port, baudrate=baud, parity=parity, timeout=timeout_s, retries=retries,
                                         handle_local_echo=echo, reconnect_delay=0.5, reconnect_delay_max=5)

    def _read(self, function: int, address: int, count: int, device: int) -> list[int]:
        c = self.client
        if not c.connected and not c.connect():
            raise OSError("serial port cannot be opened")
        if function == 2:
            r = c.read_discrete_inputs(address, count=count, device_id=device)
        elif function == 3:
            r = c.read_holding_registers(address, count=count, device_id=device)
        else:
            r = c.read_input_registers(address, count=count, device_id=device)
        if r.isError():
            raise OSError(f"exception response {r}")
        return [int(b) for b in r.bits[:count]] if function == 2 else list(r.registers)

    def poll(self, s: Sensor, fail_after: int = 3) -> bool:
        """Read every register of one sensor (contiguous reads per function). Returns availability changed."""
        values: dict[str, float] = {}
        try:
            for fn in sorted({r.function for r in s.profile.registers}):
                regs = [r for r in s.profile.registers if r.function == fn]
                start = min(r.address for r in regs)
                end = max(r.address + r.words for r in regs)
                words = self._read(fn, start, end - start, s.address)
                for r in regs:
                    values[r.name] = decode(r, words[r.address - start:r.address - start + r.words])
        except Exception as err:  # pymodbus raises ModbusException subclasses and OSError on a dead port
            s.failures += 1
            s.last_error = str(err)[:120]
            if s.failures >= fail_after and s.available is not False:
                s.available = False
                logger.warning("sensor %s (address %d) unavailable: %s", s.name, s.address, s.last_error)
                return True
            return False
        s.values, s.failures = values, 0
        if s.available is not True:
            s.available = True
            return True
        return False

    def close(self) -> None:
        self.client.close()

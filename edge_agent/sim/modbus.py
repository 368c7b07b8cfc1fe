"""Modbus RTU slaves on one simulated RS-485 bus (pty master side): read coils/discrete inputs (2),
holding (3) and input (4) registers, with CRC-16/MODBUS, exception replies for unmapped registers,
silence for absent addresses or bad CRC (as on a real bus), optional adapter echo and reply delay."""

from __future__ import annotations

from edge_agent.sim.base import PtyDevice
from edge_agent.sim.codec import crc16_modbus


def with_crc(body: bytes) -> bytes:
    return body + crc16_modbus(body)


class ModbusSim(PtyDevice):
    def __init__(self, echo: bool = False, delay_s: float = 0.0) -> None:
        self.echo, self.delay = echo, delay_s
        self.devices: dict[int, dict[int, dict[int, int]]] = {}  # address → function → register → value
        self.buf = bytearray()
        self.requests = 0
        super().__init__()

    def set(self, device: int, function: int, register: int, value: int) -> None:
        self.devices.setdefault(device, {}).setdefault(function, {})[register] = value

    def on_bytes(self, chunk: bytes) -> None:
        self.buf += chunk
        while len(self.buf) >= 8:  # every request we serve (fc 2/3/4) is 8 bytes
            frame = bytes(self.buf[:8])
            if crc16_modbus(frame[:6]) != frame[6:8]:
                del self.buf[:1]  # noise: slide until a frame checks out
                continue
            del self.buf[:8]
            self.requests += 1
            if self.echo:
                self.pty.write(frame)
            self._answer(frame)

    def _answer(self, frame: bytes) -> None:
        dev, fn = frame[0], frame[1]
        start, count = int.from_bytes(frame[2:4], "big"), int.from_bytes(frame[4:6], "big")
        if dev not in self.devices:
            return  # absent device: the bus stays quiet
        regs = self.devices[dev].get(fn, {})
        if self.delay and self._stop.wait(self.delay):
            return
        if fn not in (2, 3, 4) or any(a not in regs for a in range(start, start + count)):
            self.pty.write(with_crc(bytes([dev, fn | 0x80, 2])))  # illegal data address
            return
        if fn == 2:
            bits = 0
            for i in range(count):
                bits |= (1 if regs[start + i] else 0) << i
            data = bits.to_bytes((count + 7) // 8, "little")
        else:
            data = b"".join((regs[a] & 0xFFFF).to_bytes(2, "big") for a in range(start, start + count))
        self.pty.write(with_crc(bytes([dev, fn, len(data)]) + data))
